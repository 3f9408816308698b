"""How ``make ema`` reports what :mod:`t2i.ema_front` measured: the table, the snapshot density, ``summary.md`` (each
way's best length, the ways against each other, strength and length together, the presets) and ``ema.png``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt

from . import posthoc, reports, stats
from .study import Study

LENGTHS = (0.01, 0.02, 0.035, 0.05, 0.075, 0.10, 0.15, 0.25)  # sigma_rel, EDM2 Fig. 5's range
ADHERENCE = 0.98  # a method's best strength: where its curve first reaches this adherence
FIT_LIMIT = posthoc.FIT_LIMIT  # a reconstruction whose profile misses its target by more is flagged and not chosen


@dataclass
class Result:
    """What `make ema` measured: the table, each way's best length, the ways against each other, strength and length
    together, the snapshot density, and the presets it writes into the run."""

    table: list[dict]
    best: dict[str, dict]
    pairs: list[dict]
    joint: dict[str, dict]
    presets: dict[str, float]
    flagged: list[float]  # the model's lengths whose fit error exceeds FIT_LIMIT
    guide_flagged: list[float]  # the guide's
    n: int
    floor: float
    features: str
    strengths: dict[str, float]
    bootstrap: int
    density: list[dict] = field(default_factory=list)


def write(result: Result, study: Study) -> None:
    caption = (
        f"EMA lengths (post-hoc, EDM2's sigma_rel; 'default': the run's fixed-decay EMA) for unguided sampling "
        f"(w = 1), CFG and autoguidance at their best strengths ({result.strengths}), N = {result.n} images per "
        f"row from the same prompts and seeds. fd: Frechet distance in {result.features} features (floor "
        f"{result.floor:.2f}); _lo/_hi: {stats.LEVEL:.0%} basic paired bootstrap intervals "
        f"({result.bootstrap} joint resamples). guide_ema: autoguidance's guide's own length. fit_error: how far "
        f"the snapshots' combined profile is from the length's (relative L2; fits: at most {FIT_LIMIT:.0%}, else never "
        "chosen)."
    )
    tables = {"ema": (result.table, caption)}
    if result.density:
        tables["snapshots"] = (
            result.density,
            (
                f"How densely the run must keep post-hoc EMA snapshots: each length's fit error (relative L2; at most "
                f"{FIT_LIMIT:.0%} to be chosen) with snapshots at each spacing (multiples of the run's own, every "
                "every_steps training steps, ending at the checkpoint's last), and the disk they take at this run's "
                "measured size per snapshot (both tracked profiles, half precision). Only the run's own spacing was "
                "trained; the others are computed from the snapshots' times alone."
            ),
        )
    study.publish(
        tables=tables,
        figures={"ema.png": lambda path: figure(result, path)},
        texts={"summary.md": summary(result)},
        samples=result.n,
        floor=result.floor,
        features=result.features,
        strengths=result.strengths,
    )


def summary(result: Result) -> str:
    best, n = result.best, result.n
    lines = [
        f"# EMA length against the way of sampling, N = {n}",
        "",
        f"Post-hoc EMA lengths {', '.join(f'{x:g}' for x in LENGTHS)} (EDM2's sigma_rel) for each way of "
        "sampling, on the same prompts and seeds; the best length is the lowest FD, its interval where the best "
        f"length falls in {result.bootstrap} joint resamples (5th-95th percentile), among the lengths whose "
        f"reconstruction fits its profile within {FIT_LIMIT:.0%}.",
        "",
    ]
    for flagged, whose in ((result.flagged, "the model's"), (result.guide_flagged, "the guide's")):
        if flagged:
            lines += [
                f"Left out: {whose} sigma_rel {', '.join(f'{x:g}' for x in flagged)}, whose snapshots fit "
                f"the profile with more than {FIT_LIMIT:.0%} error (too few snapshots for so short an EMA: take "
                "them more often).",
                "",
            ]
    for mode in ("unguided", "cfg", "autoguidance"):
        if mode not in best:
            continue
        b = best[mode]
        lo, hi = b["vs_default_interval"]
        verdict = "better than" if hi < 0 else "worse than" if lo > 0 else "not resolved against"
        lines.append(
            f"- **{mode}**: best sigma_rel {b['length']:g} [{b['length_lo']:g}, {b['length_hi']:g}] (fit "
            f"error {b['fit_error']:.1%}), FD {b['fd']:.2f}; {verdict} the default EMA (FD "
            f"{b['default_fd']:.2f}, difference {b['vs_default']:+.2f} [{lo:.2f}, {hi:.2f}])."
        )
    if "guide" in best:
        lines.append(
            f"- autoguidance's guide prefers sigma_rel {best['guide']['length']:g} (FD "
            f"{best['guide']['fd']:.2f}, {best['guide']['vs_main_best']:+.2f} against the guide's default "
            "EMA)."
        )
    lines.append("")
    for p in result.pairs:
        lo, hi = p["interval"]
        lines.append(
            f"- {p['a']} at its best length against {p['b']} at its: FD difference {p['d_fd']:+.2f} "
            f"[{lo:.2f}, {hi:.2f}], adherence difference {p['d_adherence']:+.3f}; {p['a']}'s best length is "
            f"the shorter in {p['a_shorter_share']:.0%} of the resamples."
        )
    if "cfg" in best and "unguided" in best:
        pair = next(p for p in result.pairs if (p["a"], p["b"]) == ("cfg", "unguided"))
        share = pair["a_shorter_share"]
        answer = (
            "yes"
            if share >= 0.9
            else "no: it prefers a longer one"
            if share <= 0.1
            else f"not resolved at N = {n} (shorter in {share:.0%} of the resamples)"
        )
        lines += [
            "",
            f"Does guided sampling (CFG) prefer a shorter EMA than unguided sampling, as EDM2 found? {answer}.",
        ]
    lines += _joint_lines(result.joint, result.best, result.strengths)
    lines += _density_lines(result.density)
    presets = result.presets
    lines += [
        "",
        "**Presets** (each way's best length where its FD is at or below the default EMA's), written to the "
        f"run's `{posthoc.PRESETS}`: "
        + (", ".join(f"{k} {v:g}" for k, v in presets.items()) or "none")
        + ". "
        + (
            "`sample`, `eval`, `guidance` and `export` now sample this checkpoint with the CFG preset unless "
            "--ema-length, --no-ema or --weights says otherwise."
            if "cfg" in presets
            else "CFG keeps the fixed-decay EMA."
        ),
    ]
    return "\n".join(lines) + "\n"


def _joint_lines(joint: dict, best: dict, strengths: dict) -> list[str]:
    """Strength and length tuned together: each guided way at its best length retried with its guidance term halved
    and doubled, and the lowest FD among all its rows that reach the adherence target."""
    if not joint:
        return []
    lines = [
        "",
        f"**Strength and length together** (each guided way at its best length, retried with w - 1 halved "
        f"and doubled; the lowest FD among its rows reaching adherence {ADHERENCE:g}):",
    ]
    for mode, j in joint.items():
        tried = "; ".join(f"w = {t['w']:g}: adherence {t['adherence']:.3f}, FD {t['fd']:.2f}" for t in j["retried"])
        lo, hi = j["vs_separate_interval"]
        same = j["w"] == strengths[mode] and j["length"] == best[mode]["length"]
        lines.append(
            f"- **{mode}** at sigma_rel {best[mode]['length']:g}: {tried}. Together: w = {j['w']:g}, "
            f"sigma_rel {j['length']:g} (FD {j['fd']:.2f}, adherence {j['adherence']:.3f}"
            + ("" if j["reached"] else f", no row reached {ADHERENCE:g}")
            + ")"
            + (
                ", the pair chosen one at a time."
                if same
                else f"; against the pair chosen one at a time (w = {strengths[mode]:g}, sigma_rel "
                f"{best[mode]['length']:g}) FD {j['vs_separate']:+.2f} [{lo:.2f}, {hi:.2f}]."
            )
        )
    return lines


def _density_lines(rows: list[dict]) -> list[str]:
    """What the density table says: at each spacing, its snapshots, their disk and the lengths that fit."""
    if not rows:
        return []
    lines = ["", "**Snapshot density** (`snapshots.md`):"]
    for row in rows:
        fitting = [k.split()[1] for k, v in row.items() if k.startswith("fit ") and v <= FIT_LIMIT]
        fit = f"sigma_rel {', '.join(fitting)} fit" if fitting else "no length fits"
        lines.append(
            f"- every {row['every_steps']:g} steps ({row['spacing']}): {row['snapshots']} snapshots, "
            f"{row['disk_mib']:,.1f} MiB; {fit} within {FIT_LIMIT:.0%}."
        )
    return lines


def figure(result: Result, path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for mode in ("unguided", "cfg", "autoguidance"):
        w = 1.0 if mode == "unguided" else result.strengths.get(mode)
        mine = sorted(
            (
                r
                for r in result.table
                if r["mode"] == mode and r["ema"] != "default" and r["w"] == w and r["guide_ema"] in ("", "default")
            ),
            key=lambda r: float(r["ema"]),
        )
        if not mine:
            continue
        x = [float(r["ema"]) for r in mine]
        (line,) = left.plot(x, [r["fd_over_floor"] for r in mine], "o-", label=mode)
        left.fill_between(
            x,
            [r["fd_lo"] / result.floor for r in mine],
            [r["fd_hi"] / result.floor for r in mine],
            color=line.get_color(),
            alpha=0.15,
        )
        right.plot(x, [r["adherence"] for r in mine], "o-", color=line.get_color(), label=mode)
        default = next(r for r in result.table if r["mode"] == mode and r["ema"] == "default")
        left.axhline(default["fd_over_floor"], ls=":", color=line.get_color(), lw=1)
        unfit = [r for r in mine if r["fits"] == "no"]
        left.scatter(
            [float(r["ema"]) for r in unfit],
            [r["fd_over_floor"] for r in unfit],
            marker="x",
            s=60,
            color="black",
            zorder=3,
            label=f"fit error > {FIT_LIMIT:.0%}" if mode == "unguided" else None,
        )
        if mode in result.best:
            b = result.best[mode]
            left.axvspan(b["length_lo"], b["length_hi"], color=line.get_color(), alpha=0.08)
    for ax, label in ((left, "FD / real-vs-real floor (dotted: the default EMA)"), (right, "adherence")):
        ax.set_xscale("log")
        ax.set_xlabel("EMA length sigma_rel (post-hoc)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"The EMA axis, N = {result.n} (shaded: where the best length falls in the resamples)", fontsize=10)
    return reports.save(fig, path)
