"""A run folder, ``runs/<experiment>/<run>/``: its config and its logs, written as carefully as checkpoints.

- ``config.json``: the config the run was trained with. Resuming with a different config is refused, except for
  the fields in :data:`t2i.configs.RESUMABLE` (how long to train, how often to checkpoint, speed switches).
- ``loss.csv``: ``epoch,step,loss``, one row per optimizer step. Its header is written and flushed when the file is
  created; only whole lines count; on every start, rows past the checkpoint training resumes from are dropped
  (the file is rewritten atomically), so after any sequence of kills the log equals an uninterrupted run's.
- ``bad_samples.csv``: ``epoch,shard,row,reason``, the rows a stream skipped, appended at each epoch end, each
  (epoch, shard, row) once; rows of epochs after the resumed checkpoint are dropped on start like the losses.
- ``eval.csv``: the periodic evaluations (:class:`t2i.watch.PeriodicEval`), one row per guidance scale; rows of
  steps after the resumed checkpoint are dropped on start too.
- ``tracking/``: the trackers' files (:mod:`t2i.tracking`); TensorBoard hides the events a killed attempt wrote
  after the resumed checkpoint (``purge_step``).
- ``ema_snapshots/``: post-hoc EMA snapshots (:mod:`t2i.posthoc`); those after the resumed checkpoint are dropped.
- ``checkpoints/``: :mod:`t2i.checkpoints`.

Everything here is plain text with "\\n" line endings.
"""

from __future__ import annotations

import csv
import datetime
import fcntl
import io
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import torch

from . import posthoc
from .configs import RESUMABLE, ExperimentConfig
from .data import ReportsBadSamples
from .data.shards import summarize_bad_samples
from .distributed import any_process
from .errors import RunError
from .files import write_atomic

CONFIG = "config.json"
LOSS_LOG = "loss.csv"
BAD_SAMPLES = "bad_samples.csv"
LOSS_FIELDS = ("epoch", "step", "loss")
BAD_SAMPLE_FIELDS = ("epoch", "shard", "row", "reason")
EVAL_LOG = "eval.csv"
TIMING = "timing"  # timing.md/.csv/.tex: the stages of the first timing_steps steps (t2i.timing)
TIMING_FILES = tuple(f"{TIMING}{suffix}" for suffix in (".md", ".csv", ".tex"))
SAMPLES = "samples"  # sample grids while training (t2i.watch)
BAD_SAMPLE_LOGS = "bad_samples"  # what each stream wrote about the rows it skipped (t2i.data.shards)
TRACKING = "tracking"  # the trackers' files (t2i.tracking)
EVAL_FIELDS = ("epoch", "step", "guidance_scale", "adherence", "kid", "kid_std", "fid", "samples", "features")

LOCK = ".lock"  # held (fcntl) by the one process that trains the run


