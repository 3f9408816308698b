"""Guidance methods as denoiser wrappers, k-diffusion style: each turns a text-conditioned eps-model into a denoiser
``(x_t, t) -> eps`` that :func:`t2i.sampling.sample` runs; the samplers know nothing about guidance.

One formula underlies them all (EDM2's ``ref_Dx.lerp(Dx, guidance)``): ``weak + w (strong - weak)``, where ``strong``
is the conditional prediction and ``weak`` either the unconditional one (classifier-free guidance) or a weaker model's
conditional one (autoguidance). w = 0 is the weak prediction, w = 1 the conditional one, w > 1 extrapolates. Each
method is one :class:`Method` in :data:`METHODS`: how it combines the two predictions, its parameters at its paper's
defaults, and what it needs. Where diffusers 0.42's ``diffusers.guiders`` implements the same formula, its function is
used (tests/test_guidance.py checks each against the guider class). Methods that act on the denoised image D (x0)
convert eps to x0 at the step's noise level and back, around the data's mid-point (:class:`Step`):

- ``cfg``: classifier-free guidance, Ho & Salimans 2022, eq. 6 (the thesis's formula).
- ``cfg-rescale``: Lin et al. 2023, "Common diffusion noise schedules and sample steps are flawed", eqs. 15-16: the
  guided prediction rescaled to the conditional one's standard deviation, mixed by ``phi`` (0.7). The paper matches
  the std of v-predictions, whose scale is the data's; on eps the two stds are nearly equal and the method does
  nothing, so it acts on x0, centred on the data's mid-point (diffusers' ``rescale_noise_cfg`` on those).
- ``interval``: Kynkaanniemi et al. 2024, "Applying guidance in a limited interval improves sample and distribution
  quality": guidance only while the EDM noise level sigma = sqrt((1 - alphabar) / alphabar) is in
  ``(sigma_lo, sigma_hi]``, conditional elsewhere. The paper tunes the interval per model; the defaults are EDM2-S's
  on ImageNet-512 latents, (0.28, 5.42], and `make guidance` tunes its own (t2i.comparison).
- ``apg``: adaptive projected guidance, Sadat et al. 2024, eq. 12 with momentum (sec. 4.2) and the norm threshold
  ``r``, on the denoised image as the paper defines it: ``D_c + (w - 1) (P_perp(dD) + eta P_par(dD))``, eta = 0,
  beta = -0.5, r = 15 on the data scaled to [-1, 1]. This is diffusers' ``normalized_guidance`` with
  ``use_original_formulation=True`` and scale ``w - 1``. ``apg-eps`` is the same update on eps (a named variant:
  not the paper's method).
- ``cfg-zero-star``: Fan et al. 2025, "CFG-Zero*": the unconditional prediction scaled by the optimised
  ``s* = <eps_c, eps_u> / ||eps_u||^2`` per sample (diffusers' ``cfg_zero_star_scale``). The paper's zero-init (the
  first steps output zero) is made for flow matching, where a zero velocity stays put; for eps-prediction a zero eps
  means "x_t is clean data" and would freeze the initial noise into the image, so it is off.
- ``autoguidance``: Karras et al. 2024, "Guiding a diffusion model with a bad version of itself", eq. 1, with a
  weaker model's conditional prediction as ``weak``: an earlier checkpoint of the same run, or another run (a smaller
  model on the same data), as the paper recommends. diffusers' ``AutoGuidance`` perturbs layers of the same model
  instead, which is not the paper's method.
- ``dynamic-thresholding``: Saharia et al. 2022 (Imagen), sec. 2.3: CFG, then each step's x0, mapped to [-1, 1]
  around the data's mid-point, clipped to its ``percentile`` absolute value s (when s > 1) and divided by s (the
  paper caps s at nothing; diffusers' ``sample_max_value`` would). Pixel space only. Imagen's data is [-1, 1]; on
  [0, 1] data, dividing x0 itself by s would pull every pixel to 0 (black), so the mapping is what keeps it Imagen's.
- ``tcfg``: tangential CFG, Kwon et al. 2025 (CVPR), "TCFG: Tangential Damping Classifier-free Guidance": the
  unconditional prediction projected onto the first right singular vector of [eps_c; eps_u] (per image), which damps
  its tangential part (diffusers' ``tangential_classifier_free_guidance.normalized_guidance``; the guider class itself
  fails, diffusers issue #14794).
- ``fdg``: frequency-decoupled guidance, Sadat et al. 2025, "Guidance in the frequency domain enables high-fidelity
  sampling at low CFG scales": the denoised images split into a Laplacian pyramid of ``levels`` (kornia's), each level
  guided at its own strength and the pyramid rebuilt; the high frequencies at w, the lowest level at
  1 + ``low`` (w - 1) (``low`` = 4/9: diffusers' default pair of strengths, 10 and 5). ``parallel`` < 1 damps the
  part of each level's guidance parallel to the conditional level (the paper's optional projection). diffusers'
  guider appends the wrong pyramid level when a level is switched off (issue #14643); here every level is guided.
- ``mambo-g``: magnitude-aware guidance, MAMBO-G (diffusers' ``MagnitudeAwareGuidance``, arXiv 2508.03442): the
  guidance term scaled per image to 1 + (w - 1) exp(-``alpha`` ||eps_c - eps_u|| / ||eps_u||), so steps where guidance
  would move the prediction most are damped. diffusers' ``mambo_guidance`` takes the norm over dims (1, 2, 3), which
  torch refuses for a UNet's 4-D predictions; here the norm is over each image's flattened prediction, its meaning.
- ``pag``, ``seg``, ``swg``: the weak prediction is the same network run perturbed (:mod:`t2i.perturb`):
  perturbed-attention guidance (Ahn et al. 2024), smoothed energy guidance (Hong 2024) and sliding-window guidance
  (Adaloglou et al. 2025), each ``cond_perturbed + w (cond - cond_perturbed)``, unconditional-free as their papers
  define them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance
from diffusers.guiders.classifier_free_zero_star_guidance import cfg_zero_star_scale
from diffusers.guiders.frequency_decoupled_guidance import build_image_from_pyramid, project
from diffusers.guiders.guider_utils import rescale_noise_cfg
from diffusers.guiders.tangential_classifier_free_guidance import normalized_guidance as tangential_guidance
from kornia.geometry.transform import build_laplacian_pyramid

from .errors import ConfigError
from .sampling import Denoiser, EpsModel, alpha_at


@dataclass(frozen=True)
class Step:
    """One sampling step as a method may need it: the model input ``x`` (x_t, variance-preserving), the timestep
    ``t``, alphabar at t, and the data's range, for methods that act on the denoised image x0."""

    x: torch.Tensor
    t: torch.Tensor | float
    alpha: float
    data_range: tuple[float, float] = (-1.0, 1.0)

    @property
    def sigma(self) -> float:
        """The EDM noise level of x_t: sqrt((1 - alphabar) / alphabar)."""
        return math.sqrt((1 - self.alpha) / self.alpha)

    def x0(self, eps: torch.Tensor) -> torch.Tensor:
        """The denoised image D that ``eps`` implies, mapped to [-1, 1] around the data's mid-point."""
        low, high = self.data_range
        x0 = (self.x - math.sqrt(1 - self.alpha) * eps) / math.sqrt(self.alpha)
        return (x0 - (low + high) / 2) / ((high - low) / 2)

    def eps(self, x0: torch.Tensor) -> torch.Tensor:
        """The eps that implies the denoised image ``x0`` (given as :meth:`x0` returns it, in [-1, 1])."""
        low, high = self.data_range
        x0 = x0 * ((high - low) / 2) + (low + high) / 2
        return (self.x - math.sqrt(self.alpha) * x0) / math.sqrt(1 - self.alpha)


