"""The thesis figures, sampled from a trained run and saved with provenance.

Each function samples with :class:`t2i.pipeline.TextToImage`, saves a labelled grid through
:mod:`t2i.reports`, writes the provenance sidecar and returns the figure's path.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import torch

from . import reports
from .pipeline import TextToImage
from .runs import read_loss_log


def loss(run_dir: Path, path: Path, title: str = "Training loss") -> Path:
    """Per-step and per-epoch training loss of a run (thesis Figures 6 and 16)."""
    losses = read_loss_log(run_dir)
    reports.loss_curve(losses, path, title=title)
    reports.write_provenance(path, run=Path(run_dir).name, steps=int(losses["step"][-1]))
    return path


def prompt_row(
    pipe: TextToImage,
    prompts: Sequence[str],
    guidance_scale: float,
    path: Path,
    *,
    labels: Sequence[str],
    title: str,
    seed: int | None = None,
) -> Path:
    """One image per prompt in a single row (thesis Figures 2, 4, 5)."""
    seed = pipe.seed_for(seed)
    images = pipe.images(prompts, guidance_scale, seed=seed)
    reports.image_grid(
        images, path, nrow=len(prompts), col_labels=labels, title=f"{title}\n[{reports.GUIDANCE_CONVENTION}]"
    )
    reports.write_provenance(
        path, **pipe.provenance(seed=seed, samples=len(images), guidance_scale=guidance_scale, prompts=list(prompts))
    )
    return path


def guidance_grid(
    pipe: TextToImage,
    prompts: Sequence[str],
    guidance_scales: Sequence[float],
    path: Path,
    *,
    row_labels: Sequence[str],
    title: str,
    seed: int | None = None,
) -> Path:
    """Prompts (rows) x guidance scales (columns), every row sampled from the same seed so the columns show what
    w alone changes (thesis Figures 7 and 18)."""
    seed = pipe.seed_for(seed)
    columns = [pipe.images(prompts, w, seed=seed, show_progress=False) for w in guidance_scales]
    images = torch.stack(columns, dim=1).flatten(0, 1)  # row-major: prompt, then w
    reports.image_grid(
        images,
        path,
        nrow=len(guidance_scales),
        row_labels=row_labels,
        col_labels=[f"w={w:g}" for w in guidance_scales],
        title=f"{title}\n[{reports.GUIDANCE_CONVENTION}]",
    )
    reports.write_provenance(
        path,
        **pipe.provenance(seed=seed, samples=len(images), guidance_scales=list(guidance_scales), prompts=list(prompts)),
    )
    return path


def class_grid(
    pipe: TextToImage,
    guidance_scale: float,
    path: Path,
    *,
    samples_per_prompt: int = 10,
    title: str = "",
    seed: int | None = None,
) -> Path:
    """Prompts (rows: the config's captions) x ``samples_per_prompt`` samples (columns) at one guidance scale (thesis
    Figures 9-12: a 10x10 grid per w; Figure 17). Every figure of a sweep uses the same seeds, so the same cell is the
    same noise at every w."""
    seed = pipe.seed_for(seed)
    prompts = [caption for caption in pipe.cfg.captions for _ in range(samples_per_prompt)]
    images = pipe.images(prompts, guidance_scale, seed=seed, show_progress=False)
    reports.image_grid(
        images,
        path,
        nrow=samples_per_prompt,
        row_labels=short_labels(pipe.cfg.class_names),
        title=f"{title or pipe.cfg.caption_template.format('{class}')} (w = {guidance_scale:g})\n"
        f"[{reports.GUIDANCE_CONVENTION}]",
    )
    reports.write_provenance(
        path,
        **pipe.provenance(
            seed=seed, samples=len(images), guidance_scale=guidance_scale, samples_per_prompt=samples_per_prompt
        ),
    )
    return path


def prompt_grid(
    pipe: TextToImage,
    prompts: Sequence[str],
    samples_per_prompt: int,
    guidance_scale: float,
    path: Path,
    *,
    seed: int | None = None,
    method: str = "cfg",
    params: dict | None = None,
    guide: torch.nn.Module | None = None,
    guide_name: str | None = None,
) -> Path:
    """Prompts (rows) x ``samples_per_prompt`` images (columns, seeds ``seed``, ``seed + 1``, ...) with one guidance
    method at one strength: what ``python -m t2i sample`` draws."""
    seed = pipe.seed_for(seed)
    images = pipe.images(
        [p for p in prompts for _ in range(samples_per_prompt)],
        guidance_scale,
        seed=seed,
        method=method,
        params=params,
        guide=guide,
    )
    heading = " | ".join(prompts) if len(prompts) == 1 else ""
    reports.image_grid(
        images,
        path,
        nrow=samples_per_prompt,
        row_labels=[_short(p) for p in prompts] if len(prompts) > 1 else (),
        title=f"{heading} (w={guidance_scale:g}{'' if method == 'cfg' else ', ' + method})\n"
        f"[{reports.GUIDANCE_CONVENTION}]",
    )
    reports.write_provenance(
        path,
        **pipe.provenance(
            seed=seed,
            samples=len(images),
            prompts=list(prompts),
            guidance_scale=guidance_scale,
            guidance_method=method,
            guidance_params=params or {},
            guide=guide_name,
            samples_per_prompt=samples_per_prompt,
        ),
    )
    return path


def _short(prompt: str, width: int = 40) -> str:
    return prompt if len(prompt) <= width else prompt[: width - 3] + "..."


def short_labels(names: Sequence[str], width: int = 36) -> list[str]:
    """Row labels that fit beside a grid: "A photo of a " dropped, long ones wrapped."""
    return [textwrap.fill(name.removeprefix("A photo of a "), width) for name in names]
