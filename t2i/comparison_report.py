"""How ``make guidance`` reports what :mod:`t2i.comparison` measured: the verdicts per method, ``summary.md``,
``front.png`` (the curves and the paired differences beside them) and a check's agreement with the main report."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import reports, stats
from .pipeline import TextToImage

STRETCH = (0.99, 1.25)  # the goal: adherence >= 0.99 at FD <= 1.25 x the floor


def verdicts(result: dict, space: str) -> dict[str, str]:
    """Each variant's verdict in one feature space, from its primary test: better, worse, not resolved, or not reached
    (a curve does not reach the primary level)."""
    labels = dict.fromkeys(e["method"] for e in result["table"] if e["method"] != "cfg")
    primary = {t["method"]: t["verdict"] for t in result["tests"] if t["features"] == space and t["primary"]}
    return {label: primary.get(label, "not reached") for label in labels}


def summary(result: dict, pipe: TextToImage, fd_levels: Sequence[float]) -> str:
    n, spaces, floors = result["n"], result["spaces"], result["floors"]
    primary = spaces[0]
    tests = [t for t in result["tests"] if t["features"] == primary]
    found = verdicts(result, primary)
    level = result["primary_level"]
    lines = [f"# Guidance methods against plain CFG: {pipe.cfg.experiment}, N = {n}", "",
             f"Every row samples the same {n} prompts from the same seeds ({pipe.checkpoint.name}, {pipe.weights} "
             f"weights, {pipe.sampling.describe()}). **Primary endpoint, declared for every method**: its KID "
             f"difference to CFG where both curves first reach adherence {level:g} ({result['real_adherence']:.3f} is "
             f"the judge on real held-out images), in {primary} features; KID is unbiased at any N, FD's bias depends "
             f"on each method's diversity. Verdicts are Holm-corrected over the {len(found)} methods' primary tests, "
             f"at family-wise {1 - stats.LEVEL:.0%}. Everything else is descriptive: FD and KID at the other adherence "
             f"levels ({', '.join(f'{lv:g}' for lv in result['levels'])}) and adherence at FD levels "
             f"({', '.join(f'{f:g}' for f in fd_levels)} x the real-vs-real floor, {floors[primary]:.2f} in {primary} "
             f"features, {result['reference_n']} real images against as many"
             f"{'' if result['reference_n'] == n else ': fewer than N, as the dataset holds no more'}). Differences "
             f"are paired ({result['bootstrap']} joint resamples of the seeds and the reference images) with "
             f"{stats.LEVEL:.0%} bias-corrected intervals. Guidance: {reports.GUIDANCE_CONVENTION}.", ""]
    for label, verdict in found.items():
        mine = [t for t in tests if t["method"] == label]
        main = next((t for t in mine if t["primary"]), None)
        head = {"better": "better than CFG", "worse": "worse than CFG", "not resolved": f"not resolved at N = {n}",
                "not reached": f"not reached (its curve or CFG's does not reach adherence {level:g})"}[verdict]
        needed = result["needed"].get(label)
        if verdict == "not resolved" and needed is not None:
            head += (f" (its primary effect would need about N = {needed:,.0f} for {result['power']:.0%} power, if it stayed as "
                     "measured)" if math.isfinite(needed) else " (no effect to extrapolate)")
        detail = f" {_describe(main, floors[primary])}." if main else ""
        fd_at = next((t for t in mine if t["metric"] == "fd" and main and t["level"] == main["level"]), None)
        if fd_at:
            detail += f" Descriptive: {_describe(fd_at, floors[primary])}."
        others = [s for s in spaces[1:] if label in verdicts(result, s)]
        agree = ("" if not others else " Same verdict in " + ", ".join(others) + "." if all(
            verdicts(result, s)[label] == verdict for s in others) else " Other feature spaces disagree: " + ", ".join(
            f"{s}: {verdicts(result, s)[label]}" for s in others) + ".")
        moved = result["moved"].get(label, {})
        still = ("" if not moved.get("compared") or moved["any_excludes_zero"] else
                 f" It moved nothing measurable here: at every w its paired differences to CFG contain 0 (largest "
                 f"|dFD| {moved['max_abs_d_fd']:.2f}, |d adherence| {moved['max_abs_d_adherence']:.3f}).")
        lines.append(f"- **{label}**: {head}.{detail}{still}{agree}")
    goal_a, goal_f = STRETCH
    reached = [e for e in result["table"] if e["adherence"] >= goal_a and e["fd_over_floor"] <= goal_f]
    lines += ["", f"Stretch goal, adherence >= {goal_a:g} at FD <= {goal_f:g} x the floor (N = {n}): " + (
        "reached by " + "; ".join(f"{e['method']} at w = {e['w']:g} ({e['adherence']:.3f}, {e['fd_over_floor']:.2f}x)"
                                  for e in reached) if reached else "not reached by any row.")]
    if result["interval"] is not None:
        lo, hi = result["interval"]
        lines.append(f"The guidance interval tuned for this model is ({lo:g}, {hi:g}] (tuning.md); EDM2-S's "
                     "(0.28, 5.42] is its own row.")
    return "\n".join(lines) + "\n"


def _describe(t: dict, floor: float) -> str:
    unit = {"fd": "FD", "kid": "KID", "adherence": "adherence"}[t["metric"]]
    fmt = {"FD": lambda v: f"{v:.2f}", "KID": lambda v: f"{v:.4f}", "adherence": lambda v: f"{v:.3f}"}[unit]
    p = f"p_holm {t['p_holm']:.3g}" if t["primary"] else f"p {t['p']:.3g}, uncorrected"
    return (f"at {t['at']}, {unit} {fmt(t['value'])} vs CFG's {fmt(t['cfg'])} (difference {fmt(t['difference'])} "
            f"[{fmt(t['lo'])}, {fmt(t['hi'])}], {p})")


def front(result: dict, path: Path) -> Path:
    """Left: adherence against FD / floor, one curve per method, CFG on top; the judge's real-image accuracy as a
    line; intervals that contain their points; points beyond the x range drawn at its edge. Right: each method's primary
    endpoint, its KID difference to CFG at the primary adherence, with its interval (left of 0 is better)."""
    spaces, table = result["spaces"], result["table"]
    fig, (ax, forest) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    ratios = np.array([e["fd_over_floor"] for e in table])
    right = max(1.5, float(np.quantile(ratios, 0.9)) * 1.05)  # the outliers' tenth does not squeeze the rest
    labels = list(dict.fromkeys(e["method"] for e in table))
    colours = {label: plt.cm.tab10(k % 10) for k, label in enumerate(labels)}
    floor = result["floors"][spaces[0]]
    for label in sorted(labels, key=lambda lb: lb == "cfg"):  # CFG last: on top
        mine = [e for e in table if e["method"] == label]
        x = np.minimum([e["fd_over_floor"] for e in mine], right)
        y = [e["adherence"] for e in mine]
        cfg = label == "cfg"
        ax.plot(x, y, marker="o", ms=4, lw=2.8 if cfg else 1.2, color="black" if cfg else colours[label],
                label=label, zorder=10 if cfg else 2)
        ax.errorbar(x, y, xerr=[np.clip(x - np.array([e["fd_lo"] for e in mine]) / floor, 0, None),
                                np.clip(np.array([e["fd_hi"] for e in mine]) / floor - x, 0, None)],
                    yerr=[np.array(y) - [e["adherence_lo"] for e in mine], [e["adherence_hi"] for e in mine] - np.array(y)],
                    fmt="none", ecolor="black" if cfg else colours[label], alpha=0.35, zorder=9 if cfg else 1)
        clipped = [e for e in mine if e["fd_over_floor"] > right]
        for e in clipped:
            ax.annotate(f"{e['fd_over_floor']:.1f}x", (right, e["adherence"]), fontsize=7, xytext=(-26, -10),
                        textcoords="offset points", color=colours[label])
        if cfg:
            for e, xv in zip(mine, x):
                ax.annotate(f"w={e['w']:g}", (xv, e["adherence"]), fontsize=7, xytext=(4, -10),
                            textcoords="offset points", zorder=11)
    ax.axhline(result["real_adherence"], ls="--", color="tab:green", lw=1,
               label=f"judge on real images ({result['real_adherence']:.3f})")
    ax.axvline(1.0, ls=":", color="gray", lw=1, label="real-vs-real floor")
    ax.set_xlim(0.9, right * 1.02)
    ax.set_xlabel(f"FD / real-vs-real floor ({spaces[0]}; floor {floor:.1f} at N = {result['n']})")
    ax.set_ylabel("prompt adherence (judge)")
    ax.set_title(f"The front, N = {result['n']} (CFG in black, labelled by w)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    tests = [t for t in result["tests"] if t["features"] == spaces[0] and t["primary"]]
    for k, t in enumerate(tests):
        colour = {"better": "tab:green", "worse": "tab:red"}.get(t["verdict"], "gray")
        forest.errorbar(t["difference"], k, xerr=[[t["difference"] - t["lo"]], [t["hi"] - t["difference"]]],
                        fmt="o", color=colour, ms=4, capsize=2)
    forest.set_yticks(range(len(tests)), [f"{t['method']} @ {t['at'].split()[-1]}" for t in tests], fontsize=7)
    forest.axvline(0, color="black", lw=1)
    forest.invert_yaxis()
    forest.set_xlabel(f"KID(method) - KID(CFG) at adherence {result['primary_level']:g} (left is better)")
    forest.set_title(f"Primary endpoints, paired {stats.LEVEL:.0%}; green/red: resolved after Holm", fontsize=10)
    forest.grid(alpha=0.3, axis="x")
    return reports.save(fig, path)


def read_tests(folder: Path) -> list[dict]:
    """The tests along the curve a report wrote (``matched.csv``)."""
    with open(Path(folder) / "matched.csv") as f:
        return list(csv.DictReader(f))


def check_against(result: dict, main: Path, out: Path) -> str:
    """Compare this (larger-N) comparison's verdicts with those the main report made at the same levels: a
    contradiction is a resolved verdict of the opposite sign. Writes ``check.md`` beside this report."""
    earlier = {(t["method"], t["features"], t["metric"], t["at"]): t for t in read_tests(main)}
    rows = []
    for t in result["tests"]:
        before = earlier.get((t["method"], t["features"], t["metric"], t["at"]))
        if before is None:
            continue
        contradicted = {before["verdict"], t["verdict"]} == {"better", "worse"}
        rows.append({"method": t["method"], "features": t["features"], "metric": t["metric"], "at": t["at"],
                     "verdict_main": before["verdict"], "difference_main": float(before["difference"]),
                     "verdict_here": t["verdict"], "difference_here": t["difference"], "lo": t["lo"], "hi": t["hi"],
                     "contradicted": "yes" if contradicted else "no"})
    caption = (f"The verdicts of the main report against this comparison at N = {result['n']}, at the levels both "
               f"reached. contradicted: resolved verdicts of opposite signs ({sum(r['contradicted'] == 'yes' for r in rows)}"
               f" of {len(rows)}).")
    if not rows:
        (out / "check.md").write_text(f"No level in common with the main report.\n\n{caption}\n")
        return "no level in common"
    return reports.write_table(rows, out / "check", caption=caption)
