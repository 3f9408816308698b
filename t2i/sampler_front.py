"""``make samplers RUN=...``: how few network evaluations give the image the model would draw with 1,000 steps.

Every sampler of :data:`t2i.sampling.SAMPLERS` at every timestep spacing (Karras-sigma samplers place their own steps)
and step count of :data:`STEPS` samples the same N prompts from the same seeds at the run's sample guidance scale,
beside a reference drawn with 1,000 ancestral DDPM steps (every training timestep). Each point's network evaluations
per image are counted (:class:`t2i.sampling.Evaluations`: a CFG step is two, a Heun step two but the last), and its
FD and adherence are compared with the reference's *paired* (the seeds and the real reference images resampled
jointly, :mod:`t2i.stats`): a point "matches the reference" when both paired intervals contain 0. The summary names
the cheapest point that does, which is what each experiment's default sampler comes from.

It writes ``reports/<profile>/<experiment>/<run>/samplers/``: ``samplers.md/.csv/.tex``, ``front.png`` (FD and
adherence against evaluations per image, one curve per sampler and spacing) and ``summary.md``, with provenance; a
second call on the same checkpoint, settings and code redraws nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import evaluate, reports, stats
from .configs import SAMPLERS, SPACINGS
from .console import progress
from .pipeline import TextToImage
from .sampling import EDM_SIGMA_MAX, KARRAS, Evaluations, Sampler

STEPS = (4, 6, 8, 10, 15, 20, 30, 50)
SAMPLES_PER_PROMPT = 20  # N = 200 for ten classes: the 1,000-step reference alone is 400,000 evaluations
REFERENCE = Sampler("ddpm", 1000, "leading", None)  # ancestral DDPM at every training timestep
BOOTSTRAP = 200
CHEAP = 10  # the goal: a sampler at <= this many steps that matches the reference


def candidates(names: Sequence[str] | None = None, spacings: Sequence[str] = SPACINGS) -> list[tuple[str, str]]:
    """(sampler, spacing) pairs: every spacing for the samplers that use one, Karras sigmas for the others."""
    return [(name, "karras" if name in KARRAS else spacing) for name in (names or SAMPLERS)
            for spacing in (("trailing",) if name in KARRAS else spacings)]


def sampler_for(name: str, spacing: str, steps: int) -> Sampler:
    """Karras-sigma samplers space their sigmas from the schedule's top (diffusers reads the ends from "trailing"
    timesteps) clipped at EDM's sigma_max: the cosine schedule's own top, 20,291, wastes their steps (t2i.sampling).
    The others keep the schedule as trained."""
    if name in KARRAS:
        return Sampler(name, steps, "trailing", EDM_SIGMA_MAX)
    return Sampler(name, steps, spacing, None)


def run(pipe: TextToImage, judge, extractor, samples_per_prompt: int, out: Path, *,
        samplers: Sequence[str] | None = None, spacings: Sequence[str] = SPACINGS, steps: Sequence[int] = STEPS,
        guidance_scale: float | None = None, bootstrap: int = BOOTSTRAP) -> dict | None:
    """Measure the front and write the report; None when the report in ``out`` is up to date."""
    w = pipe.cfg.sample_guidance_scale if guidance_scale is None else float(guidance_scale)
    inputs = {"checkpoint_manifest_sha256": pipe.provenance()["checkpoint_manifest_sha256"], "weights": pipe.weights,
              "samples_per_prompt": samples_per_prompt, "samplers": list(samplers or SAMPLERS),
              "spacings": list(spacings), "steps": list(steps), "w": w, "bootstrap": bootstrap,
              "features": extractor.name, "reference": REFERENCE.describe()}
    if reports.skip_if_fresh(out, inputs):
        return None
    shared = evaluate.PairedRows(pipe.cfg, judge, [extractor], samples_per_prompt)
    n, floor = shared.n, shared.floors[extractor.name]

    def measure(sampler: Sampler) -> dict:
        counted = Evaluations()
        start = time.perf_counter()
        images = pipe.images(shared.prompts, w, sampler=sampler, evaluations=counted, show_progress=False)
        seconds = time.perf_counter() - start
        hits, features = shared.row(images)
        return {"sampler": sampler, "nfe": counted.per_image(n), "seconds": seconds / n, "hits": hits,
                "features": features[extractor.name]}

    print(f"the reference: {REFERENCE.describe()} on {n} images (the slow part)")
    reference = measure(REFERENCE)
    points = [measure(sampler_for(name, spacing, k))
              for name, spacing, k in progress([(a, b, k) for a, b in candidates(samplers, spacings) for k in steps],
                                               desc="samplers")]
    result = analyse(reference, points, floor, shared.spec.binary_adherence, bootstrap)
    result.update(n=n, w=w, floor=floor, inputs=inputs, features=extractor.name)
    write(result, pipe, Path(out))
    return result


def analyse(reference: dict, points: list[dict], floor: float, binary: bool, bootstrap: int) -> dict:
    """Each point's FD and adherence, and their paired differences to the reference, with intervals."""
    n, m = len(reference["hits"]), len(reference["features"].y)
    draws, refs = stats.resamples(n, m, bootstrap)
    ref_boot = np.array([reference["features"].fd(d, q) for d, q in zip(draws, refs)])
    ref_fd = reference["features"].fd()
    rows = [{"sampler": REFERENCE.name, "spacing": REFERENCE.spacing, "steps": REFERENCE.steps,
             "nfe": reference["nfe"], "fd": ref_fd, "fd_over_floor": ref_fd / floor,
             "adherence": float(reference["hits"].mean()), "s_per_image": reference["seconds"], "matches": "reference"}]
    for p in points:
        sampler, fd = p["sampler"], p["features"].fd()
        boot = np.array([p["features"].fd(d, q) for d, q in zip(draws, refs)]) - ref_boot
        d_fd, (lo, hi) = fd - ref_fd, stats.interval(fd - ref_fd, boot)
        if binary:
            d_adh, a_lo, a_hi = stats.newcombe_paired(p["hits"] > 0.5, reference["hits"] > 0.5)
        else:
            adh_boot = np.array([p["hits"][d].mean() - reference["hits"][d].mean() for d in draws])
            d_adh = float(p["hits"].mean() - reference["hits"].mean())
            a_lo, a_hi = stats.interval(d_adh, adh_boot)
        matches = lo <= 0 <= hi and a_lo <= 0 <= a_hi
        rows.append({"sampler": sampler.name, "spacing": "karras" if sampler.name in KARRAS else sampler.spacing,
                     "steps": sampler.steps, "nfe": p["nfe"], "fd": fd, "fd_over_floor": fd / floor, "d_fd": d_fd,
                     "d_fd_lo": lo, "d_fd_hi": hi, "adherence": float(p["hits"].mean()), "d_adherence": d_adh,
                     "d_adherence_lo": a_lo, "d_adherence_hi": a_hi, "s_per_image": p["seconds"],
                     "matches": "yes" if matches else "no"})
    matching = [r for r in rows[1:] if r["matches"] == "yes"]
    cheapest = min(matching, key=lambda r: (r["nfe"], r["steps"])) if matching else None
    return {"rows": rows, "cheapest": cheapest, "bootstrap": bootstrap}