Combine = Callable[[torch.Tensor, torch.Tensor, Step], torch.Tensor]  # (strong, weak, step) -> guided eps


@dataclass(frozen=True)
class Method:
    """One guidance method: ``build(w, params)`` makes its combine function for one sampling run (fresh, so state
    such as APG's momentum starts empty), and the flags the pipeline and the comparison read."""

    build: Callable[[float, dict[str, float]], Combine]
    defaults: dict[str, float] = field(default_factory=dict)
    weak: str = "uncond"  # "uncond": the unconditional prediction; "guide": a weaker model's conditional one;
    # "perturbed": the same network's conditional one, run perturbed (t2i.perturb: "pag", "seg" or "swg", ``perturb``)
    perturb: str = ""
    pixel_only: bool = False  # acts on pixel values (needs bounded data: not latents)
    at_one_is_conditional: bool = True  # w = 1 gives exactly the conditional prediction (one shared point)
    active: Callable[[Step, dict[str, float]], bool] | None = None  # where it guides; elsewhere: conditional only
    evaluations: int = 2  # network evaluations per step (strong and weak), below w = 1's single one


def lerp(w: float) -> Combine:
    """EDM2's form of CFG and autoguidance: weak + w (strong - weak)."""
    return lambda strong, weak, step: weak + w * (strong - weak)


