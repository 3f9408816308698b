"""t2i.guidance: each method equals diffusers' guider where diffusers implements the same formula (to 1e-6), follows
its paper where it departs, and every method samples through the same pipeline and command line."""

from __future__ import annotations

import pytest
import torch
from diffusers.guiders import (AdaptiveProjectedGuidance, ClassifierFreeGuidance, ClassifierFreeZeroStarGuidance)

from t2i import guidance, paths
from t2i.errors import ConfigError
from t2i.pipeline import TextToImage


@pytest.fixture
def predictions():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)


def diffusers_pred(guider, cond, uncond, step=0, steps=10):
    guider.set_state(step=step, num_inference_steps=steps, timestep=torch.tensor(500))
    if step == 0 and hasattr(guider, "prepare_inputs"):
        try:
            guider.prepare_inputs({})  # APG creates its momentum buffer here
        except Exception:  # noqa: BLE001 - guiders that need real inputs: nothing to prepare for forward
            pass
    return guider.forward(cond, uncond).pred


@pytest.mark.parametrize("w", [0.0, 0.5, 2.0, 7.5])
def test_cfg_and_cfg_rescale_equal_diffusers_classifier_free_guidance(predictions, w):
    cond, uncond = predictions
    ours = guidance.combine("cfg", cond, uncond, w)
    torch.testing.assert_close(ours, diffusers_pred(ClassifierFreeGuidance(guidance_scale=w), cond, uncond),
                               atol=1e-6, rtol=0)
    ours = guidance.combine("cfg-rescale", cond, uncond, w, params={"phi": 0.7})
    theirs = diffusers_pred(ClassifierFreeGuidance(guidance_scale=w, guidance_rescale=0.7), cond, uncond)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("w", [0.5, 2.0, 5.0])
def test_cfg_zero_star_equals_diffusers_without_the_flow_matching_zero_init(predictions, w):
    cond, uncond = predictions
    theirs = diffusers_pred(ClassifierFreeZeroStarGuidance(guidance_scale=w, zero_init_steps=0), cond, uncond)
    torch.testing.assert_close(guidance.combine("cfg-zero-star", cond, uncond, w), theirs, atol=1e-6, rtol=0)


def test_apg_is_the_papers_formulation_diffusers_normalized_guidance_with_momentum_over_steps(predictions):
    """Sadat et al.: D_c + (w - 1)(P_perp + eta P_par); diffusers' use_original_formulation at scale w - 1."""
    w, params = 4.0, {"eta": 0.0, "momentum": -0.5, "norm_threshold": 15.0}
    ours = guidance._combiner("apg", w, guidance.parameters("apg", params), guidance.Context())
    guider = AdaptiveProjectedGuidance(guidance_scale=w - 1, adaptive_projected_guidance_momentum=-0.5,
                                       adaptive_projected_guidance_rescale=15.0, eta=0.0,
                                       use_original_formulation=True)
    g = torch.Generator().manual_seed(1)
    for step in range(3):  # momentum carries over steps
        cond, uncond = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
        torch.testing.assert_close(ours(cond, uncond, 0), diffusers_pred(guider, cond, uncond, step), atol=1e-6,
                                   rtol=0)
    cond, uncond = predictions  # eta = 1, no momentum, no threshold: exactly CFG, as the paper says
    plain = guidance.combine("apg", cond, uncond, w, params={"eta": 1.0, "momentum": 0.0, "norm_threshold": 0.0})
    torch.testing.assert_close(plain, guidance.combine("cfg", cond, uncond, w), atol=1e-5, rtol=0)


def test_interval_guides_only_inside_its_noise_levels_and_autoguidance_extrapolates_from_the_weak_model(predictions):
    cond, uncond = predictions
    alphas = torch.linspace(0.999, 0.001, 1000)  # sigma from 0.03 to 31.6
    context = guidance.Context(alphas_cumprod=alphas)
    sigma = ((1 - alphas) / alphas).sqrt()
    inside, outside = int((sigma > 1.0).nonzero()[0]), int((sigma > 10.0).nonzero()[0])
    torch.testing.assert_close(guidance.combine("interval", cond, uncond, 3.0, inside, context=context),
                               guidance.combine("cfg", cond, uncond, 3.0))
    assert torch.equal(guidance.combine("interval", cond, uncond, 3.0, outside, context=context), cond)
    weak, strong = (lambda x, t, e: x * 0.5), (lambda x, t, e: x * 2.0)
    x = torch.ones(1, 3, 8, 8)
    auto = guidance.denoiser("autoguidance", strong, cond[:1], uncond[:1], 3.0, context=guidance.Context(guide=weak))
    torch.testing.assert_close(auto(x, torch.tensor(5)), 0.5 * x + 3.0 * (2.0 * x - 0.5 * x))


def test_unknown_methods_and_parameters_are_one_line_errors():
    with pytest.raises(ConfigError, match="known"):
        guidance.parameters("pag")
    with pytest.raises(ConfigError, match="takes \\['phi'\\]"):
        guidance.parameters("cfg-rescale", {"eta": 1})
    with pytest.raises(ConfigError, match="weaker model"):
        guidance.denoiser("autoguidance", lambda x, t, e: x, None, None, 2.0)


def test_every_method_samples_through_the_pipeline_and_plain_cfg_is_what_it_was(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=2), paths.run_dir("mnist", "guided"))
    pipe = TextToImage.from_run(run)
    prompts = ["A handwritten digit 3"] * 2
    plain = pipe.images(prompts, 3.0)
    assert torch.equal(pipe.images(prompts, 3.0, method="cfg"), plain)  # the default is the thesis's CFG
    weak = TextToImage.from_run(run, checkpoint="epoch-0001").unet
    for method in guidance.METHODS:
        images = pipe.images(prompts, 3.0, method=method, guide=weak if method == "autoguidance" else None)
        assert images.shape == plain.shape and torch.isfinite(images).all(), method
        if method not in ("cfg", "interval"):
            assert not torch.equal(images, plain), method  # the method changed the sampling