def write(result: dict, pipe: TextToImage, out: Path) -> None:
    facts = pipe.provenance(inputs=result["inputs"], samples=result["n"], floor=result["floor"],
                            features=result["features"], guidance_scale=result["w"], reference=REFERENCE.describe())
    caption = (f"Samplers against {REFERENCE.describe()} on {pipe.cfg.experiment} ({pipe.checkpoint.name}, "
               f"{pipe.weights} weights), N = {result['n']} images per row from the same prompts and seeds, w = "
               f"{result['w']:g} ({reports.GUIDANCE_CONVENTION}). nfe: network evaluations per image, counted; fd: "
               f"Frechet distance in {result['features']} features to N real images (floor {result['floor']:.2f}); "
               f"d_*: paired difference to the reference with its {stats.LEVEL:.0%} interval (FD: bias-corrected "
               f"bootstrap over {result['bootstrap']} joint resamples of seeds and reference images; adherence: "
               "Newcombe's score interval); matches: both intervals contain 0. s_per_image: this run's wall time, "
               "on this machine (a ratio between rows, not a benchmark).")
    reports.publish(out, facts, tables={"samplers": (result["rows"], caption)},
                    figures={"front.png": lambda path: front(result, path)}, texts={"summary.md": summary(result)})


def summary(result: dict) -> str:
    rows, best, reference = result["rows"], result["cheapest"], result["rows"][0]
    lines = [f"# Samplers against the 1,000-step reference, N = {result['n']}", "",
             f"Reference: {REFERENCE.describe()}, {reference['nfe']:.0f} evaluations per image, FD "
             f"{reference['fd']:.2f} ({reference['fd_over_floor']:.2f}x the floor), adherence "
             f"{reference['adherence']:.3f}. A point matches it when the paired {stats.LEVEL:.0%} intervals of its FD "
             f"and adherence differences both contain 0 (w = {result['w']:g}).", ""]
    if best is None:
        lines.append(f"No sampler and step count matched the reference at N = {result['n']}.")
    else:
        lines.append(f"**Cheapest match: {best['sampler']} ({best['spacing']}) at {best['steps']} steps, "
                     f"{best['nfe']:.0f} evaluations per image** ({reference['nfe'] / best['nfe']:.0f}x fewer than the "
                     f"reference): FD {best['fd']:.2f} (difference {best['d_fd']:+.2f} [{best['d_fd_lo']:.2f}, "
                     f"{best['d_fd_hi']:.2f}]), adherence {best['adherence']:.3f} (difference {best['d_adherence']:+.3f} "
                     f"[{best['d_adherence_lo']:.3f}, {best['d_adherence_hi']:.3f}]).")
    goal = [r for r in rows[1:] if r["matches"] == "yes" and r["steps"] <= CHEAP]
    lines += ["", f"At <= {CHEAP} steps, {len(goal)} of {sum(r['steps'] <= CHEAP for r in rows[1:])} points match: "
              + (", ".join(f"{r['sampler']} ({r['spacing']}) x {r['steps']}" for r in goal) or "none") + "."]
    for name in dict.fromkeys((r["sampler"], r["spacing"]) for r in rows[1:]):
        mine = [r for r in rows[1:] if (r["sampler"], r["spacing"]) == name and r["matches"] == "yes"]
        first = min(mine, key=lambda r: r["steps"]) if mine else None
        lines.append(f"- {name[0]} ({name[1]}): " + (f"matches from {first['steps']} steps ({first['nfe']:.0f} "
                                                     "evaluations)" if first else "matches at no step count tried"))
    return "\n".join(lines) + "\n"


