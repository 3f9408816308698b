"""Conformance of the newer guidance methods with diffusers' guiders (issue 41): each two-pass method equals the guider
on random tensors where the guider works; where diffusers is wrong, a test shows the upstream bug (by issue number)
and that t2i follows the paper instead. The in-network methods (t2i.perturb) are checked against diffusers' PAG
processor, diffusers' SEG blur and the SWG authors' ``swg_guidance``."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers.guiders import (
    FrequencyDecoupledGuidance,
    MagnitudeAwareGuidance,
    SmoothedEnergyGuidance,
    TangentialClassifierFreeGuidance,
)
from diffusers.guiders.magnitude_aware_guidance import mambo_guidance
from diffusers.hooks import HookRegistry
from diffusers.hooks.smoothed_energy_guidance_utils import _gaussian_blur_2d
from diffusers.models.attention_processor import Attention, PAGIdentitySelfAttnProcessor2_0

from t2i import guidance, perturb
from t2i.errors import ConfigError

from .test_guidance import diffusers_pred


@pytest.fixture
def predictions():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 16, 16, generator=g), torch.randn(4, 3, 16, 16, generator=g)


@pytest.fixture
def step():
    """A step at alphabar 0.3 on [0, 1] data, with a random x_t."""
    return guidance.Step(torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(5)), 600, 0.3, (0.0, 1.0))


@pytest.mark.parametrize("w", [0.5, 2.0, 7.5])
def test_tcfg_equals_diffusers_tangential_guidance(predictions, w):
    cond, uncond = predictions
    ours = guidance.combine("tcfg", cond, uncond, w)
    torch.testing.assert_close(
        ours, diffusers_pred(TangentialClassifierFreeGuidance(guidance_scale=w), cond, uncond), atol=1e-5, rtol=0
    )
    assert not torch.allclose(ours, guidance.combine("cfg", cond, uncond, w), atol=1e-3)


def test_diffusers_tcfg_guider_cannot_say_whether_it_is_conditional_issue_14794():
    """Upstream bug: ``is_conditional`` reads ``_num_outputs_prepared``, which nothing sets, so a pipeline asking it
    stops with AttributeError. t2i uses the formula function, which is right (the test above)."""
    guider = TangentialClassifierFreeGuidance(guidance_scale=3.0)
    assert not hasattr(guider, "_num_outputs_prepared")
    with pytest.raises(AttributeError, match="is_conditional"):
        guider.is_conditional


@pytest.mark.parametrize("w", [1.5, 4.0])
@pytest.mark.parametrize("parallel", [1.0, 0.5])
def test_fdg_equals_diffusers_on_the_denoised_images(predictions, step, w, parallel):
    """High frequencies at w, the lowest level at 1 + low (w - 1), on x0 (the denoiser's output, as the paper)."""
    cond, uncond = predictions
    params = {"low": 4 / 9, "parallel": parallel, "levels": 2}
    ours = guidance.combine("fdg", cond, uncond, w, step, params=params)
    guider = FrequencyDecoupledGuidance(
        guidance_scales=[w, 1 + 4 / 9 * (w - 1)], parallel_weights=parallel, guidance_rescale=0.0
    )
    theirs = diffusers_pred(guider, step.x0(cond), step.x0(uncond))
    torch.testing.assert_close(step.x0(ours), theirs, atol=1e-5, rtol=0)
    assert not torch.allclose(ours, guidance.combine("cfg", cond, uncond, w), atol=1e-3)


def test_diffusers_fdg_breaks_when_a_level_is_switched_off_issue_14643(predictions):
    """Upstream bug (closed without a fix): a level whose strength is 1 is "disabled" and appends ``pred_cond_freq``,
    which is unset for the first level (NameError) and the previous level's tensor for a later one (a level of the
    wrong size). t2i guides every level at its own strength, so a strength of 1 is simply the conditional level."""
    cond, uncond = predictions
    with pytest.raises(NameError):
        diffusers_pred(FrequencyDecoupledGuidance(guidance_scales=[1.0, 5.0]), cond, uncond)
    with pytest.raises(RuntimeError):
        diffusers_pred(FrequencyDecoupledGuidance(guidance_scales=[5.0, 1.0]), cond, uncond)
    step = guidance.Step(torch.zeros_like(cond), 0, 0.5)
    fdg = guidance.method("fdg").build(1 + 9 / 4 * 0.0, guidance.parameters("fdg"))  # w = 1: every level conditional
    torch.testing.assert_close(fdg(cond, uncond, step), cond, atol=1e-5, rtol=0)


@pytest.mark.parametrize("w", [2.0, 10.0])
def test_mambo_g_equals_diffusers_where_diffusers_runs_and_its_own_formula_on_images(w):
    """diffusers' ``mambo_guidance`` takes torch.norm over dims (1, 2): right for [B, tokens, C] predictions. On a
    UNet's [B, C, H, W] it asks for a norm over three dims, which torch refuses (a norm of each image is meant)."""
    g = torch.Generator().manual_seed(3)
    cond, uncond = torch.randn(4, 64, 3, generator=g), torch.randn(4, 64, 3, generator=g)
    torch.testing.assert_close(
        guidance.combine("mambo-g", cond, uncond, w), mambo_guidance(cond, uncond, w, 8.0), atol=1e-6, rtol=0
    )
    images = cond.view(4, 3, 8, 8), uncond.view(4, 3, 8, 8)
    with pytest.raises(RuntimeError, match="dim"):
        diffusers_pred(MagnitudeAwareGuidance(guidance_scale=w), *images)
    ours = guidance.combine("mambo-g", *images, w)
    diff = images[0] - images[1]
    ratio = diff.flatten(1).norm(dim=1) / images[1].flatten(1).norm(dim=1)
    expected = images[1] + (1 + (w - 1) * torch.exp(-8.0 * ratio)).view(-1, 1, 1, 1) * diff
    torch.testing.assert_close(ours, expected)


def attention(dim: int = 16, heads: int = 2) -> Attention:
    torch.manual_seed(0)
    return Attention(dim, heads=heads, dim_head=dim // heads).eval()


def test_pag_is_diffusers_identity_self_attention_on_its_perturbed_half():
    attn, h = attention(), torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = PAGIdentitySelfAttnProcessor2_0()(attn, torch.cat([h, h])).chunk(2)[1]
        torch.testing.assert_close(perturb.IdentityAttention()(attn, h), theirs)


@pytest.mark.parametrize("sigma", [0.8, 1.0, 1.2])
def test_seg_blurs_queries_as_diffusers_blur_does_and_infinity_is_their_mean(sigma):
    q = torch.randn(2, 64, 5, generator=torch.Generator().manual_seed(2))  # an 8 x 8 grid of tokens
    size = math.ceil(6 * sigma) + 1 - math.ceil(6 * sigma) % 2  # diffusers' kernel size for sigma
    # diffusers' branch that blurs runs when sigma is above its "infinite" threshold (see the next test)
    torch.testing.assert_close(
        perturb.blur_tokens(q, sigma), _gaussian_blur_2d(q.clone(), size, sigma, 0.0), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(perturb.blur_tokens(q, math.inf), q.mean(dim=1, keepdim=True).expand_as(q))


def test_diffusers_seg_swaps_its_blur_branches_and_never_switches_its_hooks_on():
    """Two upstream bugs. ``_gaussian_blur_2d`` makes every query the mean when sigma is *below* its infinity
    threshold and blurs with a finite kernel above it (the reverse of its docstring and of the paper's sigma -> inf
    limit); and ``prepare_models`` switches the hooks on only once ``_count_prepared`` exceeds 1, which it never
    increments, so diffusers' SEG samples as plain CFG. t2i's SEG blurs at finite sigma and takes the mean at inf."""
    q = torch.randn(1, 64, 4, generator=torch.Generator().manual_seed(4))
    mean = q.mean(dim=1, keepdim=True).expand_as(q)
    torch.testing.assert_close(_gaussian_blur_2d(q.clone(), 7, 1.0, 9999.0), mean)  # finite sigma: the mean
    assert not torch.allclose(_gaussian_blur_2d(q.clone(), 7, 1e7, 9999.0), mean, atol=1e-3)  # "infinite": a blur
    guider = SmoothedEnergyGuidance(guidance_scale=5.0, seg_guidance_scale=3.0, seg_guidance_layers=[0])
    guider.set_state(step=0, num_inference_steps=10, timestep=torch.tensor(500))
    model = torch.nn.Linear(2, 2)
    for _ in range(3):
        guider.prepare_models(model)
    assert guider._count_prepared == 0 and not HookRegistry.check_if_exists_or_initialize(model).hooks


def authors_swg(x, model, crop_size, swg_steps):
    """The SWG authors' ``swg_guidance`` (HHU-MMBS/swg_bmvc2025_official, edm2/sample_edm2.py), its loop as written."""
    img_size = x.shape[-1]
    y_neg, w = torch.zeros_like(x), torch.zeros_like(x)
    stride = (img_size - crop_size) // (swg_steps - 1) if swg_steps > 1 else 0
    for i in range(swg_steps):
        for j in range(swg_steps):
            le, re, te, be = stride * i, stride * i + crop_size, stride * j, stride * j + crop_size
            y_crop = model(x[:, :, te:be, le:re])
            y_neg[:, :, te:be, le:re] += y_crop
            w[:, :, te:be, le:re] += torch.ones_like(y_crop)
    return y_neg / w, w


def test_swg_windows_are_the_authors_crops_averaged_and_m_swg_masks_where_none_overlap():
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    net = torch.nn.Conv2d(3, 3, 5, padding=2)  # a crop-size-agnostic network whose output depends on the crop

    def model(crops, t, emb):
        assert emb.shape[0] == crops.shape[0]  # every crop carries its image's text
        return net(crops)

    windows = perturb.Windows(model, multiple=8, crop=0.625, steps=2, mask=True)  # 40 px crops of 64: the paper's
    with torch.no_grad():
        ours = windows(x, torch.tensor(500), torch.zeros(2, 7, 4))
        theirs, count = authors_swg(x, net, 40, 2)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(windows.mask(x), (count[:1, :1] > 1).float())
    assert windows.layout(16) == (8, [0, 4, 8])  # 0.625 x 16 rounds to 8: two crops would not overlap, so three
    with pytest.raises(ConfigError, match="downsampling factor"):
        perturb.Windows(model, multiple=16, crop=0.625, steps=2, mask=True).layout(16)


def test_the_in_network_weak_models_perturb_the_unet_and_restore_it(smoke_cfg):
    """PAG and SEG change the mid block's self-attention for the weak call only; SWG counts each crop."""
    from t2i.models import build_unet
    from t2i.sampling import Evaluations, unet_eps

    unet = build_unet(smoke_cfg).eval()
    x, t = torch.randn(2, *smoke_cfg.model_shape), torch.tensor(500)
    emb = torch.randn(2, 4, smoke_cfg.cross_attention_dim)
    with torch.no_grad():
        plain = unet_eps(unet)(x, t, emb)
        for kind, params in (("pag", {}), ("seg", {"sigma": math.inf}), ("swg", guidance.parameters("swg"))):
            counted = Evaluations()
            weak = perturb.weak_model(unet, kind, {**guidance.parameters(kind), **params}, counted.wrap)
            assert not torch.allclose(weak(x, t, emb), plain, atol=1e-6), kind
            torch.testing.assert_close(unet_eps(unet)(x, t, emb), plain, atol=0, rtol=0)  # restored
            side, offsets = weak.layout(x.shape[-1]) if kind == "swg" else (None, [0])
            assert counted.images == 2 * len(offsets) ** 2, kind


@pytest.mark.parametrize("experiment", ["mnist", "cifar10", "wikiart", "celeba"])
def test_every_experiment_gets_each_method_that_applies_and_its_unet_runs_the_in_network_ones(experiment):
    """Applicability is declared per method (``pixel_only``): a latent run (CelebA) gets every method but the pixel-only
    ones, a pixel run gets all; and each in-network weak model runs on that experiment's own UNet (its smoke size),
    channels and all, giving another prediction than the plain network."""
    from t2i import comparison, configs
    from t2i.models import build_unet
    from t2i.sampling import unet_eps

    cfg = configs.get(experiment, "smoke", text_encoder="unused", cross_attention_dim=8)
    latent = cfg.vae is not None

    class Pipe:
        codec = object() if latent else None

    offered = {v.method for v in comparison.variants(Pipe(), None, guide=None, interval=(0.1, 5.0))}
    applies = {name for name, m in guidance.METHODS.items() if m.weak != "guide" and not (m.pixel_only and latent)}
    assert offered == applies and {"tcfg", "fdg", "mambo-g", "pag", "seg", "swg"} <= offered
    assert ("dynamic-thresholding" in offered) == (not latent)

    if latent:  # the smoke latents are 8 x 8, so the mid block's self-attention sees one token: refused, not a no-op
        tiny = build_unet(cfg).eval()
        x = torch.randn(1, *cfg.model_shape)
        with torch.no_grad(), pytest.raises(ConfigError, match="one token"):
            perturb.weak_model(tiny, "pag", {}, lambda model: model)(x, torch.tensor(500), torch.randn(1, 3, 8))
        cfg = cfg.replace(resolution=2 * cfg.resolution)
    unet = build_unet(cfg).eval()
    x, t = torch.randn(1, *cfg.model_shape, generator=torch.Generator().manual_seed(0)), torch.tensor(500)
    emb = torch.randn(1, 3, 8)
    with torch.no_grad():
        plain = unet_eps(unet)(x, t, emb)
        for kind in ("pag", "seg", "swg"):
            weak = perturb.weak_model(unet, kind, guidance.parameters(kind), lambda model: model)(x, t, emb)
            assert weak.shape == plain.shape and not torch.allclose(weak, plain, atol=1e-6), (experiment, kind)
