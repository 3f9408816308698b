"""How ``make guidance`` reports what :mod:`t2i.comparison` measured: the verdicts per method, ``summary.md``,
``front.png`` (the curves and the paired differences beside them) and a check's agreement with the main report."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import reports, stats
from .pipeline import TextToImage

STRETCH = (0.99, 1.25)  # the goal: adherence >= 0.99 at FD <= 1.25 x the floor


@dataclass
class Result:
    """What `make guidance` measured (:mod:`t2i.comparison`), which every part of its report is made from: the front's
    rows and table, the tests (along the curve, descriptive; and each method's primary one), and what they rest on."""

    rows: list  # t2i.comparison.Row: every curve's rows on the front
    table: list[dict]  # guidance.md, a row per method and w
    tests: list[dict]  # matched.md's descriptive tests, then each method's primary one (verdict.md)
    floors: dict[str, float]  # feature space -> the real-vs-real floor at the front's N
    real_adherence: float  # the judge's on held-out real images
    levels: list[float]  # the adherence levels of the tests along the curve
    level: object  # t2i.verdict.Level: the primary adherence level and how it was set
    moved: dict[str, dict]  # per method: whether anything differed from CFG at the same w
    binary: bool  # adherence is 0/1 per image (class prompts)
    bootstrap: int
    primary_fraction: float
    power: float
    n: int = 0  # the front's N
    reference_n: int = 0
    real_n: int = 0
    spaces: list[str] = field(default_factory=list)  # the primary feature space first
    tuning: list[dict] = field(default_factory=list)  # the guidance interval's grid (tuning.md)
    interval: tuple[float, float] | None = None
    guide_name: str | None = None
    verdict_n: int = 0  # the verdict rows' N (fresh seeds)
    verdict_reference_n: int = 0
    verdict_floors: dict[str, float] = field(default_factory=dict)
    calibrations: dict = field(default_factory=dict)  # label -> t2i.verdict.Calibration
    damage: dict = field(default_factory=dict)  # feature space -> its known-damage check (feature_spaces.md)
    needed: dict[str, float] = field(default_factory=dict)  # label -> N for the primary effect at `power`
    verdict_bootstrap: int = 0  # the primary tests' resamples (t2i.verdict.resamples_for: enough for Holm)

    @property
    def primary_level(self) -> float:
        return self.level.value


def verdicts(result: Result, space: str) -> dict[str, str]:
    """Each variant's verdict in one feature space, from its primary test: better, worse, not resolved, or not reached
    (a curve does not reach the primary level)."""
    labels = dict.fromkeys(e["method"] for e in result.table if e["method"] != "cfg")
    primary = {t["method"]: t["verdict"] for t in result.tests if t["features"] == space and t["primary"]}
    return {label: primary.get(label, "not reached") for label in labels}


def _placed(result: Result, conditional: float) -> str:
    """Where the primary level comes from: its place on the scale, read off this front, or the main report's."""
    if result.level is not None and result.level.own is not None:
        return (
            "the main report's level, kept so that this replication measures the same endpoints (this front's "
            f"conditional model, {conditional:.3f} at w = 1, would place it at {result.level.own:g})"
        )
    return (
        f"{result.primary_fraction:.0%} of the way from the conditional model's {conditional:.3f} (w = 1 on the "
        f"front) to the judge's {result.real_adherence:.3f} on real held-out images, a level declared as that place "
        "on the scale, not as a number, and read off the front alone" + _raised(result.level)
    )


def _raised(level) -> str:
    """Why the level is above the fraction's place, when it is."""
    if level is None or not level.raised:
        return ""
    return (
        f" ({level.halfway:g} there, raised to the least rise above the conditional model the front resolves: "
        f"+{level.step:.3f}, one-sided {stats.LEVEL:.0%} at N = {level.n}; a level inside the conditional model's "
        "noise calibrates every curve to w = 1 or near it, where each method that is the conditional model at "
        "w = 1 equals CFG by construction)"
    )


def summary(result: Result, pipe: TextToImage, fd_levels: Sequence[float]) -> str:
    n, spaces = result.n, result.spaces
    primary, nv = spaces[0], result.verdict_n or n
    found = verdicts(result, primary)
    level = result.primary_level
    conditional = min((e for e in result.table if e["method"] == "cfg"), key=lambda e: e["w"])["adherence"]
    damage = result.damage
    checked = "; ".join(f"{s}: {'orders' if c['orders'] else 'does NOT order'} it" for s, c in damage.items())
    lines = [
        f"# Guidance methods against plain CFG: {pipe.cfg.experiment}, verdicts at N = {nv}",
        "",
        f"{pipe.checkpoint.name}, {pipe.weights} weights, {pipe.sampling.describe()}. **Primary endpoint, "
        "declared for every method**: its KID difference to CFG, each sampled at the strength where its own "
        "curve reaches "
        f"adherence {level:g}: " + _placed(result, conditional) + ". The "
        f"strengths are calibrated on the front (N = {n} per row, its own seeds); the verdict rows are drawn at "
        f"them on {nv} fresh seeds, the same in every row, and the interval carries the calibration's error "
        f"(verdict.md). KID is unbiased at any N; FD's bias depends on each method's diversity. Primary feature "
        f"space: {primary} (known damage on real images: {checked}; feature_spaces.md). Verdicts are "
        f"Holm-corrected over the {len(found)} methods at family-wise {1 - stats.LEVEL:.0%}, with "
        f"{stats.LEVEL:.0%} basic paired bootstrap intervals "
        f"({result.verdict_bootstrap or result.bootstrap} joint resamples, enough for p_holm to reach "
        f"the level over {len(found)} methods) and p from the same bootstrap. Everything else is descriptive: "
        "the front (guidance.md) and the tests along it at "
        f"adherence levels {', '.join(f'{lv:g}' for lv in result.levels)} and FD levels "
        f"{', '.join(f'{f:g}' for f in fd_levels)} x the real-vs-real floor (matched.md). Guidance: "
        f"{reports.GUIDANCE_CONVENTION}.",
        "",
    ]
    main_tests = {t["method"]: t for t in result.tests if t["features"] == primary and t["primary"]}
    for label, verdict in found.items():
        main = main_tests.get(label)
        head = {
            "better": "better than CFG",
            "worse": "worse than CFG",
            "not resolved": f"not resolved at N = {nv}",
            "not reached": f"not reached (its curve or CFG's does not reach adherence {level:g} on the front)",
        }[verdict]
        needed = result.needed.get(label)
        if verdict == "not resolved" and needed is not None:
            head += (
                f" (its effect would need about N = {needed:,.0f} for {result.power:.0%} power, if it stayed "
                "as measured)"
                if math.isfinite(needed)
                else " (no N up to ten times this one would resolve it, if it stayed as measured)"
            )
        detail = f" {_describe(main)}." if main else ""
        others = [s for s in spaces[1:] if label in verdicts(result, s)]
        agree = (
            ""
            if not others
            else " Same verdict in " + ", ".join(others) + "."
            if all(verdicts(result, s)[label] == verdict for s in others)
            else " Other feature spaces (descriptive): "
            + ", ".join(f"{s}: {verdicts(result, s)[label]}" for s in others)
            + "."
        )
        moved = result.moved.get(label, {})
        still = (
            ""
            if not moved.get("compared") or moved["any_excludes_zero"]
            else f" On the front it moved nothing measurable: at every w its paired differences to CFG contain 0 "
            f"(largest |dFD| {moved['max_abs_d_fd']:.2f}, |d adherence| {moved['max_abs_d_adherence']:.3f})."
        )
        lines.append(f"- **{label}**: {head}.{detail}{still}{agree}")
    goal_a, goal_f = STRETCH
    reached = [e for e in result.table if e["adherence"] >= goal_a and e["fd_over_floor"] <= goal_f]
    lines += [
        "",
        f"Stretch goal, adherence >= {goal_a:g} at FD <= {goal_f:g} x the floor (front, N = {n}): "
        + (
            "reached by "
            + "; ".join(
                f"{e['method']} at w = {e['w']:g} ({e['adherence']:.3f}, {e['fd_over_floor']:.2f}x)" for e in reached
            )
            if reached
            else "not reached by any row."
        ),
    ]
    if result.interval is not None:
        lo, hi = result.interval
        lines.append(
            f"The guidance interval tuned for this model is ({lo:g}, {hi:g}] (tuning.md); EDM2-S's "
            "(0.28, 5.42] is its own row."
        )
    return "\n".join(lines) + "\n"


def _describe(t: dict) -> str:
    return (
        f"At w = {t['w']:.3g} (CFG at {t['w_cfg']:.3g}) it reached adherence {t['adherence']:.3f} "
        f"[{t['adherence_lo']:.3f}, {t['adherence_hi']:.3f}] (CFG {t['adherence_cfg']:.3f}); KID {t['value']:.4f} "
        f"vs CFG's {t['cfg']:.4f}, difference {t['difference']:+.4f} [{t['lo']:+.4f}, {t['hi']:+.4f}], p_holm "
        f"{t['p_holm']:.3g}"
    )


def front(result: Result, path: Path) -> Path:
    """Left: adherence against FD / floor, one curve per method, CFG on top; the judge's real-image accuracy as a
    line; intervals that contain their points; points beyond the x range drawn at its edge. Right: each method's primary
    endpoint, its KID difference to CFG, each at its calibrated strength, with its interval (left of 0 is better)."""
    spaces, table = result.spaces, result.table
    fig, (ax, forest) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    ratios = np.array([e["fd_over_floor"] for e in table])
    right = max(1.5, float(np.quantile(ratios, 0.9)) * 1.05)  # the outliers' tenth does not squeeze the rest
    left = min(0.9, float(ratios.min()) * 0.95)  # a space whose rows beat the real-vs-real floor shows them too
    labels = list(dict.fromkeys(e["method"] for e in table))
    colours = {label: plt.cm.tab10(k % 10) for k, label in enumerate(labels)}
    dashes = {label: ("-", "--", ":")[k // 10 % 3] for k, label in enumerate(labels)}  # past ten curves, another dash
    floor = result.floors[spaces[0]]
    for label in sorted(labels, key=lambda lb: lb == "cfg"):  # CFG last: on top
        mine = [e for e in table if e["method"] == label]
        x = np.minimum([e["fd_over_floor"] for e in mine], right)
        y = [e["adherence"] for e in mine]
        cfg = label == "cfg"
        ax.plot(
            x,
            y,
            dashes[label],
            marker="o",
            ms=4,
            lw=2.8 if cfg else 1.2,
            color="black" if cfg else colours[label],
            label=label,
            zorder=10 if cfg else 2,
        )
        ax.errorbar(
            x,
            y,
            xerr=[
                np.clip(x - np.array([e["fd_lo"] for e in mine]) / floor, 0, None),
                np.clip(np.array([e["fd_hi"] for e in mine]) / floor - x, 0, None),
            ],
            yerr=[np.array(y) - [e["adherence_lo"] for e in mine], [e["adherence_hi"] for e in mine] - np.array(y)],
            fmt="none",
            ecolor="black" if cfg else colours[label],
            alpha=0.35,
            zorder=9 if cfg else 1,
        )
        clipped = [e for e in mine if e["fd_over_floor"] > right]
        for e in clipped:
            ax.annotate(
                f"{e['fd_over_floor']:.1f}x",
                (right, e["adherence"]),
                fontsize=7,
                xytext=(-26, -10),
                textcoords="offset points",
                color=colours[label],
            )
        if cfg:
            for e, xv in zip(mine, x):
                ax.annotate(
                    f"w={e['w']:g}",
                    (xv, e["adherence"]),
                    fontsize=7,
                    xytext=(4, -10),
                    textcoords="offset points",
                    zorder=11,
                )
    ax.axhline(
        result.real_adherence,
        ls="--",
        color="tab:green",
        lw=1,
        label=f"judge on real images ({result.real_adherence:.3f})",
    )
    ax.axvline(1.0, ls=":", color="gray", lw=1, label="real-vs-real floor")
    ax.set_xlim(left, right * 1.02)
    ax.set_xlabel(f"FD / real-vs-real floor ({spaces[0]}; floor {floor:.1f} at N = {result.n})")
    ax.set_ylabel("prompt adherence (judge)")
    ax.set_title(f"The front, N = {result.n} (CFG in black, labelled by w)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    ax.grid(alpha=0.3)
    tests = [t for t in result.tests if t["features"] == spaces[0] and t["primary"]]
    for k, t in enumerate(tests):
        colour = {"better": "tab:green", "worse": "tab:red"}.get(t["verdict"], "gray")
        forest.errorbar(
            t["difference"],
            k,
            xerr=[[t["difference"] - t["lo"]], [t["hi"] - t["difference"]]],
            fmt="o",
            color=colour,
            ms=4,
            capsize=2,
        )
    forest.set_yticks(range(len(tests)), [f"{t['method']} (w {t['w']:.3g})" for t in tests], fontsize=7)
    forest.axvline(0, color="black", lw=1)
    forest.invert_yaxis()
    forest.set_xlabel(
        f"KID(method) - KID(CFG), each at its w for adherence {result.primary_level:g}, "
        f"N = {result.verdict_n or result.n} (left is better)"
    )
    forest.set_title(f"Primary endpoints, paired {stats.LEVEL:.0%}; green/red: resolved after Holm", fontsize=10)
    forest.grid(alpha=0.3, axis="x")
    return reports.save(fig, path)


def read_verdicts(folder: Path) -> list[dict]:
    """The primary endpoints a report wrote (``verdict.csv``; none where no curve reached the level)."""
    path = Path(folder) / "verdict.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def main_report(main: Path | None) -> dict:
    """The facts of the guidance report in ``main`` that a replication of it needs: the guidance interval it tuned
    and its primary adherence level (both kept, not placed again: the replication measures the same endpoints), and
    ``study``: the replication's :class:`t2i.study.Study` settings, which also name how many of the first real
    training images the main report judged its rows against (``skip_real``: its front's and its verdict rows'
    references; a replication's reference starts past them), so that a main report redrawn with another level or
    interval stales its replication. None: a main report's own (none of them)."""
    if main is None:
        return {"interval": None, "level": None, "study": {}}
    path = Path(main) / "summary.provenance.json"
    if not path.exists():
        raise FileNotFoundError(f"no guidance report in {main} to replicate: run `make guidance` first")
    facts = json.loads(path.read_text())
    if "verdict_reference_images" not in facts or "primary_level" not in facts:
        raise ValueError(
            f"{main} was made before reports named their verdict rows' reference and primary level: run "
            "`make guidance` again before replicating it"
        )
    skip = max(int(facts["reference_images"]), int(facts["verdict_reference_images"]))
    interval, level = (tuple(facts["interval"]) if facts.get("interval") else None), float(facts["primary_level"])
    kept = {"skip_real": skip, "kept_interval": list(interval) if interval else None, "kept_level": level}
    return {"interval": interval, "level": level, "study": kept}


def check_against(result: Result, main: Path, out: Path) -> str:
    """A replication of the main report's primary endpoints (this one on other seeds and a held-out reference): for
    each method and feature space both measured, the two differences to CFG, whether their signs agree, whether their
    intervals overlap, and whether the verdicts are the same (contradicted: resolved with opposite signs). Writes
    ``check.md/.csv/.tex`` beside this report and returns the caption."""
    earlier = {(t["method"], t["features"]): t for t in read_verdicts(main)}
    rows = []
    for t in (t for t in result.tests if t["primary"]):
        before = earlier.get((t["method"], t["features"]))
        if before is None:
            continue
        d, lo, hi = float(before["difference"]), float(before["lo"]), float(before["hi"])
        rows.append(
            {
                "method": t["method"],
                "features": t["features"],
                "verdict_main": before["verdict"],
                "difference_main": d,
                "lo_main": lo,
                "hi_main": hi,
                "verdict_here": t["verdict"],
                "difference_here": t["difference"],
                "lo_here": t["lo"],
                "hi_here": t["hi"],
                "same_sign": "yes" if np.sign(d) == np.sign(t["difference"]) else "no",
                "overlap": "yes" if lo <= t["hi"] and t["lo"] <= hi else "no",
                "same_verdict": "yes" if before["verdict"] == t["verdict"] else "no",
                "contradicted": "yes" if {before["verdict"], t["verdict"]} == {"better", "worse"} else "no",
            }
        )
    count = lambda key: f"{sum(r[key] == 'yes' for r in rows)} of {len(rows)}"  # noqa: E731
    caption = (
        f"Replication: the main report's primary endpoints (KID difference to CFG at the strength calibrated to "
        f"adherence {result.primary_level:g}) against this report's at the same level, N = "
        f"{result.verdict_n or result.n}, on other seeds and a held-out real reference. Same sign: "
        f"{count('same_sign')}; {stats.LEVEL:.0%} intervals overlap: {count('overlap')}; "
        f"same verdict: {count('same_verdict')}; contradicted (resolved, opposite signs): "
        f"{count('contradicted')}."
    )
    if not rows:
        (out / "check.md").write_text(f"No primary endpoint in common with the main report.\n\n{caption}\n")
        return "no primary endpoint in common"
    reports.write_table(rows, out / "check", caption=caption)
    return caption
