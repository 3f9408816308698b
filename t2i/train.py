"""The training loop: model-agnostic, on HF accelerate from the start.

The loop knows batches, an objective, an optimizer, checkpoints and a loss log. What makes it *diffusion*
lives in the objective (:class:`EpsilonObjective`); what makes it *text-conditioned* lives in the caption table
the objective looks embeddings up in. The same code runs on a CPU, one GPU, or ``accelerate launch`` across many.

Reproducibility: every epoch reseeds its data order (accelerate's seedable sampler, ``seed + epoch``) and its
noise / timestep / dropout generator (from ``(seed, epoch, rank)``); checkpoints also store every RNG state and the
position within the epoch, so a run resumed from any checkpoint, mid-epoch included, ends with bitwise the weights
an uninterrupted run would have (on the same hardware and software).
"""

from __future__ import annotations

import csv
import json
import random
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import DataLoaderConfiguration, gather_object, send_to_device, set_seed
from diffusers import UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, Dataset, IterableDataset

from . import checkpoints
from .configs import ExperimentConfig
from .console import progress
from .models import build_unet, count_parameters
from .preemption import MARKER, Preempted, PreemptionFlag
from .profiling import NULL_TIMER, StageTimer
from .sampling import training_scheduler
from .text import CaptionTable

LOSS_LOG = "loss.csv"
# Fields that may change when a finished run is extended (train for more epochs); anything else is a new run.
RESUMABLE_CHANGES = {"epochs", "checkpoint_every", "sampler", "num_inference_steps", "guidance_scales",
                     "checkpoint_every_steps", "keep_checkpoints"}

Objective = Callable[[torch.nn.Module, tuple[torch.Tensor, ...], torch.Generator, StageTimer], torch.Tensor]


class EpsilonObjective:
    """DDPM's simple loss (Ho et al. 2020, eq. 14): ``|| eps - eps_theta(x_t, t, c) ||^2`` with
    ``x_t = sqrt(alphas_cumprod_t) x0 + sqrt(1 - alphas_cumprod_t) eps`` and ``t ~ U{0, T-1}``.

    With probability ``p_uncond`` a caption is replaced by the null (empty-prompt) embedding, which trains the
    unconditional model classifier-free guidance needs (Ho & Salimans 2022).
    """

    def __init__(self, noise_scheduler, captions: CaptionTable, p_uncond: float):
        self.noise_scheduler = noise_scheduler
        self.captions = captions
        self.p_uncond = p_uncond

    def to(self, device: torch.device | str) -> "EpsilonObjective":
        """The same objective with its caption embeddings (or text encoder) on ``device``."""
        return type(self)(self.noise_scheduler, self.captions.to(device), self.p_uncond)

    def inputs(self, batch, generator: torch.Generator, timer: StageTimer) -> tuple[torch.Tensor, object]:
        """``(x0, conditions)`` from a batch; here the batch is already ``(images, caption ids)``."""
        return batch

    def __call__(self, model: torch.nn.Module, batch, generator: torch.Generator,
                 timer: StageTimer = NULL_TIMER) -> torch.Tensor:
        x0, conditions = self.inputs(batch, generator, timer)
        n, device = x0.shape[0], x0.device
        with timer("noise"):
            eps = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
            t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (n,), generator=generator,
                              device=device)
        with timer("CFG masking"):
            drop = torch.rand(n, generator=generator, device=device) < self.p_uncond
        with timer("noise"):
            x_t = self.noise_scheduler.add_noise(x0, eps, t)
        with timer("text"):
            emb = self.captions.lookup(conditions, drop)
        with timer("forward"):
            eps_pred = model(x_t, t, encoder_hidden_states=emb).sample
        with timer("loss"):
            return F.mse_loss(eps_pred.float(), eps.float())


class LatentEpsilonObjective(EpsilonObjective):
    """The same loss on VAE latents read from the latent cache (thesis 3.5.7, without running the VAE): each step
    draws ``z0 = mean + std * eps`` from the cached (scaled) posterior and a fresh caption for each image's attributes
    (:func:`t2i.data.celeba.caption`), both from the loop's seeded generator, so a resumed run repeats them exactly.
    ``captions`` is a :class:`~t2i.text.CaptionEncoder` (free-form captions are encoded every step)."""

    def inputs(self, batch, generator: torch.Generator, timer: StageTimer) -> tuple[torch.Tensor, list[str]]:
        from .data.celeba import caption

        mean, std, attributes = batch
        with timer("noise"):
            z0 = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        with timer("text"):
            seeds = torch.randint(0, 2**31 - 1, (len(attributes),), generator=generator, device=mean.device)
            captions = [caption(a, s) for a, s in zip(attributes.cpu().numpy(), seeds.tolist())]
        return z0, captions


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Independent, reproducible stream for (run seed, epoch, process)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


