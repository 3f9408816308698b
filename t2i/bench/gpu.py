"""``make bench-gpu``: how much of the card each experiment's training step uses, and what the trainer adds.

For each full config (on a machine without a GPU: the smoke configs, so CI runs the same code):

- parameters, and FLOP per training step (forward + backward at the config's batch), counted by
  ``torch.utils.flop_counter`` on the meta device (shapes only, no compute);
- the **bare step** (UNet forward, MSE, backward, AdamW; fixed device tensors, nothing else) in each variant of
  :data:`VARIANTS`: ms/step, images/s, TFLOP/s, utilisation of the card's dense bf16 peak (:data:`PEAK_BF16`, vendor
  datasheets; a measured 8192^3 bf16 matmul is reported beside it), peak memory, compile time;
- the **project trainer's step** (:meth:`t2i.train.Trainer.advance`: data from its real loader, the objective, AdamW,
  EMA, non-finite checks, the loss log), in the config's own precision and layout, as a ratio to the bare step in
  the same precision and layout, with the share of time spent waiting for data. WikiArt's trainer reads synthetic
  painting-size JPEG shards (1,400 x 1,100) through its DataLoader workers; CelebA's reads a synthetic latent cache,
  its workers caption and tokenise every image, and the step encodes the captions with a text encoder of the
  config's size;
- **where the bare step's time goes** (``gpu_breakdown.md``), from ``torch.profiler``: the share of each kind of op
  (:func:`_category`: convolution, attention, matmul, normalisation, copies and casts, optimizer, other), the
  heaviest ops, and on a GPU how many kernels a step launches and how much of the wall time the device was busy.

Each cell reports the median of its timed steps and their interquartile range (on a GPU timed by CUDA events, with
no synchronisation between steps), so a ratio of two cells comes with how much each wobbled; a cell times up to
``steps`` steps or ``cell_s`` seconds. Cells run cheapest first; torch.compile cells (regional, then whole-model)
last, while the time budget lasts (the rest are listed as skipped).
The table is rewritten after every cell, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .. import configs, paths, reports
from ..distributed import resolve_precision
from ..speed import inductor_default_cache_dir
from . import device_slug, machine
from .breakdown import CATEGORIES, profile_step
from .measure import VARIANTS, bare, flop_per_step, guarded, matmul_ceiling, parameters
from .trainer_step import trainer

EXPERIMENTS = configs.EXPERIMENTS


# Dense bf16 tensor-core TFLOP/s by device name (vendor datasheets, no sparsity); first match wins.
PEAK_BF16 = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("H200", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
)


def run(
    out: Path | None = None,
    experiments: Sequence[str] = EXPERIMENTS,
    variants: Sequence[str] = tuple(VARIANTS),
    profile: str | None = None,
    steps: int | None = None,
    warmup: int | None = None,
    budget_s: float = 420.0,
    cell_s: float | None = None,
) -> str:
    """Time every cell, rewriting ``reports/bench/<device>/gpu.md`` after each; returns the table."""
    with _compile_cache():
        return _run(out, experiments, variants, profile, steps, warmup, budget_s, cell_s)


@contextlib.contextmanager
def _compile_cache() -> Iterator[None]:
    """A cold torch.compile cache for the run, so compile_s is what a job's first step pays (unless the caller set
    TORCHINDUCTOR_CACHE_DIR to a directory of their own: then that cache, warm or not). Importing diffusers sets the
    variable to inductor's default directory, which is the one to avoid: earlier runs have filled it."""
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if before not in (None, inductor_default_cache_dir()):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="t2i-bench-inductor-") as cold:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cold
        try:
            yield
        finally:
            if before is None:
                del os.environ["TORCHINDUCTOR_CACHE_DIR"]
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = before


