"""Samplers by name and the sampling loop.

The pieces follow k-diffusion's split: a *denoiser* is any function ``(x_t, t) -> eps``; the guidance methods of
:mod:`t2i.guidance` turn a text-conditioned model into such a denoiser; ``sample`` runs a diffusers scheduler over a
denoiser and knows nothing about guidance, text, datasets or files.

Every sampler is a diffusers scheduler configured from the run's training schedule (:data:`SAMPLERS`), with its
timestep spacing ("leading", "trailing", "linspace") as a setting (:class:`Sampler`).

**x0 stays in the data's range.** Every x0 prediction is clipped to the range the UNet was trained on
(:func:`x0_range`: the config's ``pixel_range``; latents are not clipped) by the loop itself, for every sampler and
spacing alike: :func:`sample` turns the denoiser's eps into x0 = (x_t - sqrt(1 - alphabar) eps) / sqrt(alphabar) at
the step's noise level, clips it, and gives the scheduler the eps of the clipped x0, so each scheduler's own
conversion sees the clipped prediction. The schedulers' own clips are off: diffusers' ``clip_sample`` and
``thresholding`` are symmetric around 0 ([-1, 1] at most), which on MNIST's [0, 1] data let every x0 between -1 and 0
through (34% of DDIM x 50's pixels on the demo ended below 0) and clamped them to black afterwards; Euler had no clip
at all. The clip also matters at the noisiest steps of "trailing" and "linspace" spacings, where sqrt(alphabar) is
tiny and the eps error is amplified many times (sigma = 71 at t = 990 on the cosine schedule): unclipped,
DPM-Solver++ left 60% of the demo's pixels white.
A second setting, ``sigma_max``, clips the schedule itself: the cosine schedule caps its betas at 0.999, so its last
timestep sits at sigma = 20,291 (t = 998 at 642); Karras-sigma samplers space their steps from there and waste them.
EDM's sigma_max = 80 (Karras et al. 2022) keeps the timesteps whose sigma is at most 80: the scheduler is built from
the first betas, so alphabar at every kept timestep, and what the UNet is told, are the training ones.

Guidance convention (thesis eq. 1, Ho & Salimans 2022): ``eps = eps_uncond + w * (eps_cond - eps_uncond)``;
w = 0 is unconditional, w = 1 plain conditional, w > 1 extrapolates towards the prompt.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from .configs import SAMPLERS, SPACINGS, ExperimentConfig
from .errors import ConfigError

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EpsModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SamplerKind:
    """A sampler's entry: its diffusers scheduler and options, and its traits (tests/test_sampling.py checks each
    against the scheduler): ``karras``: it places its own steps on Karras et al.'s sigmas, so timestep spacing does not
    apply; ``stochastic``: it draws fresh noise every step (from the per-image generators); ``order``: the solver's
    order (network evaluations per step: 2 for Heun, else 1)."""

    scheduler: type
    options: dict
    order: int = 1
    karras: bool = False
    stochastic: bool = False


# name -> what it is; a new sampler is one entry here and its name in configs.SAMPLERS
SCHEDULERS: dict[str, SamplerKind] = {
    "ddpm": SamplerKind(DDPMScheduler, {}, stochastic=True),  # ancestral (Ho et al. 2020)
    "ddim": SamplerKind(DDIMScheduler, {}),  # Song et al. 2021, eta = 0
    "dpmsolver++": SamplerKind(
        DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}, order=2
    ),  # 2M
    "dpmsolver++3m": SamplerKind(
        DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 3}, order=3
    ),
    "dpmsolver++sde": SamplerKind(
        DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, order=2, stochastic=True
    ),
    "unipc": SamplerKind(UniPCMultistepScheduler, {}, order=2),  # Zhao et al. 2023, bh2, diffusers' solver_order 2
    "deis": SamplerKind(DEISMultistepScheduler, {}, order=2),  # Zhang & Chen 2023, diffusers' default solver_order 2
    "euler-karras": SamplerKind(EulerDiscreteScheduler, {"use_karras_sigmas": True}, karras=True),  # EDM's sigmas
    "heun-karras": SamplerKind(HeunDiscreteScheduler, {"use_karras_sigmas": True}, order=2, karras=True),  # EDM's
}
assert set(SCHEDULERS) == set(SAMPLERS), "configs.SAMPLERS lists the names, SCHEDULERS says what they are"
KARRAS = tuple(name for name, kind in SCHEDULERS.items() if kind.karras)  # derived from the entries, never typed
STOCHASTIC = tuple(name for name, kind in SCHEDULERS.items() if kind.stochastic)
EDM_SIGMA_MAX = 80.0  # Karras et al. 2022, Table 1


@dataclass(frozen=True)
class Sampler:
    """How to sample: a scheduler by name, a step count, the timestep spacing and the clipped maximum noise level;
    optionally more steps above a guidance scale (``high_guidance_steps`` where w > ``high_guidance_scale``)."""

    name: str
    steps: int
    spacing: str = "leading"
    sigma_max: float | None = None
    high_guidance_scale: float | None = None
    high_guidance_steps: int | None = None

    @classmethod
    def of(cls, cfg: ExperimentConfig, **overrides) -> "Sampler":
        """The config's sampler, with any of name, steps, spacing, sigma_max overridden (None: the config's). A step
        count given is the count at every guidance scale: the config's high-guidance steps go with its own count."""
        given = {
            "name": cfg.sampler,
            "steps": cfg.num_inference_steps,
            "spacing": cfg.timestep_spacing,
            "sigma_max": cfg.sigma_max,
            "high_guidance_scale": cfg.high_guidance_scale,
            "high_guidance_steps": cfg.high_guidance_steps,
        }
        if overrides.get("steps") is not None:
            given.update(high_guidance_scale=None, high_guidance_steps=None)
        return cls(**{k: (given[k] if overrides.get(k) is None else overrides[k]) for k in given})

    def at(self, guidance_scale: float) -> "Sampler":
        """The sampler that runs at this guidance scale: ``steps``, or ``high_guidance_steps`` above
        ``high_guidance_scale``."""
        high = self.high_guidance_scale is not None and guidance_scale > self.high_guidance_scale
        return Sampler(self.name, self.high_guidance_steps if high else self.steps, self.spacing, self.sigma_max)

    def fixed(self, steps: int) -> "Sampler":
        """This sampler with ``steps`` at every guidance scale."""
        return Sampler(self.name, steps, self.spacing, self.sigma_max)

    def describe(self) -> str:
        spacing = "Karras sigmas" if self.name in KARRAS else f"{self.spacing} spacing"
        clip = f", sigma <= {self.sigma_max:g}" if self.sigma_max is not None else ""
        high = (
            f", {self.high_guidance_steps} above w = {self.high_guidance_scale:g}"
            if self.high_guidance_scale is not None
            else ""
        )
        return f"{self.name} x {self.steps} steps{high} ({spacing}{clip})"