class NonFiniteError(FloatingPointError):
    """The loss or the gradient became NaN or infinite; nothing after the last checkpoint was saved."""


def fit(cfg: ExperimentConfig, run_dir: Path, dataset: Dataset, captions: CaptionTable,
        objective: Objective | None = None, log_every: int = 10) -> Path:
    """Train (or resume) the run in ``run_dir`` to ``cfg.epochs`` and return ``run_dir``.

    The run folder holds ``config.json``, ``loss.csv`` (epoch, step, loss) and ``checkpoints/``. If the run has
    checkpoints, training resumes exactly where the latest valid one left off (mid-epoch included); a complete run
    returns at once. SIGTERM / SIGUSR1 checkpoint at the next step and raise :class:`~t2i.preemption.Preempted`.
    """
    trainer = Trainer(cfg, Path(run_dir), dataset, captions, objective, log_every)
    trainer.run()
    return Path(run_dir)


class Trainer:
    """The loop and the state it checkpoints. Read :meth:`run` first; the rest is bookkeeping."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, dataset: Dataset, captions: CaptionTable,
                 objective: Objective | None, log_every: int):
        self.cfg, self.run_dir, self.log_every = cfg, run_dir, log_every
        if torch.cuda.is_available():  # TF32 matmuls/convolutions on Ampere+: ~free speed, fp32 range
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.accelerator = Accelerator(
            mixed_precision=cfg.mixed_precision,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed))
        _write_or_check_config(run_dir, cfg, self.accelerator)

        set_seed(cfg.seed)  # the UNet's initial weights
        unet = build_unet(cfg)
        if cfg.channels_last:
            unet = unet.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.lr_warmup_steps)
        self.unet, self.optimizer, self.lr_schedule = self.accelerator.prepare(unet, optimizer, lr_schedule)
        self.loader = _make_loader(dataset, cfg, self.accelerator)
        self.dataset = dataset
        if hasattr(dataset, "log_dir"):  # a shard stream: every rank logs its skipped rows into the run
            dataset.log_dir = run_dir / "bad_samples"
        self.timer = StageTimer(cfg.profile_steps, self.accelerator.device)
        self.model = torch.compile(self.unet) if cfg.compile else self.unet
        self.ema = None if cfg.ema_decay is None else EMAModel(
            self.accelerator.unwrap_model(self.unet).parameters(), decay=cfg.ema_decay, use_ema_warmup=True,
            inv_gamma=1.0, power=2 / 3)
        objective = objective or EpsilonObjective(training_scheduler(cfg), captions, cfg.p_uncond)
        self.objective = objective.to(self.accelerator.device) if hasattr(objective, "to") else objective
        self.generator = torch.Generator(self.accelerator.device)
        self.epoch, self.step, self.step_in_epoch = 0, 0, 0
        self.last_checkpoint: Path | None = None
        self.n_images = len(dataset)

    def run(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        resumed_mid_epoch = self._resume()
        if acc.is_main_process:
            (self.run_dir / MARKER).unlink(missing_ok=True)  # this attempt is the resumption
        if self.epoch >= cfg.epochs:
            acc.print(f"{self.run_dir.name}: already trained for {self.epoch} epochs")
            return
        acc.print(f"training {cfg.experiment}/{self.run_dir.name} on {acc.device} ({acc.num_processes} process(es), "
                  f"precision {cfg.mixed_precision}): {count_parameters(self.unet):,} UNet parameters, "
                  f"{self.n_images:,} images, epoch {self.epoch + 1} of {cfg.epochs}")
        with PreemptionFlag() as preemption, _LossLog(self.run_dir / LOSS_LOG, acc.is_main_process) as log:
            while self.epoch < cfg.epochs:
                self.loader.set_epoch(self.epoch)
                batches = self.loader
                if resumed_mid_epoch:  # same data order, continue after the batches already trained on
                    batches, resumed_mid_epoch = acc.skip_first_batches(self.loader, self.step_in_epoch), False
                else:
                    self.generator.manual_seed(epoch_seed(cfg.seed, self.epoch, acc.process_index))
                self.unet.train()
                bar = progress(desc=f"epoch {self.epoch + 1}/{cfg.epochs}", initial=self.step_in_epoch,
                               total=len(self.loader), disable=not acc.is_main_process)
                batches = iter(batches)
                while True:
                    with self.timer("data wait"):
                        batch = next(batches, None)
                    # one collective per step: stop on a signal anywhere, or when any rank's data runs out (a shard
                    # stream deals whole shards to ranks, so their row counts can differ by up to a shard)
                    stop, exhausted = _any_process(acc, preemption.requested, batch is None)
                    if stop:
                        path = self._checkpoint(log)
                        if acc.is_main_process:
                            (self.run_dir / MARKER).write_text(path.name + "\n")
                        raise Preempted(preemption.received or "a signal on another process", path)
                    if exhausted:
                        break
                    loss = self._train_step(batch)
                    self.step += 1
                    self.step_in_epoch += 1
                    bar.update()
                    if log.add(self.epoch + 1, self.step, loss) >= self.log_every:
                        bar.set_postfix(loss=f"{log.flush():.4f}")
                    if self._steps_due() and self.step_in_epoch < len(self.loader):  # epoch ends: below
                        self._checkpoint(log)
                    if self.timer.step_done():
                        self._write_profile()
                bar.close()
                self._report_bad_samples()
                self.epoch, self.step_in_epoch = self.epoch + 1, 0
                milestone = self.epoch % cfg.checkpoint_every == 0 or self.epoch == cfg.epochs
                if milestone or self._steps_due():
                    self._checkpoint(log, milestone=milestone)
        acc.wait_for_everyone()

    def _steps_due(self) -> bool:
        return bool(self.cfg.checkpoint_every_steps) and self.step % self.cfg.checkpoint_every_steps == 0

    def _train_step(self, batch) -> torch.Tensor:
        timer = self.timer
        with timer("host-to-device"):
            batch = send_to_device(batch, self.accelerator.device, non_blocking=True)
        loss = self.objective(self.model, batch, self.generator, timer)
        if not torch.isfinite(loss):
            self._fail("loss", loss.item())
        with timer("backward"):
            self.accelerator.backward(loss)
        with timer("optimizer"):
            norm = self.accelerator.clip_grad_norm_(self.unet.parameters(), self.cfg.grad_clip or float("inf"))
            # fp16's grad scaler skips steps with inf gradients by design; elsewhere a non-finite gradient is a fault
            if self.cfg.mixed_precision != "fp16" and not torch.isfinite(norm):
                self._fail("gradient norm", norm.item())
            self.optimizer.step()
            self.lr_schedule.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            with timer("EMA"):
                self.ema.step(self.accelerator.unwrap_model(self.unet).parameters())
        return loss.detach()

    def _write_profile(self) -> None:
        if self.accelerator.is_main_process:
            table = self.timer.write(self.run_dir / "profile", caption=(
                f"Training step by stage: mean over the first {self.timer.steps} steps of this attempt, batch "
                f"{self.cfg.batch_size}, {self.cfg.num_workers} DataLoader workers, on {self.accelerator.device}"
                + (" (CUDA synchronised per stage)" if self.timer.sync else "") + "."))
            print(table)

    def _report_bad_samples(self) -> None:
        """List the rows a shard stream skipped this epoch (all ranks) and keep them in ``bad_samples.csv``."""
        if not hasattr(self.dataset, "bad_samples"):
            return
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        from .data.shards import summarize_bad_samples

        records = self.dataset.bad_samples(self.epoch)
        if records:
            print(f"epoch {self.epoch + 1}: " + summarize_bad_samples(records, self.dataset.total_rows))
            path = self.run_dir / "bad_samples.csv"
            new = not path.exists()
            with open(path, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["epoch", "shard", "row", "reason"])
                if new:
                    writer.writeheader()
                writer.writerows({**r, "epoch": r["epoch"] + 1} for r in records)

    def _fail(self, what: str, value: float) -> None:
        last = self.last_checkpoint.name if self.last_checkpoint else "none (the run has no checkpoint yet)"
        raise NonFiniteError(f"{what} is {value} at step {self.step + 1} (epoch {self.epoch + 1}); stopped without "
                             f"saving. Last good checkpoint: {last}. Try a lower learning_rate or set grad_clip.")

    # --- checkpoints -------------------------------------------------------------------------------------------
    def _checkpoint(self, log: "_LossLog", milestone: bool = False) -> Path:
        """Write the full training state; every process contributes its RNG state, the main process writes."""
        acc, cfg = self.accelerator, self.cfg
        log.flush()
        unet = acc.unwrap_model(self.unet)
        if not all(torch.isfinite(p).all() for p in unet.parameters()):
            self._fail("a weight", float("nan"))
        rng = gather_object([_rng_state(self.generator)])  # one entry per process, in rank order
        name = checkpoints.name_for(self.epoch, self.step, self.step_in_epoch)
        path = checkpoints.checkpoint_dir(self.run_dir) / name
        if acc.is_main_process:
            tensors, optimizer_json = _split_optimizer_state(self.optimizer.state_dict())
            for rank, state in enumerate(rng):
                tensors.update({f"rng.{rank}.{k}": v for k, v in state["tensors"].items()})
            ema_json = None
            if self.ema is not None:
                ema_json = self.ema.state_dict()
                tensors.update({f"ema.{i}": p for i, p in enumerate(ema_json.pop("shadow_params"))})
            writers = {"unet": lambda p: unet.save_pretrained(p, safe_serialization=True),
                       "training_state.safetensors": checkpoints.save_tensors(tensors)}
            if self.ema is not None:
                writers["ema"] = lambda p: self._ema_unet(unet).save_pretrained(p, safe_serialization=True)
            state = {"epoch": self.epoch, "step": self.step, "step_in_epoch": self.step_in_epoch,
                     "data_seed": cfg.seed, "num_processes": acc.num_processes, "config": cfg.to_dict(),
                     "optimizer": optimizer_json, "lr_schedule": self.lr_schedule.state_dict(),
                     "ema": ema_json, "rng": [state["json"] for state in rng]}
            path = checkpoints.save(self.run_dir, name, writers, state, milestone, cfg.keep_checkpoints)
        acc.wait_for_everyone()
        self.last_checkpoint = path
        return path

    def _ema_unet(self, unet: UNet2DConditionModel) -> UNet2DConditionModel:
        """A copy of the UNet holding the EMA weights: what sampling loads by default."""
        copy = UNet2DConditionModel.from_config(unet.config)
        self.ema.copy_to(copy.parameters())
        return copy

    def _resume(self) -> bool:
        """Load the latest valid checkpoint, if any; True if it was taken mid-epoch."""
        acc = self.accelerator
        path = checkpoints.latest(self.run_dir)
        if path is None:
            return False
        state = checkpoints.load_state(path)
        tensors = checkpoints.load_tensors(path)
        unet = acc.unwrap_model(self.unet)
        unet.load_state_dict(checkpoints.load_unet(path).state_dict())
        self.optimizer.load_state_dict(_join_optimizer_state(tensors, state["optimizer"]))
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        if self.ema is not None:
            shadow = [tensors[f"ema.{i}"].to(acc.device) for i in range(len(self.ema.shadow_params))]
            self.ema.load_state_dict({**state["ema"], "shadow_params": shadow})
        self.epoch, self.step, self.step_in_epoch = state["epoch"], state["step"], state["step_in_epoch"]
        if state["num_processes"] == acc.num_processes:
            rank = acc.process_index
            _set_rng_state(self.generator, state["rng"][rank],
                           {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"rng.{rank}.")})
        elif self.step_in_epoch:
            warnings.warn(f"checkpoint written by {state['num_processes']} processes, resuming on {acc.num_processes}: "
                          "the rest of this epoch draws new noise (the run is no longer bit-reproducible)")
            self.generator.manual_seed(epoch_seed(self.cfg.seed, self.epoch, acc.process_index) + self.step)
        if acc.is_main_process:
            _truncate_loss_log(self.run_dir / LOSS_LOG, self.step)
        self.last_checkpoint = path
        acc.print(f"resuming {self.run_dir.name} from {path.name} (epoch {self.epoch}, step {self.step})")
        return self.step_in_epoch > 0


def _any_process(accelerator: Accelerator, *flags: bool) -> tuple[bool, ...]:
    """Each flag, True on every process if it is True on any (a signal may reach only some ranks)."""
    if accelerator.num_processes == 1:
        return flags
    summed = accelerator.reduce(torch.tensor([float(f) for f in flags], device=accelerator.device), "sum")
    return tuple(bool(v > 0) for v in summed.tolist())


def _make_loader(dataset: Dataset, cfg: ExperimentConfig, accelerator: Accelerator):
    """Batches on the CPU (the loop moves them). A map-style dataset is shuffled by accelerate's seedable sampler
    and split across processes by accelerate; a shard stream shuffles and splits itself (by rank and worker), so
    accelerate must not split it again."""
    pin = accelerator.device.type == "cuda"
    if isinstance(dataset, IterableDataset):
        loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers, pin_memory=pin,
                            persistent_workers=False)
        return prepare_data_loader(loader, num_processes=1, process_index=0, put_on_device=False)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=False,
                        num_workers=cfg.num_workers, pin_memory=pin)
    return accelerator.prepare_data_loader(loader, device_placement=False)


def _rng_state(generator: torch.Generator) -> dict:
    """Every RNG the training step may touch: tensors for safetensors, the rest as JSON."""
    tensors = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {"tensors": tensors, "json": {"numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
                                         "python": [version, list(internal), py_gauss]}}


def _set_rng_state(generator: torch.Generator, json_state: dict, tensors: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    generator.set_state(tensors["generator"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    kind, keys, pos, has_gauss, gauss = json_state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = json_state["python"]
    random.setstate((version, tuple(internal), py_gauss))


def _split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state -> (tensors for safetensors, everything else as JSON); nothing is pickled."""
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], saved: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": saved["param_groups"]}


