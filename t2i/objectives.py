"""What a training step minimises: DDPM's epsilon loss, on pixels or on cached VAE latents, with the conditioner that
turns a batch's conditions into text embeddings.

The trainer calls ``objective(model, batch, generator, timer)`` and knows nothing else about diffusion or text. Every
random draw of a step comes from ``generator``, in a fixed order, so a run resumed from a checkpoint (which stores
the generator) repeats the uninterrupted run exactly; draws per training example (CelebA's captions) are made by the
data pipeline, seeded by the example's place in the epoch (``Conditioner.example_transform``), and repeat likewise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .configs import ExperimentConfig
from .sampling import training_scheduler
from .timing import NULL_TIMER, StageTimer


class Conditioner(Protocol):
    """Conditions -> text embeddings [N, tokens, hidden]. :class:`t2i.text.CaptionTable` (class captions, looked up)
    and :class:`t2i.data.celeba.AttributeCaptions` (a caption drawn from each face's attributes) are the two.

    ``example_transform``, if not None, is what the data pipeline applies to each training example before batching
    (``transform(example, rng)``, in the DataLoader workers, with a generator seeded by seed, epoch, shard and row):
    CelebA draws and tokenises a caption there, so the step only runs the text encoder and never waits for Python."""

    example_transform: Callable[[tuple, np.random.Generator], tuple] | None

    def to(self, device: torch.device | str) -> "Conditioner": ...

    def embed(self, conditions: Any, drop: torch.Tensor) -> torch.Tensor: ...  # drop[i]: use the null embedding


class EpsilonObjective:
    """DDPM's simple loss (Ho et al. 2020, eq. 14): ``|| eps - eps_theta(x_t, t, c) ||^2`` with
    ``x_t = sqrt(alphas_cumprod_t) x0 + sqrt(1 - alphas_cumprod_t) eps`` and ``t ~ U{0, T-1}``.

    With probability ``p_uncond`` a condition is replaced by the null (empty-prompt) embedding, which trains the
    unconditional model classifier-free guidance needs (Ho & Salimans 2022). Batches are ``(x0, conditions)``.
    """

    def __init__(self, noise_scheduler, conditioner: Conditioner, p_uncond: float):
        self.noise_scheduler = noise_scheduler
        self.conditioner = conditioner
        self.p_uncond = p_uncond

    def to(self, device: torch.device | str) -> "EpsilonObjective":
        """The same objective with its conditioner (embeddings or text encoder) on ``device``."""
        return type(self)(self.noise_scheduler, self.conditioner.to(device), self.p_uncond)

    def x0(self, batch, generator: torch.Generator, timer: StageTimer) -> tuple[torch.Tensor, Any]:
        """``(x0, conditions)`` of a batch: here the batch itself."""
        return batch

    def __call__(
        self, model: torch.nn.Module, batch, generator: torch.Generator, timer: StageTimer = NULL_TIMER
    ) -> torch.Tensor:
        x0, conditions = self.x0(batch, generator, timer)
        n, device = x0.shape[0], x0.device
        with timer("noise"):
            eps = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
            t = torch.randint(
                0, self.noise_scheduler.config.num_train_timesteps, (n,), generator=generator, device=device
            )
        with timer("CFG masking"):
            drop = torch.rand(n, generator=generator, device=device) < self.p_uncond
        with timer("noise"):
            x_t = self.noise_scheduler.add_noise(x0, eps, t)
        with timer("text"):
            emb = self.conditioner.embed(conditions, drop)
        with timer("forward"):
            eps_pred = model(x_t, t, encoder_hidden_states=emb).sample
        with timer("loss"):
            return F.mse_loss(eps_pred.float(), eps.float())


class LatentEpsilonObjective(EpsilonObjective):
    """The same loss on VAE latents read from the latent cache (thesis 3.5.7, without running the VAE): batches are
    ``(mean, std, conditions)`` of the cached, scaled posterior, and each step draws ``z0 = mean + std * eps``."""

    def x0(self, batch, generator: torch.Generator, timer: StageTimer) -> tuple[torch.Tensor, Any]:
        mean, std, conditions = batch
        with timer("noise"):
            z0 = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return z0, conditions


def for_config(cfg: ExperimentConfig, conditioner: Conditioner) -> EpsilonObjective:
    """The objective of an experiment: on latents when it has a VAE, on pixels otherwise."""
    kind = LatentEpsilonObjective if cfg.vae is not None else EpsilonObjective
    return kind(training_scheduler(cfg), conditioner, cfg.p_uncond)
