"""Experiment tracking through accelerate's trackers: TensorBoard by default (offline, from PyPI), wandb or mlflow if
installed (``report_to``). ``loss.csv`` stays the record figures are made from; the tracker is for watching.

Written at every loss-log flush (every ``log_every`` steps), without waiting for the device in between: each step's
loss, a smoothed loss, the learning rate, the gradient norm, images per second, the share of time spent waiting for
data, and peak GPU memory. :mod:`t2i.watch` adds sample grids and periodic evaluations. TensorBoard's files go to
``runs/<experiment>/<run>/tracking/`` (``make watch RUN=...``).

A resumed run shows what an uninterrupted one would: the trackers are flushed before every checkpoint is published,
TensorBoard hides whatever a killed attempt logged after the checkpoint training resumes from (``purge_step``), and
the smoothed loss continues from the value saved in the checkpoint.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from .configs import ExperimentConfig
from .errors import MissingAsset
from .runs import TRACKING

PROJECT = TRACKING  # the trackers write into <run>/tracking/
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
SMOOTHING = 0.9  # the smoothed loss: an exponential moving average over steps


def log_with(report_to: str) -> list[str] | str | None:
    """``Accelerator(log_with=...)`` for a ``report_to`` setting; a missing package is a clear error, not a silent
    skip."""
    if report_to == "none":
        return None
    if report_to == "all":
        return "all"  # accelerate: every tracker that is installed
    if importlib.util.find_spec(PACKAGES[report_to]) is None:
        raise MissingAsset(
            f"report_to={report_to!r} needs the {PACKAGES[report_to]} package: pip install "
            f"{PACKAGES[report_to]} (or set report_to=tensorboard or none)"
        )
    return [report_to]


def start(accelerator: Accelerator, cfg: ExperimentConfig, run_dir: Path, step: int) -> None:
    """Open the trackers for a run resumed after ``step`` (0: a new run), with the config as the run's
    hyper-parameters (lists as text); TensorBoard records them once per run folder."""
    if not accelerator.log_with:
        return
    # SummaryWriter(purge_step=s): TensorBoard drops the events of earlier files in this folder at steps >= s
    accelerator.init_trackers(PROJECT, init_kwargs={"tensorboard": {"purge_step": step + 1}})
    folder = Path(run_dir) / PROJECT
    recorded = folder.is_dir() and any(folder.glob("*/hparams.yml"))  # accelerate's record of them, one per start
    values = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in cfg.to_dict().items()}
    for tracker in accelerator.trackers:
        if not (tracker.name == "tensorboard" and recorded):
            tracker.store_init_configuration(values)


def flush(accelerator: Accelerator) -> None:
    """Write what the trackers hold, so a kill after the next checkpoint loses none of the events before it."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.flush()


class Window:
    """What happened between two log flushes, turned into the metrics the trackers get."""

    def __init__(self):
        self.started = time.perf_counter()
        self.waited = 0.0  # seconds the loop waited for the loader
        self.norms: list[torch.Tensor] = []  # gradient norms of the optimizer steps, still on the device
        self.smoothed: float | None = None

    def log(self, accelerator: Accelerator, rows: list[tuple[int, int, float]], batch_size: int, lr: float) -> None:
        """Log each step's loss and the window's metrics; then start a new window."""
        if accelerator.log_with and rows:
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            for _, step, loss in rows:
                self.smoothed = loss if self.smoothed is None else SMOOTHING * self.smoothed + (1 - SMOOTHING) * loss
                accelerator.log({"loss": loss, "loss_smoothed": self.smoothed}, step=step)
            metrics = {
                "lr": lr,
                "images_per_s": len(rows) * batch_size * accelerator.num_processes / elapsed,
                "data_wait_share": self.waited / elapsed,
                "epoch": rows[-1][0],
            }
            if self.norms:
                metrics["grad_norm"] = float(torch.stack(self.norms).float().mean())
            if accelerator.device.type == "cuda":
                metrics["gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            accelerator.log(metrics, step=rows[-1][1])
        self.started, self.waited, self.norms = time.perf_counter(), 0.0, []


def log_image(accelerator: Accelerator, name: str, image: np.ndarray, step: int) -> None:
    """An [H, W, 3] uint8 image (a sample grid) to every tracker that takes images."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image(name, image, global_step=step, dataformats="HWC")
            tracker.writer.flush()
        elif tracker.name == "wandb":
            tracker.log_images({name: [image]}, step=step)
        elif tracker.name == "mlflow":
            import mlflow  # an optional package, installed only by those who report to it

            mlflow.log_image(image, artifact_file=f"{name}/step-{step:08d}.png")
