"""``make samplers RUN=...``: how few network evaluations give the image the model would draw with 1,000 steps, at every
guidance strength the reports show.

Every sampler of :data:`t2i.sampling.SAMPLERS` at each timestep spacing of :data:`SPACINGS` (Karras-sigma samplers place
their own steps) and step count of :data:`STEPS` samples the same N prompts from the same seeds at each guidance
strength of :data:`GUIDANCE_SCALES`, beside a reference drawn at that strength with 1,000 ancestral DDPM steps (every
training timestep). Each point's network evaluations per image are counted (:class:`t2i.sampling.Evaluations`: a CFG
step is two, w = 1 one, a Heun step two but the last), and its FD and adherence are compared with the reference's
*paired* (the seeds and the real reference images resampled jointly, :mod:`t2i.stats`): a point "matches the reference"
when both paired intervals contain 0. A sampler chosen at one strength can lose adherence at another, so the summary
names the cheapest sampler and step count that matches **at every strength measured**: each experiment's default sampler
comes from it.

It writes ``reports/<profile>/<experiment>/<run>/samplers/``: ``samplers.md/.csv/.tex``, ``front.png`` (FD and adherence
against evaluations per image, one curve per sampler and spacing, one row per strength) and ``summary.md``, with
provenance; a second call on the same checkpoint, settings and code redraws nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import reports, stats
from .configs import SAMPLERS
from .console import progress
from .pipeline import TextToImage
from .sampling import EDM_SIGMA_MAX, KARRAS, STOCHASTIC, Sampler
from .study import Scored, Study

# The default grid: 81 minutes on the project's 2 CPU cores for the demo (alone on the machine), four 1,000-step
# references and 48 points at each strength. "linspace" spacing is left out by default (--spacings adds it; DDIM
# refuses it, t2i.sampling).
STEPS = (6, 10, 20)
SPACINGS = ("leading", "trailing")
GUIDANCE_SCALES = (1.0, 3.0, 10.0, 20.0)  # conditional, the demo's sample strength, strong, and the demo's strongest
SAMPLES_PER_PROMPT = 20  # N = 200 for ten classes: each guided 1,000-step reference is 400,000 evaluations
REFERENCE = Sampler("ddpm", 1000, "leading", None)  # ancestral DDPM at every training timestep
BOOTSTRAP = 200


def candidates(names: Sequence[str] | None = None, spacings: Sequence[str] = SPACINGS) -> list[tuple[str, str]]:
    """(sampler, spacing) pairs: every spacing for the samplers that use one (but DDIM's refused "linspace"), Karras
    sigmas for the others."""
    return [
        (name, "karras" if name in KARRAS else spacing)
        for name in (names or SAMPLERS)
        for spacing in (("trailing",) if name in KARRAS else spacings)
        if not (name == "ddim" and spacing == "linspace")
    ]


def sampler_for(name: str, spacing: str, steps: int) -> Sampler:
    """Karras-sigma samplers space their sigmas from the schedule's top (diffusers reads the ends from "trailing"
    timesteps) clipped at EDM's sigma_max: the cosine schedule's own top, 20,291, wastes their steps (t2i.sampling).
    The others keep the schedule as trained."""
    if name in KARRAS:
        return Sampler(name, steps, "trailing", EDM_SIGMA_MAX)
    return Sampler(name, steps, spacing, None)


@dataclass
class Result:
    """What `make samplers` measured: a row per point and strength (the table), the cheapest match everywhere."""

    rows: list[dict]
    cheapest: dict | None
    n: int
    ws: list[float]
    floor: float
    features: str
    bootstrap: int


def run(
    pipe: TextToImage,
    judge,
    extractor,
    samples_per_prompt: int,
    out: Path,
    *,
    samplers: Sequence[str] | None = None,
    spacings: Sequence[str] = SPACINGS,
    steps: Sequence[int] = STEPS,
    guidance_scales: Sequence[float] = GUIDANCE_SCALES,
    bootstrap: int = BOOTSTRAP,
) -> Result | None:
    """Measure the front at every strength and write the report; None when the report in ``out`` is up to date."""
    ws = sorted(float(w) for w in guidance_scales)
    study = Study(
        pipe,
        judge,
        [extractor],
        out,
        samples_per_prompt,
        samplers=list(samplers or SAMPLERS),
        spacings=list(spacings),
        steps=list(steps),
        w=ws,
        bootstrap=bootstrap,
        reference=REFERENCE.describe(),
    )
    if study.up_to_date():
        return None
    n, floor = study.shared().n, study.shared().floors[extractor.name]
    grid = [sampler_for(name, spacing, k) for name, spacing in candidates(samplers, spacings) for k in steps]
    rows = []
    for w in ws:
        print(f"w = {w:g}: the reference, {REFERENCE.describe()} on {n} images (the slow part)")
        reference = study.draw(w, sampler=REFERENCE)
        points = [
            (sampler, study.draw(w, sampler=sampler)) for sampler in progress(grid, desc=f"samplers at w = {w:g}")
        ]
        rows += [
            {"w": w, **row}
            for row in analyse(
                reference, points, extractor.name, floor, study.shared().spec.binary_adherence, bootstrap
            )
        ]
    result = Result(rows, cheapest(rows), n, ws, floor, extractor.name, bootstrap)
    write(result, study)
    return result


def analyse(
    reference: Scored, points: list[tuple[Sampler, Scored]], space: str, floor: float, binary: bool, bootstrap: int
) -> list[dict]:
    """Each point's FD and adherence, and their paired differences to the reference, with intervals (one strength)."""
    ref = reference.features[space]
    n, m = len(reference.hits), len(ref.y)
    draws, refs = stats.resamples(n, m, bootstrap)
    ref_boot = np.array([ref.fd(d, q) for d, q in zip(draws, refs)])
    ref_fd = ref.fd()
    rows = [
        {
            "sampler": REFERENCE.name,
            "spacing": REFERENCE.spacing,
            "steps": REFERENCE.steps,
            "nfe": reference.evaluations,
            "fd": ref_fd,
            "fd_over_floor": ref_fd / floor,
            "adherence": float(reference.hits.mean()),
            "s_per_image": reference.seconds,
            "matches": "reference",
        }
    ]
    for sampler, p in points:
        features = p.features[space]
        fd = features.fd()
        boot = np.array([features.fd(d, q) for d, q in zip(draws, refs)]) - ref_boot
        d_fd, (lo, hi) = fd - ref_fd, stats.interval(fd - ref_fd, boot)
        if binary:
            d_adh, a_lo, a_hi = stats.newcombe_paired(p.hits > 0.5, reference.hits > 0.5)
        else:
            adh_boot = np.array([p.hits[d].mean() - reference.hits[d].mean() for d in draws])
            d_adh = float(p.hits.mean() - reference.hits.mean())
            a_lo, a_hi = stats.interval(d_adh, adh_boot)
        matches = lo <= 0 <= hi and a_lo <= 0 <= a_hi
        rows.append(
            {
                "sampler": sampler.name,
                "spacing": "karras" if sampler.name in KARRAS else sampler.spacing,
                "steps": sampler.steps,
                "nfe": p.evaluations,
                "fd": fd,
                "fd_over_floor": fd / floor,
                "d_fd": d_fd,
                "d_fd_lo": lo,
                "d_fd_hi": hi,
                "adherence": float(p.hits.mean()),
                "d_adherence": d_adh,
                "d_adherence_lo": a_lo,
                "d_adherence_hi": a_hi,
                "s_per_image": p.seconds,
                "matches": "yes" if matches else "no",
            }
        )
    return rows


