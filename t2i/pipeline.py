"""A trained run as a function from prompts to images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import copy
import dataclasses

import torch

from . import checkpoints, guidance, hub, paths, perturb, posthoc
from .configs import ExperimentConfig
from .errors import ConfigError, RunError
from .console import progress
from .models import check_text_width
from .runs import load_config
from .sampling import Evaluations, Sampler, initial_noise, make_scheduler, sample, unet_eps, x0_range
from .text import TextEncoder
from .vae import LatentCodec, check_latent_shape


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def assets_used(cfg: ExperimentConfig) -> dict[str, str | None]:
    """The published artefacts a run's results come from, each ``repo@commit`` (t2i.hub), for provenance."""
    return {
        "text_encoder": hub.describe(cfg.text_encoder),
        "vae": hub.describe(cfg.vae),
        "data": hub.downloaded(cfg.shards, paths.data_dir()) if cfg.shards else None,
    }


class TextToImage:
    """UNet + text encoder + sampler. ``images(prompts, guidance_scale, seed)`` returns images in [0, 1].

    Image ``i`` is drawn from seed ``seed + i`` with its own generator, so the same seed gives the same image
    for a prompt whatever the batch size; no seed means the run's (:meth:`seed_for`).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        unet: torch.nn.Module,
        text: TextEncoder,
        device: torch.device | str | None = None,
        checkpoint: Path | None = None,
        sampler: Sampler | str | None = None,
        num_inference_steps: int | None = None,
        weights: str = "raw",
        codec: "LatentCodec | None" = None,
    ):
        check_text_width(cfg, text.hidden_size)
        self.cfg = cfg
        # the default of images(): the run's config, unless overridden
        self.sampling = (
            sampler if isinstance(sampler, Sampler) else Sampler.of(cfg, name=sampler, steps=num_inference_steps)
        )
        check_steps(cfg, self.sampling.steps)
        self.device = torch.device(device) if device is not None else default_device()
        self.unet = unet.eval().requires_grad_(False).to(self.device)
        self.text = text
        self.checkpoint = checkpoint  # provenance: which weights made the images
        self.weights = weights  # "raw" or "ema": provenance of the UNet's weights
        self.codec = codec  # latent diffusion: the VAE that decodes sampled latents
        if cfg.vae is not None and codec is not None:
            check_latent_shape(cfg, codec)

    @classmethod
    def from_run(
        cls,
        run_dir: Path,
        checkpoint: str | None = None,
        device: torch.device | str | None = None,
        text: TextEncoder | None = None,
        ema: bool | None = None,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        cfg: ExperimentConfig | None = None,
        spacing: str | None = None,
        sigma_max: float | None = None,
        ema_length: float | None = None,
        preset: bool = True,
    ) -> "TextToImage":
        """A run's latest (or named) checkpoint with its text encoder (and VAE), under its config (``cfg``, when the
        caller has read it already).

        ``ema``: sample with the EMA weights (True) or the raw trained weights (False). ``ema_length``: instead, a
        post-hoc EMA of this relative length (EDM2's sigma_rel), reconstructed from the run's snapshots up to the
        checkpoint (:mod:`t2i.posthoc`). Neither given: the length ``make ema`` chose for CFG on this checkpoint
        (:func:`t2i.posthoc.preset`; ``preset=False``: not), else the EMA weights when the run has them.
        """
        cfg = cfg or load_config(run_dir)
        path = checkpoints.resolve(Path(run_dir), checkpoint)
        chosen = None
        if ema is None and ema_length is None and preset:
            ema_length = chosen = posthoc.preset(Path(run_dir), path, checkpoints.manifest_sha256(path), "cfg")
        unet, weights = (
            checkpoints.load_weights(path, ema)
            if ema_length is None
            else posthoc_weights(Path(run_dir), path, ema_length)
        )
        if chosen is not None:
            weights += f", the preset `make ema` chose for CFG ({posthoc.PRESETS})"
        text = text or TextEncoder.from_pretrained(cfg.text_encoder, cfg.max_tokens)
        device = torch.device(device) if device is not None else default_device()
        codec = LatentCodec.from_pretrained(cfg.vae, device=device) if cfg.vae is not None else None
        sampling = Sampler.of(cfg, name=sampler, steps=num_inference_steps, spacing=spacing, sigma_max=sigma_max)
        return cls(cfg, unet, text, device, checkpoint=path, sampler=sampling, weights=weights, codec=codec)

    def with_sampler(self, sampler: Sampler) -> "TextToImage":
        """The same model, text encoder and VAE, sampled with ``sampler`` by default."""
        check_steps(self.cfg, sampler.steps)
        other = copy.copy(self)
        other.sampling = sampler
        return other

    @property
    def sampler(self) -> str:
        return self.sampling.name

    @property
    def num_inference_steps(self) -> int:
        """The default step count (:meth:`steps_at`: the count at a guidance scale, which may be higher)."""
        return self.sampling.steps

    def steps_at(self, guidance_scale: float) -> int:
        """Steps :meth:`images` takes at this guidance scale by default (more above high_guidance_scale)."""
        return self.sampling.at(guidance_scale).steps

    def seed_for(self, seed: int | None) -> int:
        """The seed images are drawn from: the given one, or the run's."""
        return self.cfg.seed if seed is None else int(seed)

    def provenance(self, **facts) -> dict:
        """What made this pipeline's images, for ``reports.write_provenance(path, **pipe.provenance(...))``: config,
        checkpoint, weights, sampler, steps and seed (the run's, unless ``facts`` say otherwise), plus ``facts``."""
        return {
            "cfg": self.cfg,
            "checkpoint": self.checkpoint,
            "weights": self.weights,
            "sampler": self.sampler,
            "num_inference_steps": self.num_inference_steps,
            "high_guidance": (
                {"above": self.sampling.high_guidance_scale, "steps": self.sampling.high_guidance_steps}
                if self.sampling.high_guidance_scale is not None
                else None
            ),
            "timestep_spacing": self.sampling.spacing,
            "sigma_max": self.sampling.sigma_max,
            "seed": self.cfg.seed,
            "device": str(self.device),
            "checkpoint_manifest_sha256": checkpoints.manifest_sha256(self.checkpoint) if self.checkpoint else None,
            "assets": assets_used(self.cfg),
            **facts,
        }

    @torch.no_grad()
    def images(
        self,
        prompts: Sequence[str],
        guidance_scale: float,
        seed: int | None = None,
        *,
        sampler: Sampler | str | None = None,
        num_inference_steps: int | None = None,
        batch_size: int = 250,
        show_progress: bool = True,
        callback=None,
        method: str = "cfg",
        params: dict | None = None,
        guide: torch.nn.Module | None = None,
        evaluations: Evaluations | None = None,
    ) -> torch.Tensor:
        """Sample one image per prompt: [len(prompts), C, H, W] float32 in [0, 1] on the CPU. ``callback(i, t, x_t)``
        sees every step of every batch (the trajectory of thesis Figure 1). ``sampler``: another :class:`Sampler`
        (or name) than the pipeline's. ``method`` and ``params``: the guidance method (:mod:`t2i.guidance`; plain CFG
        by default), ``guide`` the weaker UNet autoguidance needs. ``evaluations`` counts the network's evaluations."""
        cfg = self.cfg
        seed = self.seed_for(seed)
        if isinstance(sampler, Sampler):
            sampling = sampler
        else:
            sampling = self.sampling if sampler is None else dataclasses.replace(self.sampling, name=sampler)
        if num_inference_steps:  # that count at every scale
            sampling = sampling.fixed(num_inference_steps)
        sampling = sampling.at(guidance_scale)
        check_steps(cfg, sampling.steps)
        if guidance.method(method).pixel_only and self.codec is not None:
            raise ConfigError(f"guidance method {method!r} acts on pixel values; this run samples VAE latents")
        scheduler = make_scheduler(sampling, cfg)
        count = evaluations.wrap if evaluations is not None else (lambda model: model)
        context = guidance.Context(
            alphas_cumprod=scheduler.alphas_cumprod,
            data_range=self.data_range,
            guide=count(unet_eps(guide.eval().to(self.device))) if guide is not None else None,
            perturbed=lambda kind, p: perturb.weak_model(self.unet, kind, p, count),
        )
        steps = sampling.steps
        cond = self.text.encode(list(prompts))
        uncond = self.text.null_embedding
        model = count(unet_eps(self.unet))
        shape = cfg.model_shape
        out = []
        starts = range(0, len(prompts), batch_size)
        for start in progress(
            starts, desc=f"sampling w={guidance_scale:g}", disable=not show_progress or len(starts) < 2
        ):
            seeds = range(seed + start, seed + min(start + batch_size, len(prompts)))
            x_T, generators = initial_noise(seeds, shape, self.device)
            c = cond[start : start + len(seeds)].to(self.device)
            denoiser = guidance.denoiser(
                method, model, c, uncond.expand_as(c).to(self.device), guidance_scale, params, context
            )
            x0 = sample(
                denoiser, x_T, scheduler, steps, generator=generators, callback=callback, x0_range=x0_range(cfg)
            )
            if self.codec is not None:  # latents -> pixels in [-1, 1], a few at a time (256 px decodes are big)
                x0 = torch.cat([self.codec.decode(z) for z in x0.split(16)])
            out.append(x0.float().cpu())
        low, high = (-1.0, 1.0) if self.codec is not None else cfg.pixel_range  # the VAE decodes to [-1, 1]
        return ((torch.cat(out) - low) / (high - low)).clamp(0, 1)

    @property
    def data_range(self) -> tuple[float, float]:
        """The range of what the UNet denoises: the training pixels, or nominally [-1, 1] for scaled latents."""
        return (-1.0, 1.0) if self.codec is not None else tuple(self.cfg.pixel_range)


def posthoc_weights(run_dir: Path, checkpoint: Path, sigma_rel: float) -> tuple[torch.nn.Module, str]:
    """The checkpoint's UNet holding a post-hoc EMA of length ``sigma_rel`` (from the snapshots up to its step)."""
    unet = checkpoints.load_unet(checkpoint)
    params, info = posthoc.reconstruct(run_dir, sigma_rel, at_step=checkpoints.load_state(checkpoint)["step"])
    shapes = {name: tuple(p.shape) for name, p in unet.named_parameters()}
    missing = set(shapes) - set(params)
    other = sorted(name for name, t in params.items() if name in shapes and tuple(t.shape) != shapes[name])
    if missing or other:
        raise RunError(
            f"the post-hoc EMA snapshots of {run_dir} do not fit its UNet: {len(missing)} parameter(s) "
            f"missing, {len(other)} of another shape{f' ({other[0]}, ...)' if other else ''}"
        )
    unet.load_state_dict(params, strict=False)
    left_out = f", {len(info['left_out'])} damaged left out: {', '.join(info['left_out'])}" if info["left_out"] else ""
    return unet, (
        f"post-hoc EMA sigma_rel={sigma_rel:g} (step {info['step']:,}, {info['snapshots']} snapshots"
        f"{left_out}, profile fit error {info['profile_error']:.1%})"
    )


def check_steps(cfg: ExperimentConfig, steps: int) -> None:
    if not 1 <= steps <= cfg.num_train_timesteps:
        raise ConfigError(
            f"num_inference_steps {steps} must be between 1 and the run's {cfg.num_train_timesteps} training timesteps"
        )


def load_guide(run_dir: Path, checkpoint: str | None = None, guide_run: Path | None = None) -> torch.nn.Module | None:
    """Autoguidance's weaker model: an earlier checkpoint of the run (``checkpoint``, e.g. epoch-0010), or the newest
    of another run trained on the same data (``guide_run``), each with its EMA weights if it has them; None if
    neither is given."""
    if guide_run is not None:
        return checkpoints.load_weights(checkpoints.resolve(Path(guide_run)))[0]
    if checkpoint is not None:
        return checkpoints.load_weights(checkpoints.resolve(Path(run_dir), checkpoint))[0]
    return None
