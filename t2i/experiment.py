"""The steps every experiment shares, so notebooks and the command line stay parameters and calls.

:func:`train` is where a run is assembled: the dataset's module (:func:`t2i.data.spec`) gives the training examples
and the conditioner, :mod:`t2i.objectives` the loss, :mod:`t2i.train` the loop.
"""

from __future__ import annotations

from pathlib import Path

from . import configs, data, evaluate, judges, objectives, paths, watch
from .configs import ExperimentConfig
from .errors import ConfigError
from .models import check_text_width, count_parameters
from .pipeline import TextToImage
from .text import TextEncoder
from .train import fit


def setup(experiment: str, profile: str, run_name: str = "", **overrides) -> tuple[ExperimentConfig, Path, Path]:
    """The config (profile + overrides; ``None`` = the profile's value), the run folder and the run's report folder
    (``reports/<profile>/<experiment>/<run>/``)."""
    cfg = configs.get(experiment, profile, **overrides)
    run_name = run_name or profile
    run_dir = paths.run_dir(cfg.experiment, run_name)
    out = paths.report_dir(profile, cfg.experiment, run_name)
    print(f"run: {run_dir}\nreports: {out}")
    print(cfg.to_json())
    return cfg, run_dir, out


def train(cfg: ExperimentConfig, run_dir: Path, restart: bool = False) -> Path:
    """Train (or resume) a run: the frozen text encoder, the dataset's conditioner and training examples, the
    objective, what watches the run (:mod:`t2i.watch`), then :func:`t2i.train.fit`. Class captions are encoded once;
    CelebA's data workers draw and tokenise a fresh caption per image and epoch, and its conditioner keeps the encoder
    to embed them in the step."""
    spec = data.spec(cfg)
    check_periodic_eval(cfg)
    text = TextEncoder.from_pretrained(cfg.text_encoder, cfg.max_tokens)
    check_text_width(cfg, text.hidden_size)
    conditioner = spec.conditioner(cfg, text)
    objective = objectives.for_config(cfg, conditioner)
    hooks = watch.hooks_for(cfg, Path(run_dir), text)  # sample grids and evaluations while training, if asked for
    del text  # only the conditioner's and the hooks' references remain, if they need one
    dataset = spec.training_set(cfg, log_dir=Path(run_dir) / "bad_samples",  # builds the latent cache on first use
                                transform=conditioner.example_transform)
    return fit(cfg, Path(run_dir), dataset, objective, restart=restart, hooks=hooks)


def check_periodic_eval(cfg: ExperimentConfig) -> None:
    """``eval_every_epochs`` compares N generated images with 2 N real ones (the real-vs-real floor): check there are
    enough before the first epoch, not after it."""
    if not cfg.eval_every_epochs:
        return
    n = len(data.spec(cfg).sweep_conditions(cfg, cfg.eval_samples_per_prompt, None))
    have = len(data.load_images(cfg, "train", limit=2 * n)[0])
    if have < 2 * n:
        raise ConfigError(f"eval_every_epochs needs 2 x {n} real training images (eval_samples_per_prompt="
                          f"{cfg.eval_samples_per_prompt} per prompt), the training set has {have}: lower "
                          "eval_samples_per_prompt, or raise train_subset")


def describe(pipe: TextToImage) -> str:
    """One line for the notebook: the model that made the figures."""
    return (f"UNet parameters: {count_parameters(pipe.unet, trainable_only=False):,}; checkpoint {pipe.checkpoint.name} "
            f"({pipe.weights} weights); sampler {pipe.sampler}, {pipe.num_inference_steps} steps; seed {pipe.cfg.seed}")


def adherence(pipe: TextToImage, path: Path, samples_per_prompt: int, prompts: int | None = None) -> str:
    """The dataset's judge (trained on first use), its score on real held-out images, and the adherence sweep over
    the config's guidance scales with ``samples_per_prompt`` images of each prompt (every class, or ``prompts``
    CelebA attribute sets), written to ``path`` (.md/.csv/.tex/.png); returns the markdown table."""
    judge = judges.for_config(pipe.cfg)
    real, n = evaluate.real_adherence(pipe.cfg, judge)
    print(f"judge ({judge.cfg.arch}): {real:.1%} adherence on {n} real held-out images")
    conditions = data.spec(pipe.cfg).sweep_conditions(pipe.cfg, samples_per_prompt, prompts)
    rows = evaluate.adherence_sweep(pipe, judge, conditions, pipe.cfg.guidance_scales)
    return evaluate.write_adherence_report(rows, pipe, judge, path, samples_per_prompt=samples_per_prompt, real=real)
