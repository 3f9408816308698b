import pytest
import torch

from t2i.guidance import denoiser
from t2i.sampling import make_scheduler


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