def _key(row: dict) -> tuple:
    return row["sampler"], row["spacing"], row["steps"]


def cheapest(rows: list[dict]) -> dict | None:
    """The point (sampler, spacing, steps) that matches the reference at every strength measured, with the fewest
    steps and then evaluations; its row at the strongest guidance (None if no point matches everywhere)."""
    ws = sorted({r["w"] for r in rows})
    points = [r for r in rows if r["matches"] != "reference"]
    everywhere = {
        k
        for k in map(_key, points)
        if all(r["matches"] == "yes" for r in points if _key(r) == k)
        and len([r for r in points if _key(r) == k]) == len(ws)
    }
    strongest = [r for r in points if _key(r) in everywhere and r["w"] == ws[-1]]
    return min(strongest, key=lambda r: (r["steps"], r["nfe"])) if strongest else None


def closest(rows: list[dict]) -> list[dict]:
    """Where no point matches everywhere, what a user picks instead: the point that matches at the most strengths,
    then with the fewest steps and evaluations; its matching rows (empty if nothing matches anywhere)."""
    matched: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["matches"] == "yes":
            matched.setdefault(_key(r), []).append(r)
    return max(
        matched.values(), key=lambda mine: (len(mine), -mine[0]["steps"], -sum(r["nfe"] for r in mine)), default=[]
    )