def _rescale(w: float, p: dict[str, float]) -> Combine:
    def combine(strong, weak, step):
        x0_strong, x0_weak = step.x0(strong), step.x0(weak)
        return step.eps(rescale_noise_cfg(x0_weak + w * (x0_strong - x0_weak), x0_strong, p["phi"]))

    return combine


def _apg(w: float, p: dict[str, float], on_x0: bool = True) -> Combine:
    buffer = MomentumBuffer(p["momentum"]) if p["momentum"] else None

    def combine(strong, weak, step):
        if not on_x0:
            return normalized_guidance(
                strong,
                weak,
                w - 1.0,
                buffer,
                eta=p["eta"],
                norm_threshold=p["norm_threshold"],
                use_original_formulation=True,
            )
        guided = normalized_guidance(
            step.x0(strong),
            step.x0(weak),
            w - 1.0,
            buffer,
            eta=p["eta"],
            norm_threshold=p["norm_threshold"],
            use_original_formulation=True,
        )
        return step.eps(guided)

    return combine


def _zero_star(w: float, p: dict[str, float]) -> Combine:
    def combine(strong, weak, step):
        s = cfg_zero_star_scale(strong.flatten(1), weak.flatten(1)).view(-1, *(1,) * (strong.ndim - 1))
        return s * weak + w * (strong - s * weak)

    return combine


def threshold(x0: torch.Tensor, percentile: float, max_value: float = math.inf) -> torch.Tensor:
    """Imagen's dynamic thresholding of x0 in [-1, 1] (diffusers' ``_threshold_sample``): per image, s = the
    ``percentile`` quantile of |x0|, at least 1 and at most ``max_value``; x0 clipped to [-s, s] and divided by s."""
    flat = x0.reshape(len(x0), -1).float()
    s = torch.quantile(flat.abs(), percentile, dim=1).clamp(min=1, max=max_value).view(-1, *(1,) * (x0.ndim - 1))
    return (torch.maximum(torch.minimum(x0, s), -s) / s).to(x0.dtype)


def _thresholded(w: float, p: dict[str, float]) -> Combine:
    guided = lerp(w)
    return lambda strong, weak, step: step.eps(
        threshold(step.x0(guided(strong, weak, step)), p["percentile"], p["max_value"])
    )


def _tangential(w: float, p: dict[str, float]) -> Combine:
    return lambda strong, weak, step: tangential_guidance(strong, weak, w)


def _frequency_decoupled(w: float, p: dict[str, float]) -> Combine:
    levels = int(p["levels"])
    strengths = [w] * (levels - 1) + [1 + p["low"] * (w - 1)]  # from the highest frequencies to the lowest

    def combine(strong, weak, step):
        guided = []
        for c, u, s in zip(
            build_laplacian_pyramid(step.x0(strong), levels), build_laplacian_pyramid(step.x0(weak), levels), strengths
        ):
            shift = c - u
            if p["parallel"] != 1.0:
                parallel, orthogonal = project(shift, c)
                shift = p["parallel"] * parallel + orthogonal
            guided.append(u + s * shift)
        return step.eps(build_image_from_pyramid(guided))

    return combine


def _magnitude_aware(w: float, p: dict[str, float]) -> Combine:
    def combine(strong, weak, step):
        diff = strong - weak
        ratio = diff.flatten(1).norm(dim=1) / weak.flatten(1).norm(dim=1)
        scale = 1 + (w - 1) * torch.exp(-p["alpha"] * ratio)
        return weak + scale.view(-1, *(1,) * (strong.ndim - 1)) * diff

    return combine


def _in_interval(step: Step, p: dict[str, float]) -> bool:
    return p["sigma_lo"] < step.sigma <= p["sigma_hi"]


