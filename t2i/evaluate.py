"""Prompt adherence and distribution metrics of a trained run, across guidance scales.

What a dataset's prompts are and how a judge's predictions are scored against them belongs to the dataset
(:class:`t2i.data.DatasetSpec`: class captions scored by accuracy, CelebA attribute captions scored by the claims the
judge confirms); this module runs the sweeps and writes their reports, the same way for every dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import data, hub, metrics, paths, reports, stats
from .console import progress
from .judges import Judge
from .pipeline import TextToImage


def adherence_sweep(
    pipe: TextToImage, judge: Judge, conditions: torch.Tensor, guidance_scales: Sequence[float], seed: int | None = None
) -> list[dict]:
    """For each w, one image per condition (its prompt from the dataset), scored by the judge. Every w uses the same
    seeds (paired samples), so differences between rows come from w, not from the noise."""
    spec, seed = data.spec(pipe.cfg), pipe.seed_for(seed)
    prompts = spec.prompts(pipe.cfg, conditions)
    rows = []
    for w in progress(guidance_scales, desc="adherence sweep"):
        scores = spec.adherence(judge.predict(pipe.images(prompts, w, seed=seed, show_progress=False)), conditions)
        rows.append({"guidance_scale": float(w), **scores, "samples": len(prompts)})
    return rows


def real_adherence(cfg, judge: Judge, limit: int | None = None) -> tuple[float, int]:
    """The judge's adherence on real held-out images (``judge_test``, the first ``limit`` if given) against their own
    conditions, and how many images that was: the ceiling a generator can reach under this judge (for class
    datasets, its test accuracy). Never images the judge trained on (for CIFAR-10 and WikiArt, judge_train is the
    diffusion model's own training split); rounded to 8 bits, as generated images are before they are judged."""
    images, conditions = data.load_images(cfg, "judge_test", limit=limit, resolution=judge.cfg.resolution)
    predictions = judge.predict(metrics.to_uint8(images).float() / 255)
    return data.spec(cfg).adherence(predictions, conditions)["adherence"], len(images)


def write_adherence_report(
    rows: list[dict], pipe: TextToImage, judge: Judge, path: Path, *, samples_per_prompt: int, real: float
) -> str:
    """``path`` .md/.csv/.tex table, ``path.png`` plot (real images and chance as dashed lines), provenance; returns
    the markdown."""
    spec = data.spec(pipe.cfg)
    chance = spec.chance(pipe.cfg)
    caption = (
        f"Prompt adherence: {spec.adherence_meaning(pipe.cfg)}; {samples_per_prompt} images per prompt, "
        f"{rows[0]['samples']} per row, seed {pipe.cfg.seed}, {pipe.sampling.describe()}. "
        f"The same judge scores {real:.1%} on real held-out images (judge: {judge.cfg.arch}). "
        f"Guidance: {reports.GUIDANCE_CONVENTION}."
    )
    table = reports.write_table(rows, path, caption=caption)
    plot = reports.metric_vs_guidance(
        rows,
        "adherence",
        Path(path).with_suffix(".png"),
        chance=chance,
        reference=real,
        reference_label="real images",
        title=f"{pipe.cfg.experiment}: prompt adherence vs w",
    )
    for artefact in (Path(path).with_suffix(".md"), plot):
        reports.write_provenance(
            artefact,
            **pipe.provenance(samples=rows[0]["samples"], real_adherence=real, judge_test_accuracy=judge.test_accuracy),
        )
    print(table)
    return table


FEATURES = ("auto", "inception", "dinov2", "judge", "random")  # the --features choices


def make_extractor(name: str, judge: Judge, device: torch.device | str = "cpu", dinov2: str = metrics.DINOV2_MODEL):
    """``inception`` (pytorch-fid's network; needs its weights staged), ``dinov2`` (FD_DINOv2's network, staged by
    `make assets`), ``judge`` (the judge's penultimate layer), ``random`` (a fixed random CNN, independent of the
    judge: :class:`t2i.metrics.RandomFeatures`), or ``auto``: Inception when its weights are on disk, else the judge."""
    if name == "auto":
        name = "inception" if metrics.inception_weights_path().exists() else "judge"
    if name == "inception":
        return metrics.InceptionExtractor(device)
    if name == "dinov2":
        return metrics.DinoV2Extractor(dinov2, device)
    if name == "judge":
        return metrics.JudgeExtractor(judge)
    if name == "random":
        return metrics.RandomFeatures()
    raise ValueError(f"unknown feature extractor {name!r}; known: {', '.join(FEATURES)}")


def staged_extractors(judge: Judge, device: torch.device | str = "cpu", dinov2: str = metrics.DINOV2_MODEL) -> list:
    """Every feature space this machine can measure in: the judge's and a fixed random CNN's always (the second shares
    nothing with the judge that scores adherence), Inception's and DINOv2's where staged (a verdict that has the same
    sign in each is the stronger for it). The first is the primary one (``auto``)."""
    found = [make_extractor("auto", judge, device)]
    if not isinstance(found[0], metrics.JudgeExtractor):
        found.append(metrics.JudgeExtractor(judge))
    found.append(metrics.RandomFeatures())
    if Path(dinov2).exists() or hub.cached(dinov2):
        found.append(metrics.DinoV2Extractor(dinov2, device))
    return found


def make_clip_scorer(name: str, device: torch.device | str = "cpu") -> "metrics.ClipScorer | None":
    """``auto``: the CLIP-score model (:data:`t2i.assets.CLIP_SCORE_MODEL`) when `make assets` staged it, saying so
    when it did not; ``""``: no CLIP score; anything else: that model (an error if it is not there)."""
    from . import assets

    if name == "auto":
        if assets.missing(None, clip_model=assets.CLIP_SCORE_MODEL):
            print(f"no CLIP score: {assets.CLIP_SCORE_MODEL} is not staged (`make assets` stages it)")
            return None
        name = assets.CLIP_SCORE_MODEL
    return metrics.ClipScorer(name, device) if name else None


def reference_set(cfg, extractor, n: int, skip: int = 0) -> tuple["metrics.Features", torch.Tensor, torch.Tensor]:
    """The features of the first ``m`` real training images (cached, keyed by their content, so whatever split or
    subset the caller passes, a stale cache can never be reused), and the next ``m`` images with their conditions:
    the real-vs-real floor. ``m`` is ``n``, or half the training images where there are fewer than ``2 n`` (the
    demo's 1,257 digits hold N = 628): the reference's finite-sample bias is then shared by every row, so paired
    differences stay valid, while FD / floor is not comparable with a report whose reference has N images.
    ``skip``: start past the first ``skip`` images, so a replication is judged against real images that no row of
    the report it replicates was judged against."""
    real_images, real_conditions = data.load_images(cfg, "train", limit=skip + 2 * n)
    real_images, real_conditions = real_images[skip:], real_conditions[skip:]
    m = min(n, len(real_images) // 2)
    if m < 2:
        raise ValueError(
            f"the real reference needs at least 4 real training images, the dataset has "
            f"{len(real_images)}" + (f" past the {skip} skipped" if skip else "")
        )
    if m < n:
        print(
            f"reference: {m} real training images against N = {n} generated ones (the real-vs-real floor needs 2 x "
            f"N = {2 * n}, the dataset has {len(real_images)}); paired differences stay valid, FD / floor is not "
            f"comparable with a report made at N <= {m}"
        )
    reference_images = metrics.to_uint8(real_images[:m])
    key = {
        "dataset": cfg.dataset,
        "resolution": cfg.resolution,
        "n": m,
        "images_sha256": hashlib.sha256(reference_images.numpy().tobytes()).hexdigest(),
    }
    reference = metrics.cached_features(extractor, lambda: reference_images, key)
    return reference, real_images[m : 2 * m], real_conditions[m : 2 * m]


class PairedRows:
    """What every row of a paired comparison shares: the sweep's N prompts (each drawn from the same seed in every
    row), and per feature space the reference (the first N real training images, with its Gram matrix) and the
    real-vs-real floor. :meth:`row` scores one row's images: each image's adherence and its features against the
    reference (:class:`t2i.stats.FeatureSet`). ``skip``: the real images start past that many (a replication's
    reference, :func:`reference_set`)."""

    def __init__(self, cfg, judge: Judge, extractors: list, samples_per_prompt: int, skip: int = 0):
        self.spec, self.judge, self.extractors = data.spec(cfg), judge, extractors
        self.conditions = self.spec.sweep_conditions(cfg, samples_per_prompt, None)
        self.prompts, self.n = self.spec.prompts(cfg, self.conditions), len(self.conditions)
        self.reference, self.floors = floors(cfg, extractors, self.n, skip)
        self.reference_n = len(next(iter(self.reference.values())).features)
        self.grams = {s: r.features @ r.features.T for s, r in self.reference.items()}

    def row(self, images: torch.Tensor) -> tuple[np.ndarray, dict[str, stats.FeatureSet]]:
        uint8 = metrics.to_uint8(images)
        hits = self.spec.image_adherence(self.judge.predict(uint8.float() / 255), self.conditions)
        return hits.numpy().astype(np.float64), {
            e.name: stats.FeatureSet(e(uint8).features, self.reference[e.name].features, self.grams[e.name])
            for e in self.extractors
        }


def floors(cfg, extractors: list, n: int, skip: int = 0) -> tuple[dict, dict[str, float]]:
    """For each feature space: the features of the first ``n`` real training images (the reference of a paired
    comparison) and the real-vs-real floor at this N (the next ``n`` against them)."""
    reference, floor = {}, {}
    for extractor in extractors:
        reference[extractor.name], second_set, _ = reference_set(cfg, extractor, n, skip)
        floor[extractor.name] = metrics.frechet_distance(
            extractor(metrics.to_uint8(second_set)), reference[extractor.name]
        )
    return reference, floor


def sweep(
    pipe: TextToImage,
    judge: Judge,
    extractor,
    guidance_scales: Sequence[float],
    samples_per_prompt: int,
    *,
    prompts: int | None = None,
    clip: "metrics.ClipScorer | None" = None,
    seed: int | None = None,
    method: str = "cfg",
    params: dict | None = None,
    guide: torch.nn.Module | None = None,
) -> list[dict]:
    """A Table 1-style sweep: FID, KID, IS, judge adherence and (optionally) CLIP score per guidance scale.

    The generated images follow the dataset's sweep conditions (every class, or CelebA attribute sets of held-out
    faces, ``samples_per_prompt`` each): N of them per row, against the first N real training images (their features
    are cached, keyed by the images' content). The first row, ``real``, compares the next N real images with those:
    the floor each metric can reach at this N; its adherence is the judge's on up to N held-out (``judge_test``)
    images, which neither the judge nor the diffusion model trained on. ``method``, ``params`` and ``guide``: the
    guidance method of every row (:mod:`t2i.guidance`), its parameters and, for autoguidance, the weaker UNet.
    """
    cfg, spec = pipe.cfg, data.spec(pipe.cfg)
    seed = pipe.seed_for(seed)
    conditions = spec.sweep_conditions(cfg, samples_per_prompt, prompts)
    n = len(conditions)
    reference, real_images, real_conditions = reference_set(cfg, extractor, n)

    def row(name, images: torch.Tensor, row_conditions: torch.Tensor) -> dict:
        uint8 = metrics.to_uint8(images)
        features = extractor(uint8)
        kid, kid_std = metrics.kernel_inception_distance(features, reference)
        is_mean, is_std = metrics.inception_score(features)
        adherence = spec.adherence(judge.predict(uint8.float() / 255), row_conditions)["adherence"]
        return {
            "guidance_scale": name,
            "fid": metrics.frechet_distance(features, reference),
            "kid": kid,
            "kid_std": kid_std,
            "is": is_mean,
            "is_std": is_std,
            "adherence": adherence,
            "clip_score": clip(images, spec.prompts(cfg, row_conditions)) if clip is not None else "n/a",
            "samples": len(images),
        }

    rows = [row("real", real_images, real_conditions)]
    rows[0]["adherence"] = real_adherence(cfg, judge, limit=n)[0]
    prompt_texts = spec.prompts(cfg, conditions)
    for w in progress(guidance_scales, desc="guidance sweep"):
        rows.append(
            row(
                float(w),
                pipe.images(prompt_texts, w, seed=seed, show_progress=False, method=method, params=params, guide=guide),
                conditions,
            )
        )
    return rows


def write_sweep_report(rows: list[dict], pipe: TextToImage, extractor, directory: Path, seed: int | None = None) -> str:
    """``sweep`` .md/.csv/.tex, one plot per metric against w (real-vs-real as a dashed line), the FID-vs-adherence
    trade-off, and provenance for each (``seed``: the one the images were drawn from, when not the run's). Returns
    the markdown table."""
    directory = Path(directory)
    n = rows[0]["samples"]
    caption = (
        f"Guidance sweep of {pipe.cfg.experiment} ({pipe.weights} weights, "
        f"{pipe.checkpoint.name if pipe.checkpoint else 'in memory'}, {pipe.sampling.describe()}), "
        f"N = {n} generated images per row against N real reference images; 'real' = a disjoint real set "
        f"(the floor at this N). Features: {extractor.name} (FID/KID/IS are only comparable within one "
        f"feature space). Adherence: {data.spec(pipe.cfg).adherence_meaning(pipe.cfg)}. "
        f"Guidance: {reports.GUIDANCE_CONVENTION}."
    )
    table = reports.write_table(rows, directory / paths.SWEEP, caption=caption)
    artefacts = [directory / f"{paths.SWEEP}.md"]
    generated = [r for r in rows if r["guidance_scale"] != "real"]
    real = rows[0]
    for metric in ("fid", "kid", "is", "adherence") + (("clip_score",) if real["clip_score"] != "n/a" else ()):
        artefacts.append(
            reports.metric_vs_guidance(
                generated,
                metric,
                directory / f"{metric}_vs_w.png",
                reference=real[metric],
                title=f"{metric} vs w ({extractor.name}, N={n})",
            )
        )
    artefacts.append(
        reports.tradeoff(
            generated,
            "adherence",
            "fid",
            directory / "fid_vs_adherence.png",
            title=f"FID ({extractor.name}) vs adherence, N={n}",
        )
    )
    for artefact in artefacts:
        reports.write_provenance(
            artefact, **pipe.provenance(samples=n, features=extractor.name, seed=pipe.seed_for(seed))
        )
    print(table)
    return table


DAMAGES = {"noise": (0.05, 0.1, 0.2, 0.4), "blur": (0.5, 1.0, 1.5, 2.0), "classes dropped": (0.3, 0.6, 0.9)}


def damage_check(extractor, images: torch.Tensor, conditions: torch.Tensor, seed: int = 0) -> dict:
    """Does a feature space see known damage? The second half of ``images`` (real, in [0, 1]) against the first, with
    Gaussian noise of growing std, Gaussian blur of growing sigma, and a growing share of the conditions dropped
    (the images of the dropped ones replaced by the kept ones': less diversity, same quality): KID in the space must
    grow with each. Returns ``{"rows": [...], "orders": bool}`` (rows: damage, level, kid, fd)."""
    from torchvision.transforms.functional import gaussian_blur

    half = len(images) // 2
    reference = extractor(metrics.to_uint8(images[:half]))
    probe, kept_conditions = images[half : 2 * half], conditions[half : 2 * half]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(torch.unique(kept_conditions)), generator=g)
    values = torch.unique(kept_conditions)[order]

    def damaged(kind: str, level: float) -> torch.Tensor:
        if kind == "noise":
            return (probe + level * torch.randn(probe.shape, generator=g)).clamp(0, 1)
        if kind == "blur":
            return gaussian_blur(probe, 5, level)
        dropped = values[: int(round(level * len(values)))]
        kept = probe[~torch.isin(kept_conditions, dropped)]
        return kept[torch.arange(len(probe)) % len(kept)]

    rows = [{"damage": "none", "level": 0.0, **_distances(extractor, probe, reference)}]
    orders = True
    for kind, levels in DAMAGES.items():
        mine = [
            {"damage": kind, "level": level, **_distances(extractor, damaged(kind, level), reference)}
            for level in levels
        ]
        kids = [rows[0]["kid"]] + [r["kid"] for r in mine]
        orders &= all(a < b for a, b in zip(kids, kids[1:]))
        rows += mine
    return {"rows": rows, "orders": bool(orders), "n": half}


def _distances(extractor, images: torch.Tensor, reference: "metrics.Features") -> dict:
    features = extractor(metrics.to_uint8(images))
    return {
        "kid": metrics.kernel_inception_distance(features, reference)[0],
        "fd": metrics.frechet_distance(features, reference),
    }
