"""``make guidance RUN=...``: every guidance method of :mod:`t2i.guidance` at several strengths, on one fidelity /
adherence front, with bootstrap intervals, on the same prompts and seeds.

For each method and strength it samples the run's sweep conditions (``samples_per_prompt`` per prompt, the same
seeds for every method, so the rows are paired), and measures:

- the Frechet distance (FD) of the generated images' features to N real training images, in the extractor's
  feature space (the judge's penultimate layer offline, Inception where its weights are staged), beside the
  real-vs-real floor at the same N;
- the judge's adherence, beside its accuracy on held-out real images;
- 90% bootstrap intervals of both, resampling the N generated images (the same resamples for every row).

It writes ``reports/<profile>/<experiment>/<run>/guidance/``: ``guidance.md/.csv/.tex`` (one row per method and
strength), ``front.png`` (adherence against FD, one curve per method), ``summary.md`` (which methods reach a point
that plain CFG's front does not, beyond the intervals) and provenance.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import checkpoints, data, evaluate, guidance, judges, metrics, paths, reports
from .console import progress
from .pipeline import TextToImage

STRENGTHS = (1.5, 2.0, 3.0, 5.0)  # w of every method (w = 1, the conditional model, is the same for all)
BOOTSTRAP = 200  # resamples of the N generated images, for the intervals
LEVEL = 0.90  # interval coverage


def applicable(pipe: TextToImage, guide: torch.nn.Module | None) -> list[str]:
    """The methods this run can use: autoguidance needs a weaker model; dynamic thresholding pixel space."""
    return [m for m in guidance.METHODS if (m != "autoguidance" or guide is not None)
            and (m != "dynamic-thresholding" or pipe.codec is None)]


def load_guide(run_dir: Path, checkpoint: str | None = None, guide_run: Path | None = None) -> torch.nn.Module | None:
    """Autoguidance's weaker model: an earlier checkpoint of the run (``checkpoint``, e.g. epoch-0010), or the
    latest of another run trained on the same data (``guide_run``); None if neither is given."""
    if guide_run is not None:
        return TextToImage.from_run(guide_run).unet
    if checkpoint is not None:
        path = checkpoints.resolve(run_dir, checkpoint)
        return checkpoints.load_unet(path, ema=(path / "ema").is_dir())
    return None


def run(pipe: TextToImage, judge, extractor, samples_per_prompt: int, out: Path, *,
        methods: Sequence[str] | None = None, strengths: Sequence[float] = STRENGTHS,
        guide: torch.nn.Module | None = None, guide_name: str | None = None, seed: int | None = None) -> list[dict]:
    """Measure every method at every strength and write the report; returns the rows."""
    cfg, spec = pipe.cfg, data.spec(pipe.cfg)
    methods = list(methods or applicable(pipe, guide))
    conditions = spec.sweep_conditions(cfg, samples_per_prompt, None)
    prompts, n = spec.prompts(cfg, conditions), len(conditions)
    reference, real_images, _ = evaluate.reference_set(cfg, extractor, n)
    floor = metrics.frechet_distance(extractor(metrics.to_uint8(real_images)), reference)
    real_adherence, _ = evaluate.real_adherence(cfg, judge, limit=n)
    resamples = np.random.default_rng(0).integers(0, n, (BOOTSTRAP, n))
    rows = []
    for method, w in progress([(m, w) for m in methods for w in strengths], desc="guidance methods"):
        images = pipe.images(prompts, w, seed=seed, method=method, guide=guide, show_progress=False)
        uint8 = metrics.to_uint8(images)
        features = extractor(uint8)
        predicted = judge.predict(uint8.float() / 255)
        adherence = spec.adherence(predicted, conditions)["adherence"]
        # per-image hits for the intervals (class prompts; CelebA's attribute sets have no per-image score here)
        right = (predicted == conditions).float().numpy() if conditions.ndim == 1 else None
        fd = metrics.frechet_distance(features, reference)
        fds = metrics.bootstrap_frechet_distances(features, reference, resamples)
        ads = [float(right[i].mean()) for i in resamples] if right is not None else [adherence] * BOOTSTRAP
        lo, hi = (1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100
        rows.append({"method": method, "w": float(w), "params": _params(method, guide_name),
                     "fd": fd, "fd_lo": float(np.nanpercentile(fds, lo)), "fd_hi": float(np.nanpercentile(fds, hi)),
                     "adherence": adherence, "adherence_lo": float(np.percentile(ads, lo)),
                     "adherence_hi": float(np.percentile(ads, hi)), "samples": n})
    write(rows, pipe, extractor, out, floor=floor, real_adherence=real_adherence, n=n)
    return rows


def _params(method: str, guide_name: str | None) -> str:
    given = guidance.parameters(method)
    text = ", ".join(f"{k}={v:g}" for k, v in given.items())
    return f"guide={guide_name}" if method == "autoguidance" else text


def dominated(rows: list[dict], by: dict) -> list[dict]:
    """The CFG rows that ``by`` beats beyond the intervals: lower FD and higher adherence, each interval clear of the
    other's."""
    return [r for r in rows if r["method"] == "cfg" and by["fd_hi"] < r["fd_lo"]
            and by["adherence_lo"] > r["adherence_hi"]]


