"""The few steps every experiment notebook shares, so the notebooks stay prose, parameters and calls."""

from __future__ import annotations

from pathlib import Path

from . import configs, evaluate, judges, paths
from .configs import ExperimentConfig
from .models import count_parameters
from .pipeline import TextToImage


def setup(notebook: str, experiment: str, profile: str, run_name: str = "",
          **overrides) -> tuple[ExperimentConfig, Path, Path]:
    """The config (profile + overrides; ``None`` = the profile's value), the run folder and the report folder."""
    cfg = configs.get(experiment, profile, **overrides)
    run_dir = paths.run_dir(cfg.experiment, run_name or profile)
    out = paths.report_dir(notebook, profile)
    print(f"run: {run_dir}\nreports: {out}")
    print(cfg.to_json())
    return cfg, run_dir, out


def describe(pipe: TextToImage) -> str:
    """One line for the notebook: the model that made the figures."""
    cfg = pipe.cfg
    return (f"UNet parameters: {count_parameters(pipe.unet, trainable_only=False):,}; checkpoint {pipe.checkpoint.name} "
            f"({pipe.weights} weights); sampler {cfg.sampler}, {cfg.num_inference_steps} steps; seed {cfg.seed}")


def adherence(pipe: TextToImage, samples_per_class: int, path: Path) -> str:
    """The dataset's judge (trained on first use), its accuracy on held-out real images, and the adherence sweep over
    the config's guidance scales written to ``path`` (.md/.csv/.tex/.png); returns the markdown table."""
    judge = judges.for_config(pipe.cfg)
    print(f"judge ({judge.cfg.arch}) accuracy on held-out real images: {judge.test_accuracy:.1%}")
    rows = evaluate.adherence_sweep(pipe, judge, pipe.cfg.guidance_scales, samples_per_class)
    return evaluate.write_adherence_report(rows, pipe, path)