def _run(
    out: Path | None,
    experiments: Sequence[str],
    variants: Sequence[str],
    profile: str | None,
    steps: int | None,
    warmup: int | None,
    budget_s: float,
    cell_s: float | None,
) -> str:
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    # without a GPU: the demo config where there is one (the trainer-overhead target is measured on it), else smoke
    profiles = {
        e: profile or ("full" if cuda else "demo" if "demo" in configs.profiles(e) else "smoke") for e in experiments
    }
    steps, warmup = steps or (30 if cuda else 10), warmup or (3 if cuda else 1)
    cell_s = cell_s or (5.0 if cuda else 3.0)  # a cell stops timing after this long (at least 3 steps)
    if cuda:  # what the trainer does on CUDA
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    deadline = time.monotonic() + budget_s
    card = torch.cuda.get_device_name() if cuda else machine()
    # one folder per device: a CPU run (CI) never overwrites a GPU's evidence, and each card keeps its newest run
    out = Path(out or paths.reports_dir() / "bench" / device_slug(card, cpu=not cuda) / "gpu")
    peak = next((p for name, p in PEAK_BF16 if name in card), None) if cuda else None
    ceiling = matmul_ceiling() if cuda else None
    cfgs = {e: configs.get(e, profiles[e]) for e in experiments}
    sizes = {e: (parameters(cfg), flop_per_step(cfg)) for e, cfg in cfgs.items()}
    rows: list[dict] = []

    def record(experiment: str, variant: str, measured: dict) -> None:
        params, flop = sizes[experiment]
        ms, batch = measured.get("ms"), measured.get("batch", cfgs[experiment].batch_size)
        flop *= batch / cfgs[experiment].batch_size  # a cell that fell back to a smaller batch did less work
        row = {
            "experiment": experiment,
            "profile": profiles[experiment],
            "variant": variant,
            "batch": batch,
            "params_m": params / 1e6,
            "tflop_step": flop / 1e12,
            "ms_step": ms if ms is not None else "",
            "spread_pct": measured.get("spread_pct", ""),
            "steps": measured.get("steps", ""),
            "img_s": batch * 1000 / ms if ms else "",
            "tflop_s": flop / ms / 1e9 if ms else "",
            "util_pct": 100 * flop / ms / 1e9 / peak if ms and peak else "",
            "peak_gib": measured.get("peak_gib", ""),
            "compile_s": measured.get("compile_s", ""),
            "vs_bare": measured.get("vs_bare", ""),
            "data_wait_pct": measured.get("data_wait_pct", ""),
            "note": measured.get("note", ""),
        }
        rows.append(row)
        print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()), flush=True)
        _write(rows, out, card, peak, ceiling, steps, warmup, budget_s, cell_s, device)

    breakdown: list[dict] = []

    def record_breakdown(experiment: str, variant: str, measured: dict) -> None:
        row = {
            "experiment": experiment,
            "profile": profiles[experiment],
            "variant": variant,
            "batch": measured.get("batch", cfgs[experiment].batch_size),
            "ms_step": measured.get("ms", ""),
            "device_busy_pct": measured.get("device_busy_pct", ""),
            "kernels_step": measured.get("kernels_step", ""),
            **{f"{c}_pct": measured.get(c, "") for c in CATEGORIES},
            "note": measured.get("note", ""),
        }
        breakdown.append(row)
        _write_breakdown(breakdown, out.with_name(out.name + "_breakdown"), card, profiled, device)

    timing, profiled = (steps, warmup, cell_s), min(steps, 3)
    cheap = [v for v in variants if VARIANTS[v][3] == "off"]
    for experiment in experiments:
        cfg = cfgs[experiment]
        precision = resolve_precision(cfg.mixed_precision)
        own = _variant_of(precision)  # the bare step the trainer is compared with: timed right before and after it
        for variant in sorted(cheap, key=lambda v: v == own):
            record(experiment, variant, guarded(bare, cfg, variant, device, *timing))
        before = {"ms": rows[-1]["ms_step"], "batch": rows[-1]["batch"]} if own in cheap else {}
        measured = guarded(trainer, cfg, device, *timing)
        after = guarded(bare, cfg, own, device, *timing) if measured.get("ms") else {}
        bares = [cell for cell in (before, after) if cell.get("ms")]
        notes = [measured["note"]] if measured.get("note") else []
        if bares and measured.get("ms"):  # the machine drifts between cells: the mean of both sides of the trainer
            per_image = float(np.mean([cell["ms"] / cell["batch"] for cell in bares]))  # batches differ after an OOM
            measured["vs_bare"] = measured["ms"] / measured["batch"] / per_image
            notes.append(
                f"vs the bare {own} step " + " / ".join(f"{cell['ms']:.4g}" for cell in bares) + " ms (before / after)"
            )
        if measured.get("encoder_flop"):  # work the bare step does not do: part of the ratio is this, not overhead
            unet_flop = sizes[experiment][1] * measured["batch"] / cfg.batch_size
            notes.append(
                f"includes the text encoder's forward, {measured['encoder_flop'] / 1e12:.3g} TFLOP "
                f"({100 * measured['encoder_flop'] / unet_flop:.0f}% of the UNet step's)"
            )
        measured["note"] = "; ".join(notes)
        record(experiment, f"trainer ({precision})", measured)
        for variant in [own, *(["bf16+heads64"] if "bf16+heads64" in variants else [])]:
            record_breakdown(experiment, variant, guarded(profile_step, cfg, variant, device, profiled, warmup))
    for variant in [v for v in variants if VARIANTS[v][3] != "off"]:
        for experiment in experiments:
            if time.monotonic() > deadline:
                record(experiment, variant, {"note": f"skipped: past the {budget_s:.0f} s budget"})
                continue
            record(experiment, variant, guarded(bare, cfgs[experiment], variant, device, *timing))
    return (out.with_suffix(".md")).read_text()


