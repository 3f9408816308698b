"""Prompt adherence of a trained run, measured by a judge, across guidance scales."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from . import reports
from .console import progress
from .judges import Judge
from .pipeline import TextToImage


def adherence_sweep(pipe: TextToImage, judge: Judge, guidance_scales: Sequence[float], samples_per_class: int,
                    seed: int | None = None) -> list[dict]:
    """For each w, sample ``samples_per_class`` images of every class caption and report the fraction the judge
    assigns to the prompted class. Every w uses the same seeds (paired samples), so differences between rows
    come from w, not from the noise."""
    seed = pipe.cfg.seed if seed is None else seed
    captions = pipe.cfg.captions
    labels = torch.arange(len(captions)).repeat_interleave(samples_per_class)
    prompts = [captions[i] for i in labels]
    rows = []
    for w in progress(guidance_scales, desc="adherence sweep"):
        predicted = judge.predict(pipe.images(prompts, w, seed=seed, show_progress=False))
        per_class = [(predicted[labels == k] == k).float().mean().item() for k in range(len(captions))]
        rows.append({"guidance_scale": float(w), "adherence": (predicted == labels).float().mean().item(),
                     "worst_class_adherence": min(per_class), "samples": len(prompts),
                     "judge_test_accuracy": judge.test_accuracy})
    return rows


def write_adherence_report(rows: list[dict], pipe: TextToImage, path: Path) -> str:
    """``path`` .md/.csv/.tex table, ``path.png`` plot (with chance level), provenance; returns the markdown."""
    chance = 1.0 / len(pipe.cfg.captions)
    samples = rows[0]["samples"]
    table = reports.write_table(rows, path, caption=(
        f"Prompt adherence: fraction of generated images the judge assigns to the prompted class "
        f"({samples // len(pipe.cfg.captions)} per class, {samples} per row, seed {pipe.cfg.seed}; chance {chance:.0%}; "
        f"judge accuracy on held-out real images {rows[0]['judge_test_accuracy']:.1%}). "
        f"Guidance: {reports.GUIDANCE_CONVENTION}."))
    plot = reports.metric_vs_guidance(rows, "adherence", Path(path).with_suffix(".png"), chance=chance,
                                      title="Prompt adherence vs guidance scale")
    for artefact in (Path(path).with_suffix(".md"), plot):
        reports.write_provenance(artefact, pipe.cfg, seed=pipe.cfg.seed, checkpoint=pipe.checkpoint, weights=pipe.weights, samples=samples,
                                 judge_test_accuracy=rows[0]["judge_test_accuracy"])
    print(table)
    return table
