import pytest
import torch

from t2i.configs import SAMPLERS, SPACINGS
from t2i import configs
from t2i.experiments import NAMES
from t2i.guidance import denoiser
from t2i.models import build_unet
from t2i.pipeline import TextToImage
from t2i.sampling import STOCHASTIC, Evaluations, Sampler, alpha_at, initial_noise, make_scheduler, sample, x0_range
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
def tiny_unet_pipe(smoke_cfg):
    def make(schedule):
        cfg = smoke_cfg.replace(beta_schedule=schedule)
        torch.manual_seed(0)
        return TextToImage(cfg, build_unet(cfg), TextEncoder.from_pretrained(cfg.text_encoder, 8), device="cpu")

    return make


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
    names = {name: type(make_scheduler(name, smoke_cfg)).__name__ for name in SAMPLERS}
    assert names["dpmsolver++3m"] == "DPMSolverMultistepScheduler" and names["heun-karras"] == "HeunDiscreteScheduler"
    assert make_scheduler("dpmsolver++3m", smoke_cfg).config.solver_order == 3
    assert make_scheduler("dpmsolver++sde", smoke_cfg).config.algorithm_type == "sde-dpmsolver++"
    assert make_scheduler("euler-karras", smoke_cfg).config.use_karras_sigmas
    with pytest.raises(ValueError, match="unknown sampler"):
        make_scheduler("euler", smoke_cfg)
    with pytest.raises(ValueError, match="unknown timestep spacing"):
        make_scheduler(Sampler("ddim", 4, "sideways"), smoke_cfg)


def test_sigma_max_keeps_the_trained_noise_levels_below_it(smoke_cfg):
    full = make_scheduler(Sampler("ddim", 10), smoke_cfg)
    clipped = make_scheduler(Sampler("ddim", 10, "trailing", 80.0), smoke_cfg)
    kept = len(clipped.alphas_cumprod)
    assert kept == 991  # the cosine schedule's sigma passes 80 at t = 991
    torch.testing.assert_close(clipped.alphas_cumprod, full.alphas_cumprod[:kept])  # the training noise levels
    clipped.set_timesteps(10)
    assert int(clipped.timesteps[0]) == kept - 1


@pytest.mark.parametrize("schedule", ["squaredcos_cap_v2", "linear"])
@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_and_spacing_runs_the_pipeline_to_finite_images(tiny_unet_pipe, name, schedule):
    pipe = tiny_unet_pipe(schedule)
    raw = []
    for spacing in SPACINGS:
        for sigma_max in (None, 80.0):
            sampler = Sampler(name, 4, spacing, sigma_max)
            if not usable(sampler):
                continue
            images = pipe.images(
                ["A handwritten digit 1", "A handwritten digit 2"],
                3.0,
                show_progress=False,
                sampler=sampler,
                callback=lambda i, t, x: raw.append(x),
            )
            assert images.shape == (2, 1, 16, 16)
    assert raw and all(torch.isfinite(x).all() for x in raw)  # every step, before the pipeline's final clamp


def usable(sampler: Sampler) -> bool:
    """Every sampler and spacing but DDIM's "linspace", which t2i refuses (the next test)."""
    return not (sampler.name == "ddim" and sampler.spacing == "linspace")


def test_ddim_with_linspace_spacing_is_refused_in_one_line_naming_the_upstream_bug(smoke_cfg):
    with pytest.raises(ValueError, match="#11347"):
        make_scheduler(Sampler("ddim", 4, "linspace"), smoke_cfg)


def constant_x0(value: torch.Tensor, alphas: torch.Tensor):
    """The eps of a model whose every x0 prediction is ``value``, at any (fractional) timestep."""

    def eps(x, t):
        a = alpha_at(alphas, t)
        return (x - a**0.5 * value) / (1 - a) ** 0.5

    return eps


