"""Guidance methods as denoiser wrappers, k-diffusion style: each turns a text-conditioned eps-model into a denoiser
``(x_t, t) -> eps`` that :func:`t2i.sampling.sample` runs; the samplers know nothing about guidance.

Every method takes the thesis's guidance scale ``w`` (``eps_u + w (eps_c - eps_u)``: w = 0 unconditional, w = 1
conditional) and its own parameters at the paper's defaults (:data:`METHODS`). Where diffusers 0.42's
``diffusers.guiders`` implements the same formula, its function is used directly (tests/test_guidance.py checks
each wrapper against the guider class to 1e-6):

- ``cfg``: classifier-free guidance, Ho & Salimans 2022, eq. 6 (the thesis's formula).
- ``cfg-rescale``: Lin et al. 2023, "Common diffusion noise schedules and sample steps are flawed", eqs. 15-16:
  rescale the guided prediction to the conditional one's standard deviation, then mix by ``phi`` (0.7 in the paper).
  diffusers' ``rescale_noise_cfg``.
- ``interval``: Kynkaanniemi et al. 2024, "Applying guidance in a limited interval improves sample and distribution
  quality": guide only while the noise level sigma is in ``(sigma_lo, sigma_hi]`` (EDM2-S: (0.28, 5.42]), plain
  conditional elsewhere. The interval is in noise levels, as the paper defines it, not a fraction of steps; for a
  DDPM schedule sigma_t = sqrt((1 - alphabar_t) / alphabar_t), the EDM noise level of the same x_t.
- ``apg``: adaptive projected guidance, Sadat et al. 2024, eq. 12 with momentum (sec. 4.2) and the norm threshold
  ``r``: ``D_c + (w - 1) (P_perp(dD) + eta P_par(dD))``, eta = 0, momentum beta = -0.5. This is diffusers'
  ``normalized_guidance`` with ``use_original_formulation=True`` and scale ``w - 1``; diffusers' default
  (``pred_uncond + w * update``) equals the paper only at eta = 1.
- ``cfg-zero-star``: Fan et al. 2025, "CFG-Zero*": the unconditional prediction scaled by the optimised
  ``s* = <eps_c, eps_u> / ||eps_u||^2`` per sample (diffusers' ``cfg_zero_star_scale``). The paper's zero-init
  (the first steps output zero) is made for flow matching, where a zero velocity is a step that stays put; for
  eps-prediction a zero eps means "x_t is clean data" and would freeze the initial noise into the image, so it is off.
- ``autoguidance``: Karras et al. 2024, "Guiding a diffusion model with a bad version of itself", eq. 1:
  ``D_0 + w (D_1 - D_0)`` with D_1 the model and D_0 a weaker one, both conditional: an earlier checkpoint of the
  same run, or another run (a smaller model on the same data), as the paper recommends. diffusers' ``AutoGuidance``
  instead perturbs layers of the same model, which is not the paper's method, so it is not used here.
- ``dynamic-thresholding``: Saharia et al. 2022 (Imagen), sec. 2.3: CFG, with each step's predicted x0 clipped to
  its ``percentile`` absolute value s (when s > 1) and divided by s. Pixel space only; it is diffusers' scheduler
  option (``thresholding=True``, ``dynamic_thresholding_ratio``), set by :func:`scheduler_options`. diffusers caps s
  at ``sample_max_value`` (default 1.0, which makes it plain clipping); the paper does not, so the cap is infinite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance
from diffusers.guiders.classifier_free_zero_star_guidance import cfg_zero_star_scale
from diffusers.guiders.guider_utils import rescale_noise_cfg

from .errors import ConfigError
from .sampling import Denoiser, EpsModel

# name -> the parameters it takes and their defaults (the papers'); "w" is every method's strength
METHODS: dict[str, dict[str, float]] = {
    "cfg": {},
    "cfg-rescale": {"phi": 0.7},
    "interval": {"sigma_lo": 0.28, "sigma_hi": 5.42},
    "apg": {"eta": 0.0, "momentum": -0.5, "norm_threshold": 15.0},
    "cfg-zero-star": {},
    "autoguidance": {},
    "dynamic-thresholding": {"percentile": 0.995, "max_value": float("inf")},  # the paper caps s at nothing
}


@dataclass
class Context:
    """What some methods need beyond the two predictions: the noise schedule (``interval``) and a weaker model
    (``autoguidance``)."""

    alphas_cumprod: torch.Tensor | None = None
    guide: EpsModel | None = None


def parameters(method: str, given: dict[str, float] | None = None) -> dict[str, float]:
    """The method's parameters: its defaults, updated by ``given``; an unknown method or parameter is an error."""
    if method not in METHODS:
        raise ConfigError(f"unknown guidance method {method!r}; known: {sorted(METHODS)}")
    unknown = set(given or {}) - set(METHODS[method])
    if unknown:
        raise ConfigError(f"guidance method {method!r} takes {sorted(METHODS[method]) or 'no parameters'}, "
                         f"not {sorted(unknown)}")
    return {**METHODS[method], **(given or {})}