class RunLock:
    """An exclusive ``fcntl`` lock on ``<run>/.lock``, held while a trainer writes the run: a second trainer on the
    same run (a job submitted twice, a requeued job starting while the old one still writes) refuses at once with one
    line naming the holder. The kernel releases the lock when its holder's process ends, however it ends (a kill, a
    node that dies: on NFS the server drops the lock with the client's lease), so a stale lock never blocks a requeued
    job; the host, PID and start time written in the file are only for the message."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self.handle = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunError(
                f"{self.path.parent} is being trained by {holder}; wait for it to finish, or train under "
                "another --run-name"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        handle.write(f"host {socket.gethostname()}, pid {os.getpid()}, since {started}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def open_for_training(run_dir: Path, cfg: ExperimentConfig, accelerator, restart: bool = False) -> RunLock | None:
    """Open a run folder for its one trainer, before anything in it is touched: the main process takes the
    :class:`RunLock` (if another trainer holds it, every process stops with the main process's one-line reason),
    ``restart`` sets the old run aside (:func:`set_aside`), and the config is written or checked against the run's
    (:func:`write_or_check_config`). Returns the lock (None on the other processes); release it when training ends."""
    lock, refused = None, None
    if accelerator.is_main_process:
        try:
            lock = RunLock(run_dir).__enter__()
        except RunError as exc:
            refused = exc
    (held_elsewhere,) = any_process(accelerator, refused is not None)
    if held_elsewhere:
        raise refused or RunError(f"{run_dir} is being trained by another job (the main process says which)")
    try:
        if restart and accelerator.is_main_process:
            aside = set_aside(run_dir)
            if aside:
                accelerator.print(f"--restart: the old run's files are in {aside}")
        accelerator.wait_for_everyone()
        write_or_check_config(run_dir, cfg, accelerator.is_main_process)
    except BaseException:
        if lock is not None:
            lock.__exit__()
        raise
    return lock


def load_config(run_dir: Path) -> ExperimentConfig:
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise RunError(f"{run_dir} is not a run folder (no {CONFIG}); train first")
    try:
        return ExperimentConfig.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is damaged ({exc}); restore it or start a new run") from None


def write_or_check_config(run_dir: Path, cfg: ExperimentConfig, write: bool) -> None:
    """Record ``cfg`` as the run's config, or refuse if the run was trained with a different one. ``write``: this
    process writes (the main process of a distributed run)."""
    path = Path(run_dir) / CONFIG
    if path.exists():
        old = load_config(run_dir).to_dict()
        changed = sorted(k for k, v in cfg.to_dict().items() if old[k] != v and k not in RESUMABLE)
        if changed:
            raise RunError(
                f"{run_dir} was trained with a different config ({', '.join(changed)} differ); choose a "
                "new run name, or delete the run folder to start over"
            )
    if write:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_atomic(path, cfg.to_json() + "\n")


# --- loss.csv ----------------------------------------------------------------------------------------------------
class LossLog:
    """Appends ``epoch,step,loss`` rows. Losses stay on the device until :meth:`flush` (every ``log_every`` steps and
    before every checkpoint), so logging costs one device synchronisation per flush, not one per step."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.path, self.enabled, self.file = Path(run_dir) / LOSS_LOG, enabled, None
        self.pending: list[tuple[int, int, torch.Tensor]] = []

    def __enter__(self) -> "LossLog":
        if self.enabled:
            if not self.path.exists() or self.path.stat().st_size == 0:
                write_atomic(self.path, ",".join(LOSS_FIELDS) + "\n")
            self.file = open(self.path, "a", newline="")
        return self

    def add(self, epoch: int, step: int, loss: torch.Tensor) -> int:
        self.pending.append((epoch, step, loss))
        return len(self.pending)

    def flush(self) -> list[tuple[int, int, float]]:
        """Write pending rows and return them as ``(epoch, step, loss)``."""
        if not self.pending:
            return []
        values = torch.stack([loss for _, _, loss in self.pending]).float().cpu().tolist()
        rows = [(e, s, v) for (e, s, _), v in zip(self.pending, values)]
        if self.file is not None:
            self.file.write("".join(f"{e},{s},{v:.6g}\n" for e, s, v in rows))
            self.file.flush()
        self.pending = []
        return rows

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.flush()  # rows past the last checkpoint are dropped again on resume
            self.file.close()


def read_loss_log(run_dir: Path) -> dict[str, np.ndarray]:
    """``{"epoch": ..., "step": ..., "loss": ...}`` arrays from a run's loss log (whole rows only)."""
    rows = _read_rows(Path(run_dir) / LOSS_LOG, LOSS_FIELDS)
    return {key: np.array([float(r[key]) for r in rows]) for key in LOSS_FIELDS}


def truncate_logs(run_dir: Path, epoch: int, step: int) -> None:
    """Keep the loss rows, evaluations and post-hoc EMA snapshots up to ``step`` and the bad samples of the first
    ``epoch`` epochs: what the run had written when the checkpoint it resumes from (or step 0) was written."""
    run_dir = Path(run_dir)
    for name, fields, keep in (
        (LOSS_LOG, LOSS_FIELDS, lambda r: int(r["step"]) <= step),
        (BAD_SAMPLES, BAD_SAMPLE_FIELDS, lambda r: int(r["epoch"]) <= epoch),
        (EVAL_LOG, EVAL_FIELDS, lambda r: int(r["step"]) <= step),
    ):
        path = run_dir / name
        if path.exists():
            rows = _read_rows(path, fields)
            kept = [r for r in rows if keep(r)]
            if len(kept) != len(rows) or path.read_bytes() != _csv_text(fields, rows).encode():
                write_atomic(path, _csv_text(fields, kept))
    posthoc.drop_after(run_dir, step)  # post-hoc EMA snapshots past the checkpoint


# --- bad_samples.csv ---------------------------------------------------------------------------------------------
def record_bad_samples(run_dir: Path, dataset, epoch: int, accelerator) -> None:
    """At the end of ``epoch`` (counted from 0): print the rows a stream skipped (all ranks) and append them to
    ``bad_samples.csv``. Datasets that never skip rows (not :class:`~t2i.data.ReportsBadSamples`) have none."""
    if not isinstance(dataset, ReportsBadSamples):
        return
    accelerator.wait_for_everyone()
    records = dataset.bad_samples(epoch)
    if records and accelerator.is_main_process:
        print(f"epoch {epoch + 1}: " + summarize_bad_samples(records, dataset.total_rows))
        append_bad_samples(run_dir, [{**r, "epoch": r["epoch"] + 1} for r in records])


def append_bad_samples(run_dir: Path, records: list[dict]) -> int:
    """Append skipped rows (``epoch`` counted from 1) not already listed; return how many were new."""
    path = Path(run_dir) / BAD_SAMPLES
    old = _read_rows(path, BAD_SAMPLE_FIELDS) if path.exists() else []
    seen = {(str(r["epoch"]), r["shard"], str(r["row"])) for r in old}
    new = [r for r in records if (str(r["epoch"]), r["shard"], str(r["row"])) not in seen]
    if new:
        write_atomic(path, _csv_text(BAD_SAMPLE_FIELDS, old + new))
    return len(new)


def _read_rows(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """The complete rows of a CSV log: a last line without its newline (a write cut short by a kill) and lines
    without every field are not rows."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")[:-1]  # everything after the last newline is an unfinished write
    if not lines or lines[0].split(",") != list(fields):
        lines = [",".join(fields)] + [line for line in lines if not line.startswith(fields[0] + ",")]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines) + "\n")))
    return [r for r in rows if all(r.get(k) not in (None, "") for k in fields)]


def _csv_text(fields: tuple[str, ...], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def timing_table(run_dir: Path) -> Path:
    """The CSV of a run's stage timing (thesis Table 3), whether or not the run was timed."""
    return Path(run_dir) / f"{TIMING}.csv"


def set_aside(run_dir: Path) -> Path | None:
    """Start a run over on purpose (``--restart``): move its config, checkpoints, logs, sample grids, evaluations and
    tracker events into ``<run>/restarted-<UTC time>/`` (the new run starts with none of the old one's); nothing is
    deleted. Returns that folder (None if there was nothing to move)."""
    run_dir = Path(run_dir)
    watched = (SAMPLES, EVAL_LOG, TRACKING, posthoc.SNAPSHOTS)  # grids, evaluations, tracker events, EMA snapshots
    names = [
        n
        for n in (CONFIG, LOSS_LOG, BAD_SAMPLES, BAD_SAMPLE_LOGS, "checkpoints", *TIMING_FILES, *watched)
        if (run_dir / n).exists()
    ]
    if not names:
        return None
    aside = run_dir / ("restarted-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    aside.mkdir()
    for name in names:
        shutil.move(str(run_dir / name), str(aside / name))
    return aside