def write(result: Result, study: Study) -> None:
    pipe = study.pipe
    caption = (
        f"Samplers against {REFERENCE.describe()} on {pipe.cfg.experiment} ({pipe.checkpoint.name}, "
        f"{pipe.weights} weights), N = {result.n} images per row from the same prompts and seeds, at each "
        f"w of {', '.join(f'{w:g}' for w in result.ws)} ({reports.GUIDANCE_CONVENTION}), each against its "
        "own reference. nfe: network evaluations per image, counted; fd: "
        f"Frechet distance in {result.features} features to N real images (floor {result.floor:.2f}); "
        f"d_*: paired difference to the reference with its {stats.LEVEL:.0%} interval (FD: basic paired "
        f"bootstrap over {result.bootstrap} joint resamples of seeds and reference images; adherence: "
        "Newcombe's score interval); matches: both intervals contain 0. s_per_image: this run's wall time, "
        "on this machine (a ratio between rows, not a benchmark)."
    )
    study.publish(
        tables={"samplers": (result.rows, caption)},
        figures={"front.png": lambda path: front(result, path)},
        texts={"summary.md": summary(result, pipe.sampling)},
        samples=result.n,
        floor=result.floor,
        features=result.features,
        guidance_scales=result.ws,
        reference=REFERENCE.describe(),
    )


def summary(result: Result, default: Sampler | None = None) -> str:
    rows, best, ws = result.rows, result.cheapest, result.ws
    references = {r["w"]: r for r in rows if r["matches"] == "reference"}
    points = [r for r in rows if r["matches"] != "reference"]
    lines = [
        f"# Samplers against the 1,000-step reference, N = {result.n}, at w = " + ", ".join(f"{w:g}" for w in ws),
        "",
        f"Reference: {REFERENCE.describe()} at each strength. A point matches it when the paired "
        f"{stats.LEVEL:.0%} intervals of its FD and adherence differences both contain 0.",
        "",
    ]
    lines += [
        f"- w = {w:g}: {r['nfe']:.0f} evaluations per image, FD {r['fd']:.2f} ({r['fd_over_floor']:.2f}x the "
        f"floor), adherence {r['adherence']:.3f}"
        for w, r in references.items()
    ]
    lines.append("")
    if best is None:
        lines.append(f"No sampler and step count matched the reference at every strength at N = {result.n}.")
        near = closest(rows)
        if near:
            lines[-1] += (
                f" Closest, matching at the most strengths ({len(near)} of {len(ws)}) with the fewest steps: "
                f"**{near[0]['sampler']} ({near[0]['spacing']}) at {near[0]['steps']} steps**, at w = "
                + ", ".join(f"{r['w']:g}" for r in near)
                + "."
            )
    else:
        at = {r["w"]: r for r in points if _key(r) == _key(best)}
        lines.append(
            f"**Cheapest match at every strength: {best['sampler']} ({best['spacing']}) at {best['steps']} "
            f"steps, {best['nfe']:.0f} evaluations per image at w = {ws[-1]:g}**:"
        )
        lines += [
            f"- w = {w:g}: FD {r['fd']:.2f} (difference {r['d_fd']:+.2f} "
            f"[{r['d_fd_lo']:.2f}, {r['d_fd_hi']:.2f}]), adherence {r['adherence']:.3f} (difference "
            f"{r['d_adherence']:+.3f} [{r['d_adherence_lo']:.3f}, {r['d_adherence_hi']:.3f}])"
            for w, r in at.items()
        ]
    lines += [
        "",
        "Where each sampler first matches (the fewest steps tried that match at that strength):",
        "",
        "| sampler | spacing | " + " | ".join(f"w = {w:g}" for w in ws) + " |",
        "|---|---|" + "---|" * len(ws),
    ]
    for name, spacing in dict.fromkeys((r["sampler"], r["spacing"]) for r in points):
        cells = []
        for w in ws:
            mine = [
                r
                for r in points
                if (r["sampler"], r["spacing"], r["w"]) == (name, spacing, w) and r["matches"] == "yes"
            ]
            first = min(mine, key=lambda r: r["steps"]) if mine else None
            cells.append(f"{first['steps']} ({first['nfe']:.0f} evaluations)" if first else "none")
        lines.append(f"| {name} | {spacing} | " + " | ".join(cells) + " |")
    if default is not None:
        lines += ["", *default_lines(points, default, ws)]
    deterministic = [r for r in points if r["sampler"] not in STOCHASTIC and r["steps"] <= 20]
    everywhere = {_key(r) for r in deterministic} - {_key(r) for r in deterministic if r["matches"] != "yes"}
    lines += [
        "",
        "Deterministic samplers at <= 20 steps that match at every strength: "
        + (", ".join(f"{k[0]} ({k[1]}) x {k[2]}" for k in sorted(everywhere)) or "none")
        + ".",
    ]
    return "\n".join(lines) + "\n"


