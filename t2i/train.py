"""The training loop: model-agnostic, on HF accelerate from the start.

The loop knows batches, an objective, an optimizer, checkpoints and a loss log. What makes it *diffusion*
lives in the objective (:class:`EpsilonObjective`); what makes it *text-conditioned* lives in the caption table
the objective looks embeddings up in. The same code runs on a CPU, one GPU, or ``accelerate launch`` across many.

Reproducibility: every epoch reseeds its data order (accelerate's seedable sampler, ``seed + epoch``) and its
noise / timestep / dropout generator (from ``(seed, epoch, rank)``), so resuming from an epoch checkpoint
continues exactly the run that would have happened.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader, Dataset

from . import checkpoints
from .configs import ExperimentConfig
from .console import progress
from .models import build_unet, count_parameters
from .sampling import training_scheduler
from .text import CaptionTable

LOSS_LOG = "loss.csv"
# Fields that may change when a finished run is extended (train for more epochs); anything else is a new run.
RESUMABLE_CHANGES = {"epochs", "checkpoint_every", "sampler", "num_inference_steps", "guidance_scales"}

Objective = Callable[[torch.nn.Module, tuple[torch.Tensor, ...], torch.Generator], torch.Tensor]


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

    def __call__(self, model: torch.nn.Module, batch, generator: torch.Generator) -> torch.Tensor:
        x0, caption_ids = batch
        n, device = x0.shape[0], x0.device
        eps = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (n,), generator=generator, device=device)
        drop = torch.rand(n, generator=generator, device=device) < self.p_uncond
        x_t = self.noise_scheduler.add_noise(x0, eps, t)
        emb = self.captions.lookup(caption_ids, drop)
        eps_pred = model(x_t, t, encoder_hidden_states=emb).sample
        return F.mse_loss(eps_pred.float(), eps.float())


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Independent, reproducible stream for (run seed, epoch, process)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def fit(cfg: ExperimentConfig, run_dir: Path, dataset: Dataset, captions: CaptionTable,
        objective: Objective | None = None, log_every: int = 10) -> Path:
    """Train (or resume) the run in ``run_dir`` to ``cfg.epochs`` and return ``run_dir``.

    The run folder holds ``config.json``, ``loss.csv`` (epoch, step, loss) and ``checkpoints/``. If the run has
    checkpoints, training resumes from the latest one; a run that is already complete returns at once.
    """
    run_dir = Path(run_dir)
    accelerator = Accelerator(dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed))
    _write_or_check_config(run_dir, cfg, accelerator)

    set_seed(cfg.seed)  # the UNet's initial weights
    unet = build_unet(cfg)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    epoch, step = 0, 0
    last = checkpoints.latest(run_dir)
    if last is not None:
        state = checkpoints.load_state(last)
        unet.load_state_dict(checkpoints.load_unet(last).state_dict())
        checkpoints.load_optimizer(last, optimizer)
        epoch, step = state["epoch"], state["step"]
        if accelerator.is_main_process:
            _truncate_loss_log(run_dir / LOSS_LOG, step)
        accelerator.print(f"resuming {run_dir.name} from {last.name} (step {step})")
    if epoch >= cfg.epochs:
        accelerator.print(f"{run_dir.name}: already trained for {epoch} epochs")
        return run_dir
    accelerator.print(f"training {cfg.experiment}/{run_dir.name} on {accelerator.device}: "
                      f"{count_parameters(unet):,} UNet parameters, {len(dataset):,} images, epochs {epoch + 1}..{cfg.epochs}")

    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=False)
    unet, optimizer, loader = accelerator.prepare(unet, optimizer, loader)
    if objective is None:
        objective = EpsilonObjective(training_scheduler(cfg), captions.to(accelerator.device), cfg.p_uncond)

    with _LossLog(run_dir / LOSS_LOG, enabled=accelerator.is_main_process) as log:
        for epoch in range(epoch, cfg.epochs):
            loader.set_epoch(epoch)
            generator = torch.Generator(accelerator.device).manual_seed(
                epoch_seed(cfg.seed, epoch, accelerator.process_index))
            unet.train()
            pending: list[torch.Tensor] = []
            bar = progress(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not accelerator.is_main_process)
            for batch in bar:
                loss = objective(unet, batch, generator)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                pending.append(loss.detach())
                if len(pending) == log_every:
                    bar.set_postfix(loss=f"{log.write(epoch + 1, step, pending):.4f}")
                    pending = []
            if pending:
                log.write(epoch + 1, step, pending)
            if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    checkpoints.save(run_dir, accelerator.unwrap_model(unet), optimizer,
                                     {"epoch": epoch + 1, "step": step, "config": cfg.to_dict()})
    accelerator.wait_for_everyone()
    return run_dir


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
    """Appends ``epoch, step, loss`` rows; the loss is pulled off the device once per ``log_every`` steps."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled, self.file = path, enabled, None

    def __enter__(self) -> "_LossLog":
        if self.enabled:
            new = not self.path.exists()
            self.file = open(self.path, "a", newline="")
            if new:
                self.file.write("epoch,step,loss\n")
        return self

    def write(self, epoch: int, last_step: int, losses: list[torch.Tensor]) -> float:
        values = torch.stack(losses).float().cpu().tolist()
        bad = [i for i, v in enumerate(values) if not np.isfinite(v)]
        if bad:
            raise FloatingPointError(f"loss became non-finite at step {last_step - len(values) + 1 + bad[0]} "
                                     f"(epoch {epoch}); the last checkpoint is the last good state")
        if self.file is not None:
            first = last_step - len(values) + 1
            self.file.writelines(f"{epoch},{first + i},{v:.6g}\n" for i, v in enumerate(values))
            self.file.flush()
        return float(np.mean(values))

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()


def train_experiment(cfg: ExperimentConfig, run_dir: Path) -> Path:
    """Everything a run needs, then :func:`fit`: the frozen text encoder encodes each caption once (and is then
    dropped; training only looks embeddings up), the dataset is loaded, and the UNet trains or resumes."""
    from . import data
    from .models import check_text_width
    from .text import TextEncoder

    text = TextEncoder.from_pretrained(cfg.text_encoder, cfg.max_tokens)
    check_text_width(cfg, text.hidden_size)
    captions = CaptionTable.build(text, cfg.captions)
    del text
    return fit(cfg, run_dir, data.load_dataset(cfg, "train"), captions)