@pytest.mark.parametrize("experiment", NAMES)
@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_and_spacing_keeps_x0_in_the_datas_range(experiment, name):
    """A denoiser that puts every x0 prediction outside the data's range (2 above it on one half of the image, 2 below
    on the other): each x0 the scheduler sees is clipped to the config's pixel_range, so the sampler ends exactly on
    its bounds (a sampler ends on x0 when every prediction is the same). Latents are not clipped. Checked on the
    sampler's own output, before any final clamp. DEIS extrapolates eps, not x0, so a constant x0 is not a fixed
    point of its steps: it ends within 2.5% of the range of the bounds (unclipped: 2 outside them)."""
    cfg = configs.get(experiment, "full")
    low, high = cfg.pixel_range
    outside = torch.full((2, 1, 8, 8), high + 2.0)
    outside[..., 4:] = low - 2.0
    expected = outside.clamp(low, high) if x0_range(cfg) is not None else outside
    for spacing in SPACINGS:
        for sigma_max in (None, 80.0):
            sampler = Sampler(name, 5, spacing, sigma_max)
            if not usable(sampler):
                continue
            scheduler = make_scheduler(sampler, cfg)
            x_T, generators = initial_noise(range(2), (1, 8, 8), "cpu")
            out = sample(
                constant_x0(outside, scheduler.alphas_cumprod),
                x_T,
                scheduler,
                5,
                generator=generators,
                x0_range=x0_range(cfg),
            )
            torch.testing.assert_close(
                out,
                expected,
                atol=0.025 * (high - low) if name == "deis" else 1e-5,
                rtol=0,
                msg=f"{experiment} {sampler.describe()}",
            )


def test_only_latent_runs_are_sampled_unclipped():
    assert x0_range(configs.get("mnist", "full")) == (0.0, 1.0)  # thesis 3.2.3: [0, 1], not diffusers' [-1, 1]
    assert x0_range(configs.get("cifar10", "full")) == (-1.0, 1.0)
    assert x0_range(configs.get("celeba", "full")) is None


def gaussian_eps(mean: float, std: float, alphas: torch.Tensor):
    """The exact eps of data x0 ~ N(mean, std^2) per pixel: E[eps | x_t] = sqrt(1-a) (x_t - sqrt(a) mean) / (a std^2
    + 1 - a), at any (fractional) timestep."""

    def eps(x, t):
        a = alpha_at(alphas, t)
        return (1 - a) ** 0.5 * (x - a**0.5 * mean) / (a * std**2 + 1 - a)

    return eps


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_samplers_traits_are_what_its_scheduler_does(smoke_cfg, name):
    """The registry's traits, checked against diffusers: Karras sigmas, the solver's order, and fresh noise per step
    (two draws from the same x_T with other generators differ only for a stochastic sampler)."""
    from t2i.sampling import SCHEDULERS

    kind = SCHEDULERS[name]
    scheduler = make_scheduler(Sampler(name, 5, "trailing", 80.0), smoke_cfg)
    assert kind.karras == bool(scheduler.config.get("use_karras_sigmas", False))
    assert kind.order == scheduler.config.get("solver_order", type(scheduler).order)
    eps = gaussian_eps(0.3, 0.2, scheduler.alphas_cumprod)
    x_T, _ = initial_noise(range(4), (1, 8, 8), "cpu")
    draws = [
        sample(
            eps,
            x_T.clone(),
            make_scheduler(Sampler(name, 5, "trailing", 80.0), smoke_cfg),
            5,
            generator=initial_noise(range(seed, seed + 4), (1, 8, 8), "cpu")[1],
        )
        for seed in (100, 200)
    ]
    assert (not torch.equal(*draws)) == kind.stochastic
    assert Sampler(name, 5).describe().endswith("(Karras sigmas)") == kind.karras


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_reaches_the_exact_image_of_a_known_gaussian_at_50_steps(smoke_cfg, name):
    """With the true eps of Gaussian data, an ODE sampler maps x_T to mean + std z (z: x_T standardised at its first
    noise level) within 0.02 (first-order Euler: 0.06); a stochastic one draws images whose mean and std are within
    0.03 of the data's (DDPM's fixed_small posterior variance draws them a little too narrow at 50 steps)."""
    mean, std = 0.3, 0.2
    sampler = Sampler(name, 50, "trailing", 80.0)
    scheduler = make_scheduler(sampler, smoke_cfg)
    x_T, generators = initial_noise(range(16), (1, 16, 16), "cpu")
    x0 = sample(gaussian_eps(mean, std, scheduler.alphas_cumprod), x_T, scheduler, 50, generator=generators)
    if name in STOCHASTIC:
        assert abs(x0.mean().item() - mean) < 0.03 and abs(x0.std().item() - std) < 0.03
        return
    a = alpha_at(scheduler.alphas_cumprod, scheduler.timesteps[0])
    exact = mean + std * (x_T - a**0.5 * mean) / (a * std**2 + 1 - a) ** 0.5
    assert (x0 - exact).abs().max() < (0.06 if name == "euler-karras" else 0.02), (x0 - exact).abs().max()