def front(result: dict, path: Path) -> Path:
    rows, reference = result["rows"][1:], result["rows"][0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    curves = list(dict.fromkeys((r["sampler"], r["spacing"]) for r in rows))
    styles = {"leading": "-", "trailing": "--", "linspace": ":", "karras": "-."}
    colours = {name: plt.cm.tab10(k % 10) for k, name in enumerate(dict.fromkeys(r["sampler"] for r in rows))}
    for name, spacing in curves:
        mine = sorted((r for r in rows if (r["sampler"], r["spacing"]) == (name, spacing)), key=lambda r: r["nfe"])
        for ax, key in ((left, "fd_over_floor"), (right, "adherence")):
            ax.plot([r["nfe"] for r in mine], [r[key] for r in mine], styles[spacing], marker="o", ms=3,
                    color=colours[name], label=f"{name} ({spacing})" if ax is left else None)
            hits = [r for r in mine if r["matches"] == "yes"]
            ax.scatter([r["nfe"] for r in hits], [r[key] for r in hits], s=40, facecolors="none",
                       edgecolors=colours[name])
    for ax, key, label in ((left, "fd_over_floor", "FD / real-vs-real floor"), (right, "adherence", "adherence")):
        ax.axhline(reference[key], color="black", lw=1.5, label=f"reference ({reference['nfe']:.0f} evaluations)")
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations per image (counted)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    top = max(2.0, float(np.quantile([r["fd_over_floor"] for r in rows], 0.85)) * 1.1)
    left.set_ylim(0, top)  # the few-step outliers do not squeeze the rest
    left.legend(fontsize=6, ncol=2)
    right.legend(fontsize=7)
    fig.suptitle(f"Samplers vs {REFERENCE.describe()}, N = {result['n']}, w = {result['w']:g} (circled: matches the "
                 "reference within the paired intervals)", fontsize=10)
    return reports.save(fig, path)