def default_lines(points: list[dict], default: Sampler, ws: list[float]) -> list[str]:
    """The run's default sampler at each strength: the row it samples with there (its steps at that w), and whether
    its adherence and FD stay inside the reference's paired intervals."""
    spacing = "karras" if default.name in KARRAS else default.spacing
    lines = [f"The run's default, {default.describe()}, at each strength (its rows above):", ""]
    for w in ws:
        steps = default.at(w).steps
        r = next(
            (
                r
                for r in points
                if (r["sampler"], r["spacing"], r["steps"], r["w"]) == (default.name, spacing, steps, w)
            ),
            None,
        )
        if r is None:
            lines.append(f"- w = {w:g}: x {steps} steps, not measured here")
            continue
        lines.append(
            f"- w = {w:g}: x {steps} steps ({r['nfe']:.0f} evaluations), adherence {r['adherence']:.3f} (difference "
            f"{r['d_adherence']:+.3f} [{r['d_adherence_lo']:.3f}, {r['d_adherence_hi']:.3f}], "
            f"{_inside(r, 'd_adherence')} the reference's interval), FD difference {r['d_fd']:+.2f} "
            f"[{r['d_fd_lo']:.2f}, {r['d_fd_hi']:.2f}] ({_inside(r, 'd_fd')})"
        )
    return lines


def _inside(row: dict, key: str) -> str:
    return "inside" if row[f"{key}_lo"] <= 0 <= row[f"{key}_hi"] else "outside"


def front(result: Result, path: Path) -> Path:
    ws = result.ws
    fig, axes = plt.subplots(len(ws), 2, figsize=(12, 4 * len(ws)), sharex=True, squeeze=False)
    points = [r for r in result.rows if r["matches"] != "reference"]
    styles = {"leading": "-", "trailing": "--", "linspace": ":", "karras": "-."}
    colours = {name: plt.cm.tab10(k % 10) for k, name in enumerate(dict.fromkeys(r["sampler"] for r in points))}
    for (left, right), w in zip(axes, ws):
        rows = [r for r in points if r["w"] == w]
        reference = next(r for r in result.rows if r["matches"] == "reference" and r["w"] == w)
        for name, spacing in dict.fromkeys((r["sampler"], r["spacing"]) for r in rows):
            mine = sorted((r for r in rows if (r["sampler"], r["spacing"]) == (name, spacing)), key=lambda r: r["nfe"])
            for ax, key in ((left, "fd_over_floor"), (right, "adherence")):
                ax.plot(
                    [r["nfe"] for r in mine],
                    [r[key] for r in mine],
                    styles[spacing],
                    marker="o",
                    ms=3,
                    color=colours[name],
                    label=f"{name} ({spacing})" if ax is left else None,
                )
                hits = [r for r in mine if r["matches"] == "yes"]
                ax.scatter(
                    [r["nfe"] for r in hits], [r[key] for r in hits], s=40, facecolors="none", edgecolors=colours[name]
                )
        for ax, key, label in ((left, "fd_over_floor", "FD / real-vs-real floor"), (right, "adherence", "adherence")):
            ax.axhline(reference[key], color="black", lw=1.5, label=f"reference ({reference['nfe']:.0f} evaluations)")
            ax.set_xscale("log")
            ax.set_ylabel(f"{label}, w = {w:g}")
            ax.grid(alpha=0.3)
        top = max(2.0, float(np.quantile([r["fd_over_floor"] for r in rows], 0.85)) * 1.1)
        left.set_ylim(0, top)  # the few-step outliers do not squeeze the rest
        right.legend(fontsize=7)
    axes[0][0].legend(fontsize=6, ncol=2)
    for ax in axes[-1]:
        ax.set_xlabel("network evaluations per image (counted)")
    fig.suptitle(
        f"Samplers vs {REFERENCE.describe()}, N = {result.n} (circled: matches the reference within the "
        f"paired intervals; {reports.GUIDANCE_CONVENTION})",
        fontsize=10,
    )
    return reports.save(fig, path)
