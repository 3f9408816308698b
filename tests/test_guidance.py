"""t2i.guidance: each method equals diffusers' guider where diffusers implements the same formula (to 1e-6), follows
its paper where it departs, and every method samples through the same pipeline and command line."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.guiders import AdaptiveProjectedGuidance, ClassifierFreeGuidance, ClassifierFreeZeroStarGuidance

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


@pytest.fixture
def step():
    """A step at alphabar 0.3 on [0, 1] data, with a random x_t."""
    return guidance.Step(torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(5)), 600, 0.3, (0.0, 1.0))


def test_a_step_converts_eps_to_the_centred_denoised_image_and_back(step, predictions):
    eps = predictions[0]
    x0 = (step.x - 0.7**0.5 * eps) / 0.3**0.5  # alphabar 0.3
    torch.testing.assert_close(step.x0(eps), (x0 - 0.5) / 0.5)  # [0, 1] data, centred on 0.5, scaled to [-1, 1]
    torch.testing.assert_close(step.eps(step.x0(eps)), eps, atol=1e-5, rtol=0)
    assert step.sigma == pytest.approx((0.7 / 0.3) ** 0.5)


@pytest.mark.parametrize("w", [0.0, 0.5, 2.0, 7.5])
def test_cfg_equals_diffusers_classifier_free_guidance(predictions, w):
    cond, uncond = predictions
    ours = guidance.combine("cfg", cond, uncond, w)
    torch.testing.assert_close(
        ours, diffusers_pred(ClassifierFreeGuidance(guidance_scale=w), cond, uncond), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("w", [0.5, 2.0, 7.5])
def test_cfg_rescale_is_diffusers_rescale_on_the_centred_denoised_image(predictions, step, w):
    """Lin et al. match stds of v (the data's scale); on eps they are nearly equal, so the rescale acts on x0."""
    cond, uncond = predictions
    ours = guidance.combine("cfg-rescale", cond, uncond, w, step, params={"phi": 0.7})
    theirs = diffusers_pred(
        ClassifierFreeGuidance(guidance_scale=w, guidance_rescale=0.7), step.x0(cond), step.x0(uncond)
    )
    torch.testing.assert_close(step.x0(ours), theirs, atol=1e-5, rtol=0)
    assert not torch.allclose(ours, guidance.combine("cfg", cond, uncond, w), atol=1e-3)


@pytest.mark.parametrize("w", [0.5, 2.0, 5.0])
def test_cfg_zero_star_equals_diffusers_without_the_flow_matching_zero_init(predictions, w):
    cond, uncond = predictions
    theirs = diffusers_pred(ClassifierFreeZeroStarGuidance(guidance_scale=w, zero_init_steps=0), cond, uncond)
    torch.testing.assert_close(guidance.combine("cfg-zero-star", cond, uncond, w), theirs, atol=1e-6, rtol=0)


def apg_from_the_paper(d_cond, d_uncond, w, eta, r, running):
    """Sadat et al. 2024, Algorithm 1 with momentum (sec. 4.2), written from the paper: on the denoised images D."""
    diff = d_cond - d_uncond
    running = diff + running["beta"] * running["average"]
    diff = running
    norm = diff.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    diff = diff * torch.clamp(r / norm, max=1.0) if r > 0 else diff
    unit = d_cond.flatten(1) / d_cond.flatten(1).norm(dim=1, keepdim=True)
    parallel = (diff.flatten(1) * unit).sum(1, keepdim=True) * unit
    orthogonal = diff.flatten(1) - parallel
    return d_cond + (w - 1) * (orthogonal + eta * parallel).view_as(d_cond), running


def test_apg_acts_on_the_denoised_image_as_the_paper_writes_it(step):
    w, params = 4.0, {"eta": 0.0, "momentum": -0.5, "norm_threshold": 15.0}
    ours = guidance.method("apg").build(w, guidance.parameters("apg", params))
    running = {"beta": -0.5, "average": torch.zeros(4, 3, 8, 8)}
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # momentum carries over steps
        cond, uncond = torch.randn(4, 3, 8, 8, generator=g) * 3, torch.randn(4, 3, 8, 8, generator=g) * 3
        expected, running["average"] = apg_from_the_paper(step.x0(cond), step.x0(uncond), w, 0.0, 15.0, running)
        torch.testing.assert_close(step.x0(ours(cond, uncond, step)), expected, atol=1e-5, rtol=0)
    cond, uncond = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    plain = guidance.combine("apg", cond, uncond, w, step, params={"eta": 1.0, "momentum": 0.0, "norm_threshold": 0.0})
    torch.testing.assert_close(plain, guidance.combine("cfg", cond, uncond, w, step), atol=1e-5, rtol=0)  # = CFG


def test_apg_eps_is_diffusers_normalized_guidance_on_eps_a_named_variant(predictions):
    w = 4.0
    ours = guidance.method("apg-eps").build(w, guidance.parameters("apg-eps"))
    guider = AdaptiveProjectedGuidance(
        guidance_scale=w - 1,
        adaptive_projected_guidance_momentum=-0.5,
        adaptive_projected_guidance_rescale=15.0,
        eta=0.0,
        use_original_formulation=True,
    )
    g = torch.Generator().manual_seed(1)
    for k in range(3):
        cond, uncond = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
        torch.testing.assert_close(ours(cond, uncond, None), diffusers_pred(guider, cond, uncond, k), atol=1e-6, rtol=0)


def test_thresholding_is_imagens_on_minus_one_to_one_data_and_keeps_a_unit_images_mid_grey():
    x0 = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 1.5
    scheduler = DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=float("inf"))
    torch.testing.assert_close(guidance.threshold(x0, 0.9), scheduler._threshold_sample(x0))
    step = guidance.Step(torch.randn(1, 1, 4, 4), 500, 0.5, (0.0, 1.0))
    raw = torch.full((1, 1, 4, 4), 0.5)  # an overshooting prediction of [0, 1] data: mid-grey, and far too bright
    raw[..., :2, :] = 3.0
    eps = step.eps((raw - 0.5) / 0.5)  # (step.x0 and step.eps speak the centred scale)
    out = step.x0(guidance.combine("dynamic-thresholding", eps, eps, 3.0, step)) * 0.5 + 0.5
    torch.testing.assert_close(out[..., 2:, :], torch.full((1, 1, 2, 4), 0.5))  # mid-grey stays, not pulled to black
    torch.testing.assert_close(out[..., :2, :], torch.ones(1, 1, 2, 4))  # the overshoot is brought to white
    assert (raw / 3.0)[..., 2, 0] < 0.2  # (what dividing the [0, 1] pixels themselves by s would have done)


