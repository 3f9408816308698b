"""The training loop: model-agnostic, on HF accelerate from the start.

The loop knows batches, an objective, an optimizer, EMA, checkpoints and a loss log. What makes it *diffusion* and
*text-conditioned* lives in the objective (:mod:`t2i.objectives`); the run folder's files are :mod:`t2i.runs` and
:mod:`t2i.checkpoints`. The same code runs on a CPU, one GPU, or ``accelerate launch`` across many.

Reproducibility: every epoch reseeds its data order (accelerate's seedable sampler, ``seed + epoch``) and its
noise / timestep / dropout generator (from ``(seed, epoch, rank)``); checkpoints also store every RNG state and the
position within the epoch, so a run resumed from any checkpoint, mid-epoch included, ends with bitwise the weights
an uninterrupted run would have (on the same hardware and software).

Speed: the step never waits for the device. A non-finite loss or gradient is recorded on the device (the first
step it happened at) and checked when the loss log is flushed and before every checkpoint, so no checkpoint ever
holds it; AdamW is fused and the EMA uses foreach kernels on CUDA; in-memory datasets are indexed on the device
(:mod:`t2i.batches`).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, gather_object, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import Dataset

from . import checkpoints, posthoc, runs, speed, tracking
from .batches import Batches
from .configs import ExperimentConfig
from .console import progress
from .distributed import any_process, epoch_seed, resolve_precision
from .errors import RunError
from .models import build_unet, count_parameters
from .nonfinite import FirstNonFinite, NonFiniteError
from .objectives import EpsilonObjective
from .preemption import MARKER, Preempted, PreemptionFlag
from .timing import StageTimer


@dataclass
class State:
    """Where training is, and what a hook may read: the counters (one progress counter, ``step``; ``epoch`` counts
    finished epochs), the accelerator, the UNet being trained (unwrapped) and its EMA (None without one)."""

    accelerator: Accelerator
    unet: torch.nn.Module
    ema: EMAModel | None
    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0


class Hook(Protocol):
    """Work done beside training that must not change it (:mod:`t2i.watch`: sample grids, periodic evaluation). Called
    on every process after each step and each epoch, before any checkpoint of that step or epoch is written."""

    def after_step(self, state: State) -> None: ...

    def after_epoch(self, state: State) -> None: ...


def fit(
    cfg: ExperimentConfig,
    run_dir: Path,
    dataset: Dataset,
    objective: EpsilonObjective,
    log_every: int = 10,
    restart: bool = False,
    hooks: tuple[Hook, ...] = (),
) -> Path:
    """Train (or resume) the run in ``run_dir`` to ``cfg.epochs`` and return ``run_dir``.

    If the run has a valid checkpoint, training resumes exactly where it left off (mid-epoch included); a complete
    run returns at once. A run whose checkpoints are all damaged stops with :class:`~t2i.errors.RunError` unless
    ``restart``, which sets the old checkpoints, logs and config aside and starts over. SIGTERM / SIGUSR1 checkpoint
    at the next step and raise :class:`~t2i.preemption.Preempted`.
    """
    Trainer(cfg, Path(run_dir), dataset, objective, log_every, restart, hooks).run()
    return Path(run_dir)


class Trainer:
    """The loop and the state it checkpoints. Read :meth:`run` first; the rest is bookkeeping."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        run_dir: Path,
        dataset: Dataset,
        objective: EpsilonObjective,
        log_every: int,
        restart: bool,
        hooks: tuple[Hook, ...] = (),
    ):
        self.cfg, self.run_dir, self.log_every, self.dataset, self.hooks = cfg, run_dir, log_every, dataset, hooks
        speed.enable_tf32()
        self.precision = resolve_precision(cfg.mixed_precision)
        acc = self.accelerator = Accelerator(
            mixed_precision=self.precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            log_with=tracking.log_with(cfg.report_to),
            project_dir=run_dir,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        )
        self.lock = runs.open_for_training(run_dir, cfg, acc, restart)  # one writer, before anything is touched

        set_seed(cfg.seed)  # the UNet's initial weights
        unet = speed.prepare(build_unet(cfg).to(acc.device), cfg)
        optimizer = torch.optim.AdamW(
            unet.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=acc.device.type == "cuda"
        )
        self.batches = Batches(dataset, cfg, acc)
        updates = sum(math.ceil(self.batches.per_epoch(e) / cfg.gradient_accumulation_steps) for e in range(cfg.epochs))
        # accelerate steps it per process
        lr_schedule = get_scheduler(
            cfg.lr_schedule,
            optimizer,
            num_warmup_steps=cfg.lr_warmup_steps * acc.num_processes,
            num_training_steps=updates * acc.num_processes,
        )
        self.unet, self.optimizer, self.lr_schedule = acc.prepare(unet, optimizer, lr_schedule)
        self.model = speed.compiled(self.unet, cfg, acc)  # what the step calls
        self.compile_pending = cfg.compile != "off"  # True until the first (compiling) step has run
        self.params = list(acc.unwrap_model(self.unet).parameters())
        ema = (
            None
            if cfg.ema_decay is None
            else EMAModel(
                self.params, decay=cfg.ema_decay, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3, foreach=True
            )
        )
        self.state = State(acc, acc.unwrap_model(self.unet), ema)
        self.tracked = posthoc.PowerEMA.for_config(cfg, self.state.unet, acc, updates)  # None unless asked for
        self.objective = objective.to(acc.device)
        self.generator = torch.Generator(acc.device)
        self.timer = StageTimer(cfg.timing_steps, acc.device)
        self.nonfinite = FirstNonFinite(acc.device, fp16=self.precision == "fp16")
        self.last_checkpoint: Path | None = None
        self.trained_seconds, self.started = 0.0, time.perf_counter()  # earlier attempts' time; this one's start
        self.window = tracking.Window()
        self.synced = True  # the last step updated the weights (not between the batches of one accumulated update)

    def run(self) -> None:
        try:
            self._run()
        finally:
            if self.lock is not None:
                self.lock.__exit__()

    def _run(self) -> None:
        cfg, acc, state = self.cfg, self.accelerator, self.state
        resumed_mid_epoch = self._resume()
        if acc.is_main_process:
            (self.run_dir / MARKER).unlink(missing_ok=True)  # this attempt is the resumption
        if state.epoch >= cfg.epochs:
            acc.print(f"{self.run_dir.name}: already trained for {state.epoch} epochs")
            return
        acc.print(
            f"training {cfg.experiment}/{self.run_dir.name} on {acc.device} ({acc.num_processes} process(es), "
            f"precision {self.precision}): {count_parameters(self.unet):,} UNet parameters, "
            f"{self.batches.per_epoch(state.epoch):,} batches of {cfg.batch_size} in epoch {state.epoch + 1} "
            f"of {cfg.epochs}"
        )
        tracking.start(acc, cfg, self.run_dir, state.step)
        with PreemptionFlag() as preemption, runs.LossLog(self.run_dir, acc.is_main_process) as log:
            while state.epoch < cfg.epochs:
                self.batches.set_epoch(state.epoch)
                if not resumed_mid_epoch:
                    self.generator.manual_seed(epoch_seed(cfg.seed, state.epoch, acc.process_index))
                batches = self.batches.iterate(skip=state.step_in_epoch if resumed_mid_epoch else 0)
                resumed_mid_epoch = False
                self.unet.train()
                in_epoch = self.batches.per_epoch(state.epoch)
                bar = progress(
                    desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                    initial=state.step_in_epoch,
                    total=in_epoch,
                    disable=not acc.is_main_process,
                )
                while True:
                    with self.timer("data wait"):
                        start = time.perf_counter()
                        batch = next(batches, None)
                        self.window.waited += time.perf_counter() - start
                    # one collective per step: stop on a signal anywhere (once the weights are updated), or when any
                    # rank's data runs out (a shard stream deals shards to ranks: row counts can differ by a row group)
                    stop, exhausted = any_process(acc, preemption.requested and self.synced, batch is None)
                    if stop:
                        path = self._checkpoint(log)
                        if acc.is_main_process:
                            (self.run_dir / MARKER).write_text(path.name + "\n")
                        raise Preempted(preemption.received or "a signal on another process", path)
                    if exhausted:
                        break
                    mean_loss = self.advance(batch, log)
                    bar.update()
                    if mean_loss is not None:
                        bar.set_postfix(loss=f"{mean_loss:.4f}")
                    for hook in self.hooks:
                        hook.after_step(state)
                    if self._steps_due() and state.step_in_epoch < in_epoch:  # epoch ends: below
                        self._checkpoint(log)
                    if self.timer.step_done() and acc.is_main_process:
                        print(self.timer.write(self.run_dir / runs.TIMING, cfg, acc.device, self.precision))
                bar.close()
                runs.record_bad_samples(self.run_dir, self.dataset, state.epoch, acc)
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
                for hook in self.hooks:
                    hook.after_epoch(state)
                if self._is_milestone() or self._steps_due():
                    self._checkpoint(log)
        acc.wait_for_everyone()
        acc.end_training()

    def _is_milestone(self) -> bool:
        """At an epoch's end: is it one whose checkpoint is kept for good (every ``checkpoint_every``-th, the last)?"""
        epoch = self.state.epoch
        return self.state.step_in_epoch == 0 and (epoch % self.cfg.checkpoint_every == 0 or epoch == self.cfg.epochs)

    def _steps_due(self) -> bool:
        every = self.cfg.checkpoint_every_steps
        return bool(every) and self.state.step % every == 0 and self.synced

    def advance(self, batch, log: runs.LossLog) -> float | None:
        """One optimizer step on a batch as the loader gave it, logged; every ``log_every`` steps the log is flushed
        and checked for non-finite values (the step's only wait for the device). Returns the flushed mean loss."""
        with self.timer("host-to-device"):
            batch = self.batches.to_device(batch)
        start = time.perf_counter()
        loss = self._train_step(batch)
        if self.compile_pending:  # the first compiled step compiles: say how long
            speed.report_compile(self.accelerator, start)
            self.compile_pending = False
        state = self.state
        state.step, state.step_in_epoch = state.step + 1, state.step_in_epoch + 1
        if log.add(state.epoch + 1, state.step, loss) < self.log_every:
            return None
        return float(np.mean([loss for _, _, loss in self._flush(log)]))

    def _flush(self, log: runs.LossLog) -> list[tuple[int, int, float]]:
        """Write the pending losses, check they are finite (the step's only wait for the device), tell the trackers."""
        rows = log.flush()
        self.nonfinite.check(self.last_checkpoint)
        self.window.log(self.accelerator, rows, self.cfg.batch_size, self.lr_schedule.get_last_lr()[0])
        return rows

    def _train_step(self, batch) -> torch.Tensor:
        timer, acc = self.timer, self.accelerator
        with acc.accumulate(self.unet):  # every batch, or every gradient_accumulation_steps-th, updates the weights
            with acc.autocast():  # the UNet autocasts anyway; this also covers a text encoder run per step (CelebA)
                loss = self.objective(self.model, batch, self.generator, timer)
            with timer("backward"):
                acc.backward(loss)
            self.synced = acc.sync_gradients
            with timer("optimizer"):
                norm = None
                if self.synced:
                    norm = (
                        acc.clip_grad_norm_(self.params, self.cfg.grad_clip)
                        if self.cfg.grad_clip
                        else torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
                    )
                    self.window.norms.append(norm)
                self.nonfinite.record(loss.detach(), norm, self.state.step + 1, self.state.epoch + 1)
                self.optimizer.step()  # accelerate's wrappers skip these between the batches of one update
                self.lr_schedule.step()
                self.optimizer.zero_grad(set_to_none=True)
        if self.synced:
            with timer("EMA"):
                if self.state.ema is not None:
                    self.state.ema.step(self.params)
                if self.tracked is not None:
                    # named by the step this batch ends (state.step counts it after this returns), as checkpoints are
                    self.tracked.update(self.run_dir, write=acc.is_main_process, batch=self.state.step + 1)
        return loss.detach()

    # --- checkpoints -------------------------------------------------------------------------------------------
    def _checkpoint(self, log: runs.LossLog) -> Path:
        """Write the full training state; every process contributes its RNG state, the main process writes. At an
        epoch boundary it is that epoch's checkpoint, milestone or not, whether the epoch's end or a preemption at the
        next epoch's first batch writes it."""
        acc, cfg, state = self.accelerator, self.cfg, self.state
        self._flush(log)
        tracking.flush(acc)  # every event up to this step is on disk before the checkpoint that ends at it is
        if not torch.stack([torch.isfinite(p).all() for p in state.unet.parameters()]).all():
            raise NonFiniteError(f"a weight is NaN or infinite at step {state.step}; stopped without saving")
        rng = gather_object([checkpoints.rng_state(self.generator)])  # one entry per process, in rank order
        name = checkpoints.name_for(state.epoch, state.step, state.step_in_epoch)
        path = checkpoints.checkpoint_dir(self.run_dir) / name
        if acc.is_main_process:
            record = {
                "epoch": state.epoch,
                "step": state.step,
                "step_in_epoch": state.step_in_epoch,
                "data_seed": cfg.seed,
                "num_processes": acc.num_processes,
                "precision": self.precision,
                "config": cfg.to_dict(),
                "loss_smoothed": self.window.smoothed,
                "device": speed.hardware(acc.device),
                "train_seconds": self.trained_seconds + time.perf_counter() - self.started,
            }
            path = checkpoints.save_training(
                self.run_dir,
                name,
                state.unet,
                state.ema,
                self.optimizer,
                self.lr_schedule,
                rng,
                record,
                self._is_milestone(),
                cfg.keep_checkpoints,
                self.tracked,
            )
        acc.wait_for_everyone()
        self.last_checkpoint = path
        return path

    def _resume(self) -> bool:
        """Load the latest valid checkpoint, if any, and cut the logs back to it; True if it was taken mid-epoch."""
        acc, state = self.accelerator, self.state
        path = checkpoints.latest(self.run_dir)
        if path is None and checkpoints.candidates(self.run_dir):
            raise RunError(
                f"{self.run_dir} has checkpoints, but none passes its manifest check (see the warnings "
                "above); run again with --restart to set them aside and start over"
            )
        if path is not None:
            saved, rng = checkpoints.load_training(
                path, state.unet, state.ema, self.optimizer, self.lr_schedule, acc.process_index, self.tracked
            )
            state.epoch, state.step, state.step_in_epoch = saved["epoch"], saved["step"], saved["step_in_epoch"]
            self.window.smoothed = saved.get("loss_smoothed")  # absent from checkpoints written before it was kept
            self.trained_seconds, self.started = saved.get("train_seconds", 0.0), time.perf_counter()
            if saved["num_processes"] == acc.num_processes:
                checkpoints.set_rng_state(self.generator, *rng)
            elif state.step_in_epoch:
                warnings.warn(
                    f"checkpoint written by {saved['num_processes']} processes, resuming on "
                    f"{acc.num_processes}: the rest of this epoch draws new noise (no longer "
                    "bit-reproducible)"
                )
                self.generator.manual_seed(epoch_seed(self.cfg.seed, state.epoch, acc.process_index) + state.step)
            self.last_checkpoint = path
            acc.print(f"resuming {self.run_dir.name} from {path.name} (epoch {state.epoch}, step {state.step})")
        if acc.is_main_process:
            runs.truncate_logs(self.run_dir, state.epoch, state.step)
        acc.wait_for_everyone()
        return state.step_in_epoch > 0
