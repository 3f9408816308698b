"""The front of `make guidance` (:mod:`t2i.comparison`) in numbers: every row's marginal values with intervals, its
paired differences to CFG at the same w, and the tests along the curve (each method's KID and FD where its curve
first reaches an adherence level, its adherence where it first reaches an FD level, against CFG's), all descriptive:
the verdicts are the calibrated ones (:mod:`t2i.verdict`)."""

from __future__ import annotations

import numpy as np

from . import resampled, stats, verdict
from .comparison_report import Result

ADHERENCE_LEVELS = (0.95, 0.97, 0.98, 0.99)  # matched adherence (those above the judge's real accuracy are dropped)
FD_LEVELS = (1.25, 1.5, 2.0, 3.0)  # matched FD, as multiples of the real-vs-real floor
PRIMARY_FRACTION = 0.5  # the primary level: this far from the conditional model's adherence to the judge's real one
POWER = 0.8  # samples_needed plans for this power


def analyse(
    rows: list,
    spaces: list[str],
    floors: dict[str, float],
    real_adherence: float,
    binary: bool,
    bootstrap: int,
    kept_level: float | None = None,
) -> Result:
    """Every number the report shows, from the rows (:class:`t2i.comparison.Row`): marginal values with intervals,
    paired differences to CFG at the same w, and the tests along the curve (descriptive). ``kept_level``: a
    replication's, the main report's primary level, kept so that it measures the same endpoints."""
    n, m = len(rows[0].hits), len(rows[0].features[spaces[0]].y)
    draws, refs = stats.resamples(n, m, bootstrap)
    boot = {s: np.array([resampled.fds(r.features[s], draws, refs) for r in rows]) for s in spaces}
    kid_boot = {s: np.array([r.features[s].kids(draws, refs) for r in rows]) for s in spaces}
    adh_boot = np.array([[r.hits[d].mean() for d in draws] for r in rows])
    fd = {s: np.array([r.features[s].fd() for r in rows]) for s in spaces}
    kid = {s: np.array([r.features[s].kid() for r in rows]) for s in spaces}
    adh = np.array([r.hits.mean() for r in rows])
    cfg_at = {r.w: k for k, r in enumerate(rows) if r.variant.method == "cfg" and r.variant.label == "cfg"}

    table = []
    for k, r in enumerate(rows):
        entry = {
            "method": r.variant.label,
            "w": r.w,
            "params": r.variant.describe(None),
            "evaluations_per_step": round(r.evaluations, 2),
            "adherence": float(adh[k]),
        }
        lo, hi = stats.clopper_pearson(int(r.hits.sum()), n) if binary else stats.interval(adh[k], adh_boot[k])
        entry.update(adherence_lo=lo, adherence_hi=hi)
        base = cfg_at.get(r.w)
        if base is not None and base != k:
            if binary:
                d, dlo, dhi = stats.newcombe_paired(r.hits > 0.5, rows[base].hits > 0.5)
                p = stats.mcnemar_exact(r.hits > 0.5, rows[base].hits > 0.5)
            else:
                d = float(adh[k] - adh[base])
                dlo, dhi = stats.interval(d, adh_boot[k] - adh_boot[base])
                p = stats.p_value(d, adh_boot[k] - adh_boot[base])
            entry.update(d_adherence=d, d_adherence_lo=dlo, d_adherence_hi=dhi, p_adherence=p)
        for s in spaces:
            tag = _tag(s, spaces)
            lo, hi = stats.interval(fd[s][k], boot[s][k])
            klo, khi = stats.interval(kid[s][k], kid_boot[s][k])
            entry.update(
                {
                    f"fd{tag}": float(fd[s][k]),
                    f"fd{tag}_lo": lo,
                    f"fd{tag}_hi": hi,
                    f"fd{tag}_over_floor": float(fd[s][k] / floors[s]),
                    f"kid{tag}": float(kid[s][k]),
                    f"kid{tag}_lo": klo,
                    f"kid{tag}_hi": khi,
                }
            )
            if base is not None and base != k:
                d = float(fd[s][k] - fd[s][base])
                dlo, dhi = stats.interval(d, boot[s][k] - boot[s][base])
                entry.update(
                    {
                        f"d_fd{tag}": d,
                        f"d_fd{tag}_lo": dlo,
                        f"d_fd{tag}_hi": dhi,
                        f"p_fd{tag}": stats.p_value(d, boot[s][k] - boot[s][base]),
                    }
                )
        entry["samples"] = n
        table.append(entry)

    levels_a = sorted({lv for lv in ADHERENCE_LEVELS if lv < real_adherence} | {round(real_adherence, 4)})
    primary = verdict.primary_adherence(rows, real_adherence, PRIMARY_FRACTION)
    primary = primary.kept(kept_level) if kept_level is not None else primary
    tests = []
    for s in spaces:
        for label in dict.fromkeys(r.variant.label for r in rows if r.variant.label != "cfg"):
            mine = [k for k, r in enumerate(rows) if r.variant.label == label]
            cfgs = [k for k, r in enumerate(rows) if r.variant.label == "cfg"]
            for metric, value, value_boot in (("kid", kid[s], kid_boot[s]), ("fd", fd[s], boot[s])):
                for level in levels_a:
                    test = _matched("adherence", level, mine, cfgs, adh, adh_boot, value, value_boot, floors[s])
                    if test is not None:
                        tests.append({"method": label, "features": s, "metric": metric, "primary": False, **test})
            for level in (f * floors[s] for f in FD_LEVELS):
                test = _matched("fd", level, mine, cfgs, adh, adh_boot, fd[s], boot[s], floors[s])
                if test is not None:
                    tests.append({"method": label, "features": s, "metric": "adherence", "primary": False, **test})
    for t in tests:  # along the curve, every test is descriptive: the verdicts are the calibrated ones (t2i.verdict)
        t["p_holm"], t["verdict"] = float("nan"), "descriptive"
    moved = {label: _moved(table, label, spaces) for label in dict.fromkeys(r.variant.label for r in rows)}
    return Result(
        rows, table, tests, floors, real_adherence, levels_a, primary, moved, binary, bootstrap, PRIMARY_FRACTION, POWER
    )