def test_interval_guides_only_inside_its_noise_levels_and_autoguidance_extrapolates_from_the_weak_model(predictions):
    cond, uncond = predictions
    alphas = torch.linspace(0.999, 0.001, 1000)  # sigma from 0.03 to 31.6
    context = guidance.Context(alphas_cumprod=alphas)
    sigma = ((1 - alphas) / alphas).sqrt()
    inside, outside = int((sigma > 1.0).nonzero()[0]), int((sigma > 10.0).nonzero()[0])
    calls = []
    model = lambda x, t, e: calls.append(len(x)) or (cond if len(x) == len(cond) else torch.cat([uncond, cond]))  # noqa
    guided = guidance.denoiser("interval", model, cond, uncond, 3.0, context=context)
    torch.testing.assert_close(
        guided(torch.zeros_like(cond), torch.tensor(inside)), guidance.combine("cfg", cond, uncond, 3.0)
    )
    assert torch.equal(guided(torch.zeros_like(cond), torch.tensor(outside)), cond)
    assert calls == [2 * len(cond), len(cond)]  # outside the interval: one evaluation, the conditional one
    weak, strong = (lambda x, t, e: x * 0.5), (lambda x, t, e: x * 2.0)
    x = torch.ones(1, 3, 8, 8)
    auto = guidance.denoiser("autoguidance", strong, cond[:1], uncond[:1], 3.0, context=guidance.Context(guide=weak))
    torch.testing.assert_close(auto(x, torch.tensor(5)), 0.5 * x + 3.0 * (2.0 * x - 0.5 * x))


def test_alphabar_between_timesteps_follows_log_sigma():
    alphas = torch.tensor([0.9, 0.5, 0.1])
    assert guidance.alpha_at(alphas, 1) == pytest.approx(0.5)
    halfway = guidance.alpha_at(alphas, 0.5)
    sigma = lambda a: ((1 - a) / a) ** 0.5  # noqa: E731
    assert sigma(halfway) == pytest.approx((sigma(0.9) * sigma(0.5)) ** 0.5)


def test_unknown_methods_and_parameters_are_one_line_errors():
    with pytest.raises(ConfigError, match="known"):
        guidance.parameters("cfg++")
    with pytest.raises(ConfigError, match="takes \\['phi'\\]"):
        guidance.parameters("cfg-rescale", {"eta": 1})
    with pytest.raises(ConfigError, match="weaker model"):
        guidance.denoiser("autoguidance", lambda x, t, e: x, None, None, 2.0)
    with pytest.raises(ConfigError, match="no network to perturb"):
        guidance.denoiser("pag", lambda x, t, e: x, None, None, 2.0)


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


@pytest.mark.parametrize("name", sorted(guidance.METHODS))
def test_every_methods_claim_about_w_one_holds_numerically(name, predictions, step):
    """A method that says w = 1 is the conditional model shares CFG's w = 1 row (the pipeline then skips the weak
    prediction): its combine step must give the conditional prediction at w = 1; one that says otherwise must not."""
    m = guidance.METHODS[name]
    strong, weak = predictions
    combined = m.build(1.0, guidance.parameters(name))(strong, weak, step)
    assert torch.allclose(combined, strong, atol=1e-5) == m.at_one_is_conditional, name