def read_loss_log(run_dir: Path) -> dict[str, np.ndarray]:
    """``{"epoch": ..., "step": ..., "loss": ...}`` arrays from a run's loss log."""
    with open(Path(run_dir) / LOSS_LOG) as f:
        rows = list(csv.DictReader(f))
    return {key: np.array([float(r[key]) for r in rows]) for key in ("epoch", "step", "loss")}


def load_run_config(run_dir: Path) -> ExperimentConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json)")
    return ExperimentConfig.from_dict(json.loads(path.read_text()))


def _write_or_check_config(run_dir: Path, cfg: ExperimentConfig, accelerator: Accelerator) -> None:
    path = run_dir / "config.json"
    if path.exists():
        old = load_run_config(run_dir)
        changed = {k for k, v in cfg.to_dict().items() if old.to_dict()[k] != v}
        if changed - RESUMABLE_CHANGES:
            raise ValueError(
                f"{run_dir} was trained with a different config ({', '.join(sorted(changed - RESUMABLE_CHANGES))} "
                "differ); choose a new run name, or delete the run folder to start over")
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(cfg.to_json())


def _truncate_loss_log(path: Path, step: int) -> None:
    """Drop log rows past the checkpoint we resume from, so a resumed run's log has no repeated steps."""
    if path.exists():
        with open(path) as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", "step", "loss"])
            writer.writeheader()
            writer.writerows(rows)