def _variant_of(precision: str) -> str:
    return "bf16" if precision == "bf16" else "fp32"


def _write_breakdown(rows: list[dict], out: Path, card: str, steps: int, device: torch.device) -> None:
    cuda = device.type == "cuda"
    caption = (
        f"Where the bare training step's time goes on {card} (torch {torch.__version__}), from torch.profiler "
        f"over {steps} steps after warm-up: the share of "
        + ("the kernels' time (on the device)" if cuda else "the ops' own time (on the CPU)")
        + " by kind of op (t2i.bench.gpu._category: an optimizer's and an attention op's inner ops count as "
        "those; copy_cast includes the float32 casts bf16 autocast inserts around normalisation, and "
        "concatenation); note: the three heaviest ops. "
        + (
            "device_busy_pct: kernel time over wall time (well under 100: the GPU waits for the host to launch "
            "kernels, which CUDA graphs remove; a lower bound, as the profiler slows the host); kernels_step: "
            "kernels launched per step. "
            if cuda
            else "device_busy_pct and kernels_step: GPU only. "
        )
        + "ms_step is under the profiler (slower than gpu.md). Reproduce: make bench-gpu."
    )
    reports.write_table(rows, out, caption=caption)
    reports.write_provenance(
        out.with_suffix(".md"), device=card, device_type=device.type, steps=steps, torch=torch.__version__
    )


def _write(
    rows: list[dict],
    out: Path,
    card: str,
    peak: float | None,
    ceiling: float | None,
    steps: int,
    warmup: int,
    budget_s: float,
    cell_s: float,
    device: torch.device,
) -> None:
    ceiling_text = f"; a measured 8192^3 bf16 matmul ran at {ceiling:.0f} TFLOP/s" if ceiling else ""
    caption = (
        f"Training step of each config on {card} (torch {torch.__version__}) at the config's batch, or at half "
        "of it (a quarter, an eighth) where that ran out of memory, as the note says: ms_step is the median of "
        f"`steps` timed steps (up to {steps}, or as many as fit in {cell_s:g} s, at least 3) after {warmup} "
        "warm-up steps" + (", timed by CUDA events" if device.type == "cuda" else "") + "; spread_pct is "
        "their interquartile range as a % of the median. tflop_step: forward + backward FLOP at the config's "
        "batch (torch.utils.flop_counter). util_pct: achieved TFLOP/s over the card's dense bf16 peak "
        + (f"({peak:g} TFLOP/s, datasheet{ceiling_text})" if peak else "(unknown for this device)")
        + ". Bare rows: UNet forward, MSE, backward and AdamW on fixed tensors. Trainer rows: the project's "
        "step with its data path, objective, EMA and checks; vs_bare = the trainer's ms per image over the bare "
        "step's in the same precision and layout, the bare step timed right before and again right after the "
        "trainer (the mean of the two; both in the note); data_wait_pct = share of the step spent waiting for "
        "the loader. heads64: "
        "attention heads of width 64 instead of the thesis layout's head count (same parameters and FLOP). "
        "compile-regional: each ResNet and attention block compiled on its own (t2i.models.compile_regions); "
        "compile: the whole UNet. compile_s: the first compiled step (compiling forward and backward), with a "
        "cold compile cache unless TORCHINDUCTOR_CACHE_DIR was set. "
        "Reproduce: make bench-gpu."
    )
    reports.write_table(rows, out, caption=caption)
    reports.write_provenance(
        out.with_suffix(".md"),
        device=card,
        device_type=device.type,
        peak_bf16_tflops=peak,
        measured_matmul_tflops=ceiling,
        steps=steps,
        warmup=warmup,
        budget_s=budget_s,
        cell_s=cell_s,
        torch=torch.__version__,
    )
