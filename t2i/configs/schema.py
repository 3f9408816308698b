"""The config schema: one frozen dataclass, every field with its range and whether a resumed run may change it.

Each field's metadata says what values it takes (``check``) and whether a run may resume with a different value
(``resumable``: how long to train, how often to checkpoint, speed switches). The range checks and the resumable
list are generated from that metadata, so a new field is one line here. The values of each experiment live in
``t2i/experiments/<name>.py``; :mod:`t2i.configs` assembles them.

Runs store the config they were trained with (``config.json``); :data:`RENAMED` reads the names older code wrote.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

# diffusers schedulers (t2i.sampling.SCHEDULERS says which is which); timestep spacings (Lin et al. 2023, Table 2)
SAMPLERS = (
    "ddpm",
    "ddim",
    "dpmsolver++",
    "dpmsolver++3m",
    "dpmsolver++sde",
    "unipc",
    "deis",
    "euler-karras",
    "heun-karras",
)
SPACINGS = ("leading", "trailing", "linspace")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")  # diffusers DDPMScheduler
PRECISIONS = ("auto", "no", "bf16", "fp16")
LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")  # diffusers.optimization.get_scheduler
TRACKERS = ("none", "tensorboard", "wandb", "mlflow", "all")  # accelerate's trackers; wandb and mlflow are optional
COMPILE_MODES = ("off", "full", "regional")  # t2i.models.compile_regions; docs/performance.md
# Names a config.json written by older code may use, and what they are called now; values likewise.
RENAMED = {"profile_steps": "timing_steps"}
RENAMED_VALUES = {"compile": {False: "off", True: "full"}}  # compile was a bool
DATA_DIR = Path(__file__).resolve().parents[1] / "data"  # a dataset is a module t2i/data/<name>.py (t2i.data.registry)


def _field(check: str | tuple | None = None, *, resumable: bool = False, **default: Any) -> Any:
    """A config field. ``check``: "positive", "positive?" (or None), "nonnegative", "unit" ([0, 1)), "number>0",
    "number>=0", "finite", "finites" (one or more finite numbers), or a tuple of allowed values."""
    return dataclasses.field(metadata={"check": check, "resumable": resumable}, **default)


@dataclass(frozen=True)
class ExperimentConfig:
    experiment: str = _field()  # name of the experiment; runs go to runs/<experiment>/<run-name>
    profile: str = _field()  # full | demo | smoke (t2i/experiments/<experiment>.py)

    # --- data ---
    dataset: str = _field("dataset")  # a module t2i/data/<dataset>.py loads it
    resolution: int = _field("positive")  # images are square, resolution x resolution pixels
    channels: int = _field("positive")  # 1 = grayscale, 3 = RGB
    pixel_range: tuple[float, float] = _field()  # the range the UNet sees images in
    caption_template: str = _field()  # "{}" is replaced by a class name
    class_names: tuple[str, ...] = _field()  # one caption per class (CelebA: whole prompts for the figures)
    train_subset: int | None = _field("positive?")  # use only the first N training images (None = all)

    # --- text encoder (frozen) ---
    text_encoder: str = _field()  # model id, local path, or "bundled:all-MiniLM-L6-v2"
    max_tokens: int = _field("positive")  # prompts are padded or truncated to exactly this many tokens

    # --- UNet (diffusers UNet2DConditionModel) ---
    block_out_channels: tuple[int, ...] = _field()
    layers_per_block: int = _field("positive")
    down_block_types: tuple[str, ...] = _field()
    up_block_types: tuple[str, ...] = _field()
    cross_attention_dim: int = _field("positive")  # must equal the text encoder's hidden size
    attention_head_dim: int = _field("positive")  # diffusers' legacy name: the NUMBER of heads per attention layer
    norm_num_groups: int = _field("positive")

    # --- training ---
    batch_size: int = _field("positive")
    learning_rate: float = _field("number>0")
    weight_decay: float = _field("number>=0")  # AdamW
    epochs: int = _field("positive", resumable=True)
    checkpoint_every: int = _field("positive", resumable=True)  # epochs between checkpoints (and the last epoch)
    p_uncond: float = _field("unit")  # probability a caption is replaced by the empty prompt (null-prompt dropout)
    seed: int = _field("seed")

    # --- diffusion ---
    num_train_timesteps: int = _field("positive")
    beta_schedule: str = _field(BETA_SCHEDULES)
    clip_sample: bool = _field()  # sampling clips every predicted x0 to pixel_range (t2i.sampling.x0_range)

    # --- sampling ---
    sampler: str = _field(SAMPLERS, resumable=True)
    num_inference_steps: int = _field("positive", resumable=True)
    guidance_scales: tuple[float, ...] = _field("finites", resumable=True)  # eps_u + w (eps_c - eps_u); w=1 plain
    timestep_spacing: str = _field(SPACINGS, resumable=True, default="leading")  # where the sampler's steps fall
    sigma_max: float | None = _field("number>0?", resumable=True, default=None)  # clip the schedule (t2i.sampling)
    # above this guidance scale, sample with high_guidance_steps instead of num_inference_steps (a few-step sampler
    # that matches many steps at moderate w can lose adherence at high w: make samplers); None: the same at every w
    high_guidance_scale: float | None = _field("number>0?", resumable=True, default=None)
    high_guidance_steps: int | None = _field("positive?", resumable=True, default=None)

    # --- training infrastructure (not in the thesis; safe defaults, the same for every experiment) ---
    lr_schedule: str = _field(LR_SCHEDULES, default="constant_with_warmup")  # diffusers get_scheduler
    lr_warmup_steps: int = _field("nonnegative", default=0)  # optimizer steps of linear warmup
    gradient_accumulation_steps: int = _field("positive", default=1)  # batches per optimizer step
    gradient_checkpointing: bool = _field(resumable=True, default=False)  # recompute activations: less memory
    grad_clip: float | None = _field("number>0?", default=None)  # max global gradient norm; None = no clipping
    ema_decay: float | None = _field("open-unit?", default=0.9999)  # EMA of the UNet weights (diffusers EMAModel)
    # post-hoc EMA snapshots (t2i.posthoc); None: off
    ema_snapshot_every: int | None = _field("positive?", default=None)
    ema_sigma_rels: tuple[float, ...] = _field("sigma-rels", default=(0.05, 0.10))  # power-function EMAs (EDM2 3.3)
    mixed_precision: str = _field(PRECISIONS, resumable=True, default="auto")  # auto: bf16 on CUDA, else no
    channels_last: bool = _field(resumable=True, default=False)  # NHWC memory format for the UNet
    compile: str = _field(COMPILE_MODES, resumable=True, default="off")  # torch.compile the UNet or its blocks
    attention_head_width: int | None = _field("positive?", default=None)  # e.g. 64: heads of this width instead
    checkpoint_every_steps: int | None = _field("positive?", resumable=True, default=None)  # also mid-epoch
    keep_checkpoints: int = _field("at-least-2", resumable=True, default=3)  # rolling ones; milestones are kept
    judge_epochs: int = _field("positive", resumable=True, default=30)  # epochs of this dataset's judge
    timing_steps: int = _field("nonnegative", resumable=True, default=0)  # time the first N steps (timing.md)

    # --- watching a run while it trains (t2i.tracking; docs/cluster.md) ---
    report_to: str = _field(TRACKERS, resumable=True, default="tensorboard")  # loss, LR, speed, grids, evaluations
    sample_every_steps: int | None = _field("positive?", resumable=True, default=None)  # EMA grid every N steps
    sample_every_epochs: int | None = _field("positive?", resumable=True, default=1)  # ... and every N-th epoch
    sample_guidance_scale: float = _field("finite", resumable=True, default=3.0)  # w of those grids
    sample_columns: int = _field("positive", resumable=True, default=4)  # images per caption in those grids
    eval_every_epochs: int | None = _field("positive?", resumable=True, default=None)  # small sweep every N epochs
    eval_guidance_scales: tuple[float, ...] = _field("finites", resumable=True, default=(1.0, 3.0))  # its w
    eval_samples_per_prompt: int = _field("positive", resumable=True, default=10)  # images per prompt and w

    # --- parquet shards (WikiArt, CelebA, synthetic smoke data; t2i.data.shards) ---
    shards: str | None = _field(default=None)  # glob of training shards under the data dir; None = torchvision
    judge_shards: str | None = _field(default=None)  # held-out shards for the judge (None = 20% of the rows)
    image_column: str = _field(default="image")  # the image column ({bytes, path} struct) of the shards
    label_column: str = _field(default="label")  # integer class column (WikiArt: "style")
    num_workers: int = _field("nonnegative", resumable=True, default=0)  # DataLoader processes
    max_bad_fraction: float = _field("unit", default=0.01)  # more unreadable rows than this stops the run
    preprocess: bool = _field(default=False)  # decode every image once into uint8 shards at `resolution`

    # --- latent diffusion (Experiment 4; t2i.vae, t2i.data.latents) ---
    vae: str | None = _field(default=None)  # frozen AutoencoderKL (id or folder): the UNet works on its latents
    latent_channels: int = _field("positive", default=4)  # checked against the VAE's config when it loads
    latent_downsample: int = _field("positive", default=8)  # image pixels per latent pixel along each side

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
            raise ConfigError(
                f"unknown config keys {sorted(unknown)}"
                + (f" ({'; '.join(hints)})" if hints else "")
                + f"; valid keys: {sorted(valid)}"
            )
        return dataclasses.replace(self, **{k: _coerce(type(self), k, v) for k, v in overrides.items()})


RESUMABLE = frozenset(f.name for f in dataclasses.fields(ExperimentConfig) if f.metadata["resumable"])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


CHECKS = {  # check name -> (test of a value, what the error says it must be)
    "positive": (lambda v: v > 0, "must be positive"),
    "positive?": (lambda v: v is None or v > 0, "must be positive or None"),
    "nonnegative": (lambda v: v >= 0, "must be >= 0"),
    "at-least-2": (lambda v: v >= 2, "must be >= 2 (a damaged newest one falls back)"),
    "unit": (lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
    "open-unit?": (lambda v: v is None or 0.0 < v < 1.0, "must be in (0, 1) or None"),
    "number>0": (lambda v: _finite(v) and v > 0, "must be a positive number"),
    "number>0?": (lambda v: v is None or _finite(v) and v > 0, "must be a positive number or None"),
    "number>=0": (lambda v: _finite(v) and v >= 0, "must be a number >= 0"),
    "finite": (_finite, "must be a finite number"),
    "finites": (lambda v: len(v) > 0 and all(map(_finite, v)), "must be one or more finite numbers"),
    "seed": (lambda v: 0 <= v < 2**32, "must be in [0, 2**32) (NumPy's seed range)"),
    "dataset": (lambda v: (DATA_DIR / f"{v}.py").is_file(), "is not a dataset module t2i/data/<name>.py"),
    "sigma-rels": (
        lambda v: len(set(v)) >= 2 and all(_finite(s) and 0 < s < 0.3 for s in v),
        "must be two or more different lengths in (0, 0.3)",
    ),
}


def _problems(cfg: ExperimentConfig) -> list[str]:
    """Everything wrong with a config, each with the rule it breaks: the fields' own checks, then the rules that
    tie fields together."""
    problems = []
    for f in dataclasses.fields(cfg):
        check, value = f.metadata["check"], getattr(cfg, f.name)
        if isinstance(check, tuple):
            if value not in check:
                problems.append(f"{f.name}={value!r} is not one of {check}")
        elif check is not None and not CHECKS[check][0](value):
            problems.append(f"{f.name}={value!r} {CHECKS[check][1]}")

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    need(
        len(cfg.pixel_range) == 2 and all(map(_finite, cfg.pixel_range)) and cfg.pixel_range[0] < cfg.pixel_range[1],
        f"pixel_range={cfg.pixel_range} must be (low, high) with low < high",
    )
    if cfg.checkpoint_every_steps and cfg.gradient_accumulation_steps > 0:
        need(
            cfg.checkpoint_every_steps % cfg.gradient_accumulation_steps == 0,
            f"checkpoint_every_steps={cfg.checkpoint_every_steps} must be a multiple of gradient_accumulation_steps="
            f"{cfg.gradient_accumulation_steps} (a checkpoint between the batches of one update would lose gradients)",
        )
    need(
        cfg.num_inference_steps <= cfg.num_train_timesteps,
        f"num_inference_steps={cfg.num_inference_steps} must be <= num_train_timesteps={cfg.num_train_timesteps}",
    )
    need(
        (cfg.high_guidance_scale is None) == (cfg.high_guidance_steps is None),
        "high_guidance_scale and high_guidance_steps go together: set both (more steps above that scale) or neither",
    )
    need(
        (cfg.high_guidance_steps or 0) <= cfg.num_train_timesteps,
        f"high_guidance_steps={cfg.high_guidance_steps} must be <= num_train_timesteps={cfg.num_train_timesteps}",
    )
    need("{}" in cfg.caption_template, f"caption_template={cfg.caption_template!r} must contain '{{}}'")
    need(len(cfg.class_names) > 0, "class_names must name at least one class")
    need(
        len(cfg.block_out_channels) == len(cfg.down_block_types) == len(cfg.up_block_types),
        "block_out_channels, down_block_types and up_block_types must have the same length",
    )
    need(all(c > 0 for c in cfg.block_out_channels), f"block_out_channels={cfg.block_out_channels} must be positive")
    if cfg.norm_num_groups > 0:
        need(
            not any(c % cfg.norm_num_groups for c in cfg.block_out_channels),
            f"every block channel count must be divisible by norm_num_groups={cfg.norm_num_groups}",
        )
    if cfg.attention_head_width:
        need(
            all(c % cfg.attention_head_width == 0 for c in cfg.block_out_channels if c >= cfg.attention_head_width),
            f"attention_head_width={cfg.attention_head_width} must divide every block channel count at least as large",
        )
    if cfg.vae is not None and cfg.latent_downsample > 0:
        need(
            cfg.resolution % cfg.latent_downsample == 0,
            f"resolution={cfg.resolution} must be a multiple of latent_downsample={cfg.latent_downsample}",
        )
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