# The thesis's own sampler (3.2.5, 3.3.5, 3.5.8: DDPM, 50 steps): the thesis figures are drawn with it, whatever a
# run's default sampler is (each experiment's default comes from `make samplers`).
THESIS = Sampler("ddpm", 50, "leading", None)


def training_scheduler(cfg: ExperimentConfig) -> DDPMScheduler:
    """The forward (noising) process the UNet is trained against."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        clip_sample=cfg.clip_sample,
        prediction_type="epsilon",
    )


def make_scheduler(sampler: Sampler | str, cfg: ExperimentConfig, **options) -> SchedulerMixin:
    """The scheduler of ``sampler`` (a :class:`Sampler`, or a name with the config's other settings) for the trained
    noise schedule, clipped at ``sigma_max`` (module docstring). ``options`` go to the scheduler's config."""
    sampler = Sampler.of(cfg, name=sampler) if isinstance(sampler, str) else sampler
    if sampler.name not in SCHEDULERS:
        raise ConfigError(f"unknown sampler {sampler.name!r}; known: {SAMPLERS}")
    if sampler.spacing not in SPACINGS:
        raise ConfigError(f"unknown timestep spacing {sampler.spacing!r}; known: {SPACINGS}")
    train = training_scheduler(cfg)
    kind, own = SCHEDULERS[sampler.name].scheduler, dict(SCHEDULERS[sampler.name].options)
    # (keyword arguments: from_config resets the keys its config took as defaults)
    if sampler.sigma_max is not None:
        sigmas = ((1 - train.alphas_cumprod) / train.alphas_cumprod).sqrt()
        kept = int((sigmas <= sampler.sigma_max).sum())
        if kept < 2:
            raise ConfigError(f"sigma_max={sampler.sigma_max:g} keeps {kept} of the schedule's timesteps")
        own.update(num_train_timesteps=kept, trained_betas=train.betas[:kept].tolist())
    if kind is DDIMScheduler and sampler.spacing == "linspace":
        raise ConfigError(
            "DDIM with 'linspace' spacing steps back by T // n instead of to the previous timestep "
            "(diffusers issues #11347, #12633): use 'leading' or 'trailing'"
        )
    # the loop clips x0 to the data's range (x0_range); the schedulers' own symmetric clips stay off
    own.update(clip_sample=False, thresholding=False)
    return kind.from_config(train.config, timestep_spacing=sampler.spacing, **own, **options)


def x0_range(cfg: ExperimentConfig) -> tuple[float, float] | None:
    """The range every x0 prediction is clipped to while sampling: the training pixels' (``pixel_range``) when the run
    clips (``clip_sample``); None for latents, which have no fixed range."""
    return (float(cfg.pixel_range[0]), float(cfg.pixel_range[1])) if cfg.clip_sample and cfg.vae is None else None


def alpha_at(alphas_cumprod: torch.Tensor, t) -> float:
    """alphabar at timestep ``t``: exact at integer timesteps; between them (Karras-sigma samplers ask at fractional
    t), interpolated linearly in log sigma, as diffusers maps sigmas to timesteps."""
    t = float(t)
    low = min(max(int(math.floor(t)), 0), len(alphas_cumprod) - 1)
    high = min(low + 1, len(alphas_cumprod) - 1)
    log_sigma = lambda a: 0.5 * math.log((1 - a) / a)  # noqa: E731
    a_low, a_high = float(alphas_cumprod[low]), float(alphas_cumprod[high])
    if t == low or high == low:
        return a_low
    sigma = math.exp(log_sigma(a_low) + (t - low) * (log_sigma(a_high) - log_sigma(a_low)))
    return 1 / (1 + sigma * sigma)


def clip_x0(eps: torch.Tensor, x: torch.Tensor, alpha: float, low: float, high: float) -> torch.Tensor:
    """The eps whose x0 at ``x`` (x_t, variance-preserving, alphabar ``alpha``) is the x0 ``eps`` implies, clipped to
    [low, high]."""
    a, s = math.sqrt(alpha), math.sqrt(1 - alpha)
    x0 = ((x - s * eps) / a).clamp(low, high)
    return (x - a * x0) / s


def unet_eps(unet: torch.nn.Module) -> EpsModel:
    """Adapt a diffusers UNet to ``(x_t, t, text_embeddings) -> eps``."""
    return lambda x, t, emb: unet(x, t, encoder_hidden_states=emb).sample


class Evaluations:
    """Counts network evaluations: wrap every model a sampling run calls (the guide too), then read
    :attr:`images` (inputs evaluated) and, per image, :meth:`per_image`. Nothing is assumed: a batched CFG call is two
    evaluations per image, Heun's two per step except the last."""

    def __init__(self):
        self.images = 0

    def wrap(self, model: EpsModel) -> EpsModel:
        def counted(x, t, emb):
            self.images += len(x)
            return model(x, t, emb)

        return counted

    def per_image(self, n: int) -> float:
        return self.images / n


def sample(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    scheduler: SchedulerMixin,
    num_inference_steps: int,
    generator: torch.Generator | list[torch.Generator] | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    x0_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Run the reverse process from noise ``x_T`` (unit variance) and return x0.

    ``generator`` feeds the stochastic samplers (DDPM, SDE-DPM-Solver++); a list gives every sample its own
    generator, which makes each image independent of what else is in the batch. ``callback(i, t, x)`` sees every step.
    ``x0_range``: every x0 prediction is clipped to it (:func:`x0_range`; module docstring), None: not clipped.
    """
    scheduler.set_timesteps(num_inference_steps, device=x_T.device)
    noise = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    x = x_T * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        x_t = scheduler.scale_model_input(x, t)
        eps = denoiser(x_t, t)
        if x0_range is not None:
            eps = clip_x0(eps, x_t, alpha_at(scheduler.alphas_cumprod, t), *x0_range)
        x = scheduler.step(eps, t, x, **noise).prev_sample
        if callback is not None:
            callback(i, t, x)
    return x


def seeded_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per image, so image i depends on seeds[i] only, whatever the batch size or device."""
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def initial_noise(
    seeds: Sequence[int], shape: tuple[int, ...], device: torch.device | str
) -> tuple[torch.Tensor, list[torch.Generator]]:
    """x_T for every seed, [len(seeds), *shape], and the generators to continue sampling with. The same seed gives the
    same x_T for every sampler (each scales it by its own ``init_noise_sigma``)."""
    generators = seeded_generators(seeds)
    return randn_tensor((len(seeds), *shape), generator=generators, device=torch.device(device)), generators