def write(rows: list[dict], pipe: TextToImage, extractor, out: Path, *, floor: float, real_adherence: float,
          n: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    caption = (f"Guidance methods on {pipe.cfg.experiment} ({pipe.checkpoint.name}, {pipe.weights} weights, "
               f"{pipe.sampler} x {pipe.num_inference_steps} steps), N = {n} generated images per row with the same "
               f"prompts and seeds for every row. fd: Frechet distance in {extractor.name} features to N real images "
               f"(real-vs-real floor {floor:.2f}); adherence: the judge's (held-out real images: {real_adherence:.3f}); "
               f"_lo/_hi: {LEVEL:.0%} bootstrap interval over {BOOTSTRAP} resamples of the generated images (the same "
               "resamples for every row; an FD interval lies above its point estimate, since a resampled set repeats "
               "images and FD grows with repetition, so compare intervals with intervals). "
               f"w: every method's strength on the thesis's scale ({reports.GUIDANCE_CONVENTION}).")
    reports.write_table(rows, out / "guidance", caption=caption)
    facts = pipe.provenance(samples=n, floor=floor, real_adherence=real_adherence, extractor=extractor.name,
                            methods=sorted({r["method"] for r in rows}), bootstrap=BOOTSTRAP)
    reports.write_provenance(out / "guidance.md", **facts)
    front(rows, out / "front.png", floor)
    reports.write_provenance(out / "front.png", **facts)
    (out / "summary.md").write_text(summary(rows, floor))
    reports.write_provenance(out / "summary.md", **facts)


def front(rows: list[dict], path: Path, floor: float) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        line, = ax.plot([r["fd"] for r in mine], [r["adherence"] for r in mine], marker="o", label=method,
                        lw=2.5 if method == "cfg" else 1.2)
        # the intervals as segments: the FD interval need not contain the point (see the table's caption)
        ax.hlines([r["adherence"] for r in mine], [r["fd_lo"] for r in mine], [r["fd_hi"] for r in mine],
                  color=line.get_color(), alpha=0.4)
        ax.vlines([r["fd"] for r in mine], [r["adherence_lo"] for r in mine], [r["adherence_hi"] for r in mine],
                  color=line.get_color(), alpha=0.4)
        for r in mine:
            ax.annotate(f"{r['w']:g}", (r["fd"], r["adherence"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.axvline(floor, ls="--", color="gray", label=f"real-vs-real floor ({floor:.1f})")
    ax.set_xlabel("Frechet distance to real images (lower is better)")
    ax.set_ylabel("prompt adherence (judge)")
    ax.set_title("Guidance methods: fidelity vs adherence (labels: w)")
    ax.legend(fontsize=8)
    return reports.save(fig, path)


def summary(rows: list[dict], floor: float) -> str:
    lines = ["# Guidance methods against plain CFG", "",
             f"A point beats CFG when its whole {LEVEL:.0%} interval has a lower FD and a higher adherence than a CFG "
             f"point's interval (same prompts, seeds and N). Real-vs-real FD floor: {floor:.2f}.", ""]
    for method in dict.fromkeys(r["method"] for r in rows if r["method"] != "cfg"):
        wins = [(r, dominated(rows, r)) for r in rows if r["method"] == method]
        wins = [(r, d) for r, d in wins if d]
        if not wins:
            lines.append(f"- **{method}**: no point beats a CFG point beyond the intervals.")
            continue
        shown = "; ".join(f"w={r['w']:g} (FD {r['fd']:.1f}, adherence {r['adherence']:.3f}) beats CFG at w="
                          + ", ".join(f"{d['w']:g}" for d in beaten) for r, beaten in wins)
        lines.append(f"- **{method}**: {shown}.")
    return "\n".join(lines) + "\n"


def for_run(run_dir: Path, samples_per_prompt: int = 50, *, methods: Sequence[str] | None = None,
            strengths: Sequence[float] = STRENGTHS, guide_checkpoint: str | None = None,
            guide_run: Path | None = None, features: str = "auto") -> tuple[list[dict], Path]:
    """The comparison of one trained run, written to ``reports/<profile>/<experiment>/<run>/guidance/``."""
    pipe = TextToImage.from_run(run_dir)
    judge = judges.for_config(pipe.cfg)
    extractor = evaluate.make_extractor(features, judge, pipe.device)
    guide = load_guide(Path(run_dir), guide_checkpoint, guide_run)
    name = str(guide_run) if guide_run else guide_checkpoint
    out = paths.eval_dir(Path(run_dir)).parent / "guidance"
    rows = run(pipe, judge, extractor, samples_per_prompt, out, methods=methods, strengths=strengths, guide=guide,
               guide_name=name)
    return rows, out
