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


def attribute_adherence(pipe: TextToImage, prompts: int, samples_per_prompt: int, path: Path) -> str:
    """CelebA: the 40-attribute judge (trained on first use), then the adherence of ``prompts`` attribute sets taken
    from held-out real faces, at every guidance scale, written to ``path`` (.md/.csv/.tex/.png). The same judge on
    those real faces against their own captions' claims is the ceiling drawn on the plot."""
    from . import data, reports

    judge = judges.for_config(pipe.cfg)
    real, attributes = data.load_images(pipe.cfg, "judge_test", resolution=judge.cfg.resolution)
    ceiling = evaluate.claim_agreement(judge.predict(real), *evaluate.attribute_claims(attributes)[1:])
    print(f"attribute judge: mean per-attribute accuracy {judge.test_accuracy:.1%} on {len(real)} held-out faces; "
          f"it confirms {ceiling:.1%} of those faces' own caption claims (the ceiling)")
    rows = evaluate.attribute_adherence(pipe, judge, attributes[:prompts], pipe.cfg.guidance_scales, samples_per_prompt)
    caption = (f"Attribute adherence: fraction of the attributes each prompt's caption claims that the 40-attribute "
               f"judge confirms in the generated image ({prompts} attribute sets from held-out faces x "
               f"{samples_per_prompt} images per w, seed {pipe.cfg.seed}). Judge: mean per-attribute accuracy "
               f"{judge.test_accuracy:.1%}; on real faces it confirms {ceiling:.1%} of their own claims. "
               f"Guidance: {reports.GUIDANCE_CONVENTION}.")
    table = reports.write_table(rows, path, caption=caption)
    plot = reports.metric_vs_guidance(rows, "attribute_adherence", Path(path).with_suffix(".png"), reference=ceiling,
                                      reference_label="real faces", title="CelebA attribute adherence vs w")
    for artefact in (Path(path).with_suffix(".md"), plot):
        reports.write_provenance(artefact, pipe.cfg, seed=pipe.cfg.seed, checkpoint=pipe.checkpoint,
                                 weights=pipe.weights, samples=rows[0]["samples"], ceiling=ceiling,
                                 judge_test_accuracy=judge.test_accuracy,
                                 judge_per_attribute_accuracy=judge.per_class_accuracy)
    return table