def denoiser(method: str, model: EpsModel, cond: torch.Tensor, uncond: torch.Tensor, w: float,
             params: dict[str, float] | None = None, context: Context | None = None) -> Denoiser:
    """The guided denoiser of ``method`` at strength ``w`` (a fresh one per sampling run: APG keeps momentum)."""
    p, context, w = parameters(method, params), context or Context(), float(w)
    if method == "autoguidance":
        if context.guide is None:
            raise ConfigError("autoguidance needs a weaker model: --guide-checkpoint NAME or --guide-run RUN")
        guide = context.guide
        return lambda x, t: (lambda weak: weak + w * (model(x, t, cond) - weak))(guide(x, t, cond))
    combine = _combiner(method, w, p, context)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if w == 0.0 and method in ("cfg", "dynamic-thresholding"):  # the other methods' w = 0 is not unconditional
            return model(x, t, uncond)
        if w == 1.0:  # every method's w = 1 is the conditional prediction
            return model(x, t, cond)
        eps_uncond, eps_cond = model(torch.cat([x, x]), t, torch.cat([uncond, cond])).chunk(2)
        return combine(eps_cond, eps_uncond, t)

    return denoise


def combine(method: str, eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float, t: torch.Tensor | int = 0,
            params: dict[str, float] | None = None, context: Context | None = None) -> torch.Tensor:
    """One step's guided prediction from the two predictions (what :func:`denoiser` does inside; for tests)."""
    return _combiner(method, float(w), parameters(method, params), context or Context())(eps_cond, eps_uncond, t)


def _combiner(method: str, w: float, p: dict[str, float], context: Context
              ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    def cfg(eps_cond, eps_uncond, t):
        return eps_uncond + w * (eps_cond - eps_uncond)

    if method in ("cfg", "dynamic-thresholding"):  # thresholding acts on x0, in the scheduler
        return cfg
    if method == "cfg-rescale":
        return lambda c, u, t: rescale_noise_cfg(cfg(c, u, t), c, p["phi"])
    if method == "cfg-zero-star":
        def zero_star(c, u, t):
            s = cfg_zero_star_scale(c.flatten(1), u.flatten(1)).view(-1, *(1,) * (c.ndim - 1))
            return s * u + w * (c - s * u)
        return zero_star
    if method == "interval":
        if context.alphas_cumprod is None:
            raise ValueError("interval guidance needs the noise schedule (alphas_cumprod)")
        alphas = context.alphas_cumprod

        def interval(c, u, t):
            a = alphas[int(t)].item()
            sigma = ((1 - a) / a) ** 0.5
            return cfg(c, u, t) if p["sigma_lo"] < sigma <= p["sigma_hi"] else c
        return interval
    if method == "apg":
        buffer = MomentumBuffer(p["momentum"]) if p["momentum"] else None
        return lambda c, u, t: normalized_guidance(c, u, w - 1.0, buffer, eta=p["eta"],
                                                   norm_threshold=p["norm_threshold"], use_original_formulation=True)
    raise ConfigError(f"unknown guidance method {method!r}; known: {sorted(METHODS)}")


def scheduler_options(method: str, params: dict[str, float] | None = None) -> dict:
    """Scheduler settings a method needs: dynamic thresholding is diffusers' ``thresholding`` (DDPM, DDIM)."""
    if method != "dynamic-thresholding":
        return {}
    p = parameters(method, params)
    return {"thresholding": True, "dynamic_thresholding_ratio": p["percentile"], "sample_max_value": p["max_value"]}