METHODS: dict[str, Method] = {
    "cfg": Method(lambda w, p: lerp(w)),
    "cfg-rescale": Method(_rescale, {"phi": 0.7}),
    "interval": Method(lambda w, p: lerp(w), {"sigma_lo": 0.28, "sigma_hi": 5.42}, active=_in_interval),
    "apg": Method(_apg, {"eta": 0.0, "momentum": -0.5, "norm_threshold": 15.0}),
    "apg-eps": Method(lambda w, p: _apg(w, p, on_x0=False), {"eta": 0.0, "momentum": -0.5, "norm_threshold": 15.0}),
    "cfg-zero-star": Method(_zero_star),
    "autoguidance": Method(lambda w, p: lerp(w), weak="guide"),
    "dynamic-thresholding": Method(
        _thresholded, {"percentile": 0.995, "max_value": math.inf}, pixel_only=True, at_one_is_conditional=False
    ),
    "tcfg": Method(_tangential),
    "fdg": Method(_frequency_decoupled, {"low": 4 / 9, "parallel": 1.0, "levels": 2}),
    "mambo-g": Method(_magnitude_aware, {"alpha": 8.0}),
    "pag": Method(lambda w, p: lerp(w), weak="perturbed", perturb="pag"),
    "seg": Method(lambda w, p: lerp(w), {"sigma": math.inf}, weak="perturbed", perturb="seg"),
    "swg": Method(lambda w, p: lerp(w), {"crop": 0.625, "steps": 2, "mask": 1.0}, weak="perturbed", perturb="swg"),
}


def method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown guidance method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]


def parameters(name: str, given: dict[str, float] | None = None) -> dict[str, float]:
    """The method's parameters: its defaults, updated by ``given``; an unknown method or parameter is an error."""
    defaults = method(name).defaults
    unknown = set(given or {}) - set(defaults)
    if unknown:
        raise ConfigError(
            f"guidance method {name!r} takes {sorted(defaults) or 'no parameters'}, not {sorted(unknown)}"
        )
    return {**defaults, **(given or {})}


@dataclass
class Context:
    """What a sampling run gives every method: the noise schedule (to read alphabar at a step), the data's range,
    and autoguidance's weaker model."""

    alphas_cumprod: torch.Tensor | None = None
    data_range: tuple[float, float] = (-1.0, 1.0)
    guide: EpsModel | None = None
    perturbed: Callable[[str, dict[str, float]], Callable] | None = None  # (kind, params) -> a weak model (t2i.perturb)

    def step(self, x: torch.Tensor, t) -> Step:
        return Step(
            x, t, alpha_at(self.alphas_cumprod, t) if self.alphas_cumprod is not None else float("nan"), self.data_range
        )


def denoiser(
    name: str,
    model: EpsModel,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    w: float,
    params: dict[str, float] | None = None,
    context: Context | None = None,
) -> Denoiser:
    """The guided denoiser of method ``name`` at strength ``w`` (a fresh one per sampling run)."""
    m, context, w = method(name), context or Context(), float(w)
    p = parameters(name, params)
    if m.weak == "guide" and context.guide is None:
        raise ConfigError("autoguidance needs a weaker model: --guide-checkpoint NAME or --guide-run RUN")
    if m.weak == "perturbed" and context.perturbed is None:
        raise ConfigError(f"{name} runs the network perturbed; this sampling run gives no network to perturb")
    perturbed = context.perturbed(m.perturb, p) if m.weak == "perturbed" else None
    combine = m.build(w, p)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        step = context.step(x, t)
        if m.at_one_is_conditional and w == 1.0 or (m.active is not None and not m.active(step, p)):
            return model(x, t, cond)
        if m.weak == "guide":
            return combine(model(x, t, cond), context.guide(x, t, cond), step)
        if perturbed is not None:  # where the weak model is not defined (M-SWG's mask is 0), the conditional one
            strong = model(x, t, cond)
            guided, where = combine(strong, perturbed(x, t, cond), step), perturbed.mask(x)
            return guided if where is None else strong + where * (guided - strong)
        if w == 0.0 and name == "cfg":
            return model(x, t, uncond)
        weak, strong = model(torch.cat([x, x]), t, torch.cat([uncond, cond])).chunk(2)
        return combine(strong, weak, step)

    return denoise


def combine(
    name: str,
    eps_cond: torch.Tensor,
    eps_uncond: torch.Tensor,
    w: float,
    step: Step | None = None,
    params: dict[str, float] | None = None,
) -> torch.Tensor:
    """One step's guided prediction from the two predictions (what :func:`denoiser` does inside; for tests)."""
    step = step or Step(torch.zeros_like(eps_cond), 0, 0.5)
    return method(name).build(float(w), parameters(name, params))(eps_cond, eps_uncond, step)
