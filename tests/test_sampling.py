import pytest
import torch

from t2i.models import build_unet
from t2i.pipeline import TextToImage
from t2i.guidance import denoiser
from t2i.sampling import make_scheduler
from t2i.text import TextEncoder


class FakeEps:
    """A deterministic stand-in for the UNet: the prediction depends on x, t and the embedding, and every call
    is recorded so tests can see how many forwards guidance costs."""

    def __init__(self):
        self.batch_sizes = []

    def __call__(self, x, t, emb):
        self.batch_sizes.append(x.shape[0])
        return torch.tanh(x * emb.mean(dim=(1, 2))[:, None, None, None] + 0.001 * t)


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 8, 8, generator=g)
    cond = torch.randn(4, 3, 5, generator=g)
    uncond = torch.randn(1, 3, 5, generator=g).expand(4, 3, 5)
    return x, torch.tensor(500), cond, uncond


def test_guidance_scale_zero_equals_unconditional(inputs):
    x, t, cond, uncond = inputs
    model = FakeEps()
    assert torch.equal(denoiser("cfg", model, cond, uncond, 0.0)(x, t), model(x, t, uncond))


def test_guidance_scale_one_equals_conditional(inputs):
    x, t, cond, uncond = inputs
    model = FakeEps()
    assert torch.equal(denoiser("cfg", model, cond, uncond, 1.0)(x, t), model(x, t, cond))


@pytest.mark.parametrize("w", [0.5, 3.0, 7.5])
def test_guidance_follows_the_formula_in_one_batched_forward(inputs, w):
    x, t, cond, uncond = inputs
    model = FakeEps()
    guided = denoiser("cfg", model, cond, uncond, w)(x, t)
    assert model.batch_sizes == [8]  # cond and uncond together
    eps_uncond, eps_cond = model(x, t, uncond), model(x, t, cond)
    assert torch.allclose(guided, eps_uncond + w * (eps_cond - eps_uncond), atol=1e-6)


def test_samplers_by_name(smoke_cfg):
    names = {name: type(make_scheduler(name, smoke_cfg)).__name__ for name in ("ddpm", "ddim", "dpmsolver++")}
    assert names == {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "dpmsolver++": "DPMSolverMultistepScheduler"}
    assert make_scheduler("dpmsolver++", smoke_cfg).config.algorithm_type == "dpmsolver++"
    with pytest.raises(ValueError, match="unknown sampler"):
        make_scheduler("euler", smoke_cfg)


@pytest.fixture
def tiny_pipe(smoke_cfg):
    torch.manual_seed(0)
    return TextToImage(smoke_cfg, build_unet(smoke_cfg), TextEncoder.from_pretrained(smoke_cfg.text_encoder, 8),
                       device="cpu")


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmsolver++"])
def test_same_seed_gives_the_same_image_whatever_the_batch_size(tiny_pipe, sampler):
    prompts = [f"A handwritten digit {d}" for d in range(5)]
    together = tiny_pipe.images(prompts, 3.0, seed=7, sampler=sampler, batch_size=5)
    in_pairs = tiny_pipe.images(prompts, 3.0, seed=7, sampler=sampler, batch_size=2)
    alone = tiny_pipe.images(prompts[3:4], 3.0, seed=10, sampler=sampler)  # image 3 of the first call uses seed 7+3
    assert torch.allclose(together, in_pairs, atol=1e-5)
    assert torch.allclose(together[3:4], alone, atol=1e-5)
    other_seed = tiny_pipe.images(prompts, 3.0, seed=8, sampler=sampler, batch_size=5)
    assert not torch.allclose(together, other_seed, atol=1e-3)


def test_images_are_in_unit_range_with_the_configured_shape(tiny_pipe, smoke_cfg):
    images = tiny_pipe.images(["A handwritten digit 1", ""], 5.0, seed=0)
    assert images.shape == (2, 1, smoke_cfg.resolution, smoke_cfg.resolution)
    assert images.min() >= 0 and images.max() <= 1


def test_text_width_mismatch_is_a_clear_error(smoke_cfg):
    wrong = smoke_cfg.replace(cross_attention_dim=64)
    with pytest.raises(ValueError, match="cross_attention_dim=64.*hidden size 32"):
        TextToImage(wrong, build_unet(wrong), TextEncoder.from_pretrained(smoke_cfg.text_encoder, 8), device="cpu")