def _tag(space: str, spaces: list[str]) -> str:
    return "" if space == spaces[0] else "_" + space.split("-")[0]


def _matched(
    axis: str, level: float, mine: list[int], cfgs: list[int], adh, adh_boot, fd, fd_boot, floor: float
) -> dict | None:
    """One test along the curve: at adherence ``level``, the distance (``fd``: FD or KID, with its resamples) of the
    method minus CFG's (lower is better); at FD ``level``, adherence(method) - adherence(CFG) (higher is better). None
    where either curve does not reach the level."""

    def read(rows, a, f):
        along, value = (a, f) if axis == "adherence" else (f, a)
        return stats.crossing(along[rows], value[rows], level)

    ours, theirs = read(mine, adh, fd), read(cfgs, adh, fd)
    if not (np.isfinite(ours) and np.isfinite(theirs)):
        return None
    boot = np.array(
        [
            read(mine, adh_boot[:, b], fd_boot[:, b]) - read(cfgs, adh_boot[:, b], fd_boot[:, b])
            for b in range(adh_boot.shape[1])
        ]
    )
    reached = np.isfinite(boot).mean()
    if reached < 0.9:  # the level sits at a curve's end: most resamples do not reach it
        return None
    difference = ours - theirs
    lo, hi = stats.interval(difference, boot)
    better = difference < 0 if axis == "adherence" else difference > 0
    at = f"adherence {level:.3f}" if axis == "adherence" else f"FD {level / floor:.2f}x floor"
    return {
        "axis": axis,
        "at": at,
        "level": float(level),
        "cfg": theirs,
        "value": ours,
        "difference": difference,
        "lo": lo,
        "hi": hi,
        "p": stats.p_value(difference, boot),
        "better": bool(better),
        "reached": float(reached),
    }


def _moved(table: list[dict], label: str, spaces: list[str]) -> dict:
    """Whether a variant changed anything against CFG at the same w: the largest paired FD and adherence differences,
    and whether any paired interval excludes 0."""
    mine = [e for e in table if e["method"] == label and "d_fd" in e]
    if not mine:
        return {"compared": 0}
    excludes = any(
        e["d_fd_lo"] > 0 or e["d_fd_hi"] < 0 or e["d_adherence_lo"] > 0 or e["d_adherence_hi"] < 0 for e in mine
    )
    return {
        "compared": len(mine),
        "max_abs_d_fd": max(abs(e["d_fd"]) for e in mine),
        "max_abs_d_adherence": max(abs(e["d_adherence"]) for e in mine),
        "any_excludes_zero": excludes,
    }