def test_network_evaluations_are_counted_heun_twice_per_step_but_the_last(tiny_unet_pipe):
    pipe = tiny_unet_pipe("squaredcos_cap_v2")
    for sampler, per_image in ((Sampler("heun-karras", 5, "leading", 80.0), 2 * (2 * 5 - 1)), (Sampler("ddim", 5), 10)):
        counted = Evaluations()
        pipe.images(["A handwritten digit 1"] * 3, 3.0, sampler=sampler, evaluations=counted, show_progress=False)
        assert counted.per_image(3) == per_image  # a guided step evaluates the condition and the empty prompt
    counted = Evaluations()
    pipe.images(["A handwritten digit 1"] * 3, 1.0, sampler=Sampler("ddim", 5), evaluations=counted)
    assert counted.per_image(3) == 5  # w = 1 is the conditional model alone


def test_the_same_seed_gives_every_sampler_the_same_starting_noise(smoke_cfg):
    """x_T depends on the seed alone; the UNet's first input is x_T for every sampler (Karras-sigma samplers with
    trailing steps scale it by sigma_max / sqrt(sigma_max^2 + 1), 1 - 8e-5 at sigma_max 80: diffusers' choice)."""
    first = {}
    for name in SAMPLERS:
        seen = []
        x_T, generators = initial_noise(range(7, 9), (1, 8, 8), "cpu")
        scheduler = make_scheduler(Sampler(name, 4, "trailing", 80.0), smoke_cfg)
        sample(lambda x, t: seen.append(x) or torch.zeros_like(x), x_T, scheduler, 4, generator=generators)
        first[name] = seen[0]
        torch.testing.assert_close(x_T, initial_noise(range(7, 9), (1, 8, 8), "cpu")[0])
    for name, x in first.items():
        torch.testing.assert_close(x, first["ddpm"], atol=1e-3, rtol=1e-3, msg=name)


def test_more_steps_above_the_high_guidance_scale_unless_a_step_count_is_given(tiny_unet_pipe):
    """The config's high-guidance rule (the demo: 6 steps, 20 above w = 10): images() takes high_guidance_steps only
    where w > high_guidance_scale, counted in network evaluations; an explicit step count holds at every w."""
    pipe = tiny_unet_pipe("squaredcos_cap_v2")
    pipe.cfg = pipe.cfg.replace(high_guidance_scale=10.0, high_guidance_steps=7)
    pipe.sampling = Sampler.of(pipe.cfg, name="ddim")
    base = pipe.cfg.num_inference_steps
    assert base != 7
    prompts = ["A handwritten digit 1"] * 2
    for w, steps in ((3.0, base), (10.0, base), (10.5, 7), (20.0, 7)):
        counted = Evaluations()
        pipe.images(prompts, w, evaluations=counted, show_progress=False)
        assert counted.per_image(2) == 2 * steps, w  # cond and uncond per step
        assert pipe.steps_at(w) == steps
    counted = Evaluations()
    pipe.images(prompts, 20.0, num_inference_steps=4, evaluations=counted, show_progress=False)
    assert counted.per_image(2) == 8  # the given count, not the rule
    counted = Evaluations()
    pipe.images(prompts, 20.0, sampler="ddpm", evaluations=counted, show_progress=False)
    assert counted.per_image(2) == 14  # another sampler by name keeps the rule
    assert Sampler.of(pipe.cfg, steps=5).high_guidance_steps is None  # a count given is the count at every w
    assert "7 above w = 10" in pipe.sampling.describe()
    assert pipe.provenance()["high_guidance"] == {"above": 10.0, "steps": 7}


def test_high_guidance_scale_and_steps_go_together(smoke_cfg):
    with pytest.raises(configs.ConfigError, match="go together"):
        smoke_cfg.replace(high_guidance_scale=10.0)
    with pytest.raises(configs.ConfigError, match="high_guidance_steps=5000"):
        smoke_cfg.replace(high_guidance_scale=10.0, high_guidance_steps=5000)