class _LossLog:
    """Appends ``epoch, step, loss`` rows. Losses stay on the device until :meth:`flush` (every ``log_every`` steps
    and before every checkpoint), so logging costs one device sync per flush."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled, self.file = path, enabled, None
        self.pending: list[tuple[int, int, torch.Tensor]] = []

    def __enter__(self) -> "_LossLog":
        if self.enabled:
            new = not self.path.exists()
            self.file = open(self.path, "a", newline="")
            if new:
                self.file.write("epoch,step,loss\n")
        return self

    def add(self, epoch: int, step: int, loss: torch.Tensor) -> int:
        self.pending.append((epoch, step, loss))
        return len(self.pending)

    def flush(self) -> float:
        """Write pending rows; return their mean loss (NaN if none)."""
        if not self.pending:
            return float("nan")
        values = torch.stack([loss for _, _, loss in self.pending]).float().cpu().tolist()
        if self.file is not None:
            self.file.writelines(f"{e},{s},{v:.6g}\n" for (e, s, _), v in zip(self.pending, values))
            self.file.flush()
        self.pending = []
        return float(np.mean(values))

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.flush()  # rows past the last checkpoint are dropped again on resume
            self.file.close()


def train_experiment(cfg: ExperimentConfig, run_dir: Path) -> Path:
    """Everything a run needs, then :func:`fit`: the frozen text encoder encodes each caption once (and is then
    dropped; training only looks embeddings up), the dataset is loaded, and the UNet trains or resumes."""
    from . import data
    from .models import check_text_width
    from .text import TextEncoder

    text = TextEncoder.from_pretrained(cfg.text_encoder, cfg.max_tokens)
    check_text_width(cfg, text.hidden_size)
    if cfg.vae is not None:  # latent diffusion: cached VAE posteriors, a new caption per image and step
        from .text import CaptionEncoder

        dataset = data.load_dataset(cfg, "train")  # builds the latent cache on first use
        conditioner = CaptionEncoder(text)  # the trainer moves it (and the encoder) to its device
        return fit(cfg, run_dir, dataset, conditioner,
                   objective=LatentEpsilonObjective(training_scheduler(cfg), conditioner, cfg.p_uncond))
    captions = CaptionTable.build(text, cfg.captions)
    del text
    return fit(cfg, run_dir, data.load_dataset(cfg, "train"), captions)
