"""Per-stage timing of the training step (thesis Table 3), off by default (``timing_steps``).

``with timer("forward"): ...`` adds the block's wall time to that stage. On CUDA the timer synchronises before
reading the clock, otherwise asynchronous kernels would be charged to whichever stage happens to wait for them;
that synchronisation slows training, which is why the timer only runs for the first ``timing_steps`` steps.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from .reports import write_table

# In the order a step runs them; "data wait" is the time the loop waited for the DataLoader.
STAGES = (
    "data wait",
    "host-to-device",
    "text",
    "CFG masking",
    "noise",
    "forward",
    "loss",
    "backward",
    "optimizer",
    "EMA",
)


class StageTimer:
    def __init__(self, steps: int = 0, device: torch.device | str = "cpu"):
        self.steps_left = steps
        self.sync = torch.device(device).type == "cuda"
        self.totals: dict[str, float] = defaultdict(float)
        self.steps = 0

    @property
    def active(self) -> bool:
        return self.steps_left > 0

    def __call__(self, stage: str):
        """A context manager timing ``stage`` (a no-op once the timed steps are done)."""
        return self._time(stage) if self.active else nullcontext()

    @contextmanager
    def _time(self, stage: str):
        if self.sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        yield
        if self.sync:
            torch.cuda.synchronize()
        self.totals[stage] += time.perf_counter() - start

    def step_done(self) -> bool:
        """Count a timed step; True exactly when the last timed step has finished."""
        if not self.active:
            return False
        self.steps += 1
        self.steps_left -= 1
        return self.steps_left == 0

    def rows(self) -> list[dict]:
        """Milliseconds per step and share of the total, per stage (Table 3's columns)."""
        total = sum(self.totals.values()) or 1.0
        names = [s for s in STAGES if s in self.totals] + [s for s in self.totals if s not in STAGES]
        rows = [
            {"stage": s, "ms_per_step": 1000 * self.totals[s] / self.steps, "percent": 100 * self.totals[s] / total}
            for s in names
        ]
        return rows + [{"stage": "total", "ms_per_step": 1000 * total / self.steps, "percent": 100.0}]

    def write(self, path: Path, cfg, device: torch.device, precision: str) -> str:
        """The table (.md/.csv/.tex) of a training run's first steps; returns the markdown."""
        return write_table(
            self.rows(),
            path,
            caption=(
                f"Training step by stage: mean over the first {self.steps} steps of this attempt, batch "
                f"{cfg.batch_size}, "
                f"{cfg.num_workers} DataLoader workers, on {device}, precision {precision}"
                + (" (CUDA synchronised per stage)" if self.sync else "")
                + "."
            ),
        )


NULL_TIMER = StageTimer(0)
