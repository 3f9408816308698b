"""The primary verdict of ``make guidance``: every method at the strength that reaches one adherence level, against
CFG at its own such strength, on fresh seeds.

Reading a method's KID where its curve crosses an adherence level between two sampled strengths (a chord) makes the
answer depend on which strengths were sampled, and reading it on the seeds that located the crossing reuses them.
So the verdict is measured in two stages:

1. **Calibration** on the front (:mod:`t2i.comparison`'s rows, on their own seeds): a method's strength w* for the
   primary level is where its adherence curve first reaches it (linear between the sampled strengths; the lowest
   strength if that already reaches it); its uncertainty is w* across the front's bootstrap resamples.
2. **Verdict rows**: each method, CFG too, sampled at its w* on N fresh seeds (:data:`VERDICT_SEED_OFFSET`), the
   same prompts and seeds in every row. The primary endpoint of a method is KID(method at its w*) - KID(CFG at its
   w*) in the primary feature space. Its interval and p-value come from one basic bootstrap (:mod:`t2i.stats`) of
   the verdict seeds and reference images, each resample also moved by the calibration's error: slope x (w*_b - w*)
   for the method and for CFG, with the slope of KID against w at w* read off the front. Holm's correction runs over
   the methods. The adherence each row reached on the fresh seeds is reported beside it: did the calibration hit?

A bootstrap p-value cannot fall below 2 / (B + 1) (:func:`t2i.stats.p_value`), and Holm multiplies the smallest by
the number of methods: with B = 200 and 14 methods no p_holm can go below 0.139, so no verdict could ever be declared
at 10%, whatever the effects. The verdict therefore draws :func:`resamples_for` the family, never fewer than the
front's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from . import data, evaluate, metrics, stats

VERDICT_SEED_OFFSET = 3_000_000  # the verdict rows' seeds: disjoint from the front's, the tuning's and a check's
MAX_EXTRAPOLATION = 10  # samples_needed is stated up to this many times the verdict's N, never beyond


def resamples_for(methods: int, at_least: int = 0) -> int:
    """Bootstrap resamples for a Holm family of ``methods`` tests: enough that the smallest p_holm a test can reach,
    methods x 2 / (B + 1), is a tenth of the family-wise level (2,799 for 14 methods at 10%), and ``at_least``."""
    return max(at_least, math.ceil(20 * max(methods, 1) / (1 - stats.LEVEL)) - 1)


@dataclass
class Calibration:
    """A curve's strength for the primary level on the front, and what is known of it."""

    label: str
    w: float  # NaN: the curve does not reach the level
    resampled: np.ndarray  # w* in each front resample (NaN where that resample does not reach it)
    slopes: dict[str, float]  # d KID / d w at w*, per feature space, from the front's bracketing strengths

    def interval(self) -> tuple[float, float]:
        found = self.resampled[np.isfinite(self.resampled)]
        if not len(found):
            return float("nan"), float("nan")
        lo, hi = np.percentile(found, [(1 - stats.LEVEL) / 2 * 100, (1 + stats.LEVEL) / 2 * 100])
        return float(lo), float(hi)


@dataclass
class Level:
    """The primary adherence level and how it was placed (all read off the front)."""

    value: float
    conditional: float  # the conditional model's adherence on the front (CFG's lowest strength, w = 1 by default)
    halfway: float  # ``fraction`` of the way from it to the judge's on real images
    step: float  # the least rise above the conditional model the front resolves (one-sided, stats.LEVEL)
    n: int  # the front's N per row
    own: float | None = None  # a replication's: where its own front would place the level (the main report's is kept)

    @property
    def raised(self) -> bool:
        """The fraction's level lay within the front's noise of the conditional model, and was raised."""
        return self.own is None and self.value > self.halfway

    def kept(self, value: float) -> "Level":
        """This front's level replaced by ``value``, the main report's, which a replication keeps: a level placed on
        other seeds moves with their conditional model, and an endpoint at another level is another endpoint."""
        return dataclasses.replace(self, value=value, own=self.value)


def primary_adherence(rows: list, real_adherence: float, fraction: float) -> Level:
    """The primary level, from the front alone (the verdict's fresh seeds never choose it): ``fraction`` of the way
    from the conditional model's adherence (CFG's lowest strength, w = 1 by default) to the judge's on real images,
    but at least the rise above the conditional model that the front resolves: z x its standard error at the front's
    N (one-sided, :data:`t2i.stats.LEVEL`). A level inside the conditional model's noise calibrates every curve to
    w = 1 or near it, where each method that is the conditional model at w = 1 equals CFG by construction: the
    verdict would be null by design. Never above 1 - 1 / (2 N), the highest adherence the front can tell from 1."""
    base = min((r for r in rows if r.variant.label == "cfg"), key=lambda r: r.w)
    n = len(base.hits)
    conditional = float(base.hits.mean())
    halfway = conditional + fraction * max(real_adherence - conditional, 0.0)
    step = float(scipy_stats.norm.ppf(stats.LEVEL) * base.hits.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    value = min(max(halfway, conditional + step), max(1 - 1 / (2 * n), conditional))
    return Level(round(value, 4), conditional, round(halfway, 4), step, n)


def feature_spaces(cfg, extractors: list, images_per_half: int = 600) -> tuple[dict, list]:
    """Does each feature space see known damage on this dataset's real images (:func:`t2i.evaluate.damage_check`)?
    Returns the checks by space, and the extractors with the primary one first: the first that is not the judge's
    (which also scores adherence) and orders the damage; else the first that orders it; else as given."""
    images, conditions = data.load_images(cfg, "train", limit=2 * images_per_half)
    damage = {e.name: evaluate.damage_check(e, images, conditions) for e in extractors}
    order = sorted(
        range(len(extractors)),
        key=lambda k: (not damage[extractors[k].name]["orders"], isinstance(extractors[k], metrics.JudgeExtractor), k),
    )
    return damage, [extractors[k] for k in order]


def calibrate(rows: list, level: float, spaces: list[str], draws: np.ndarray) -> dict[str, Calibration]:
    """Each curve's w* for adherence ``level`` on the front (``rows``: :class:`t2i.comparison.Row`), with its values
    in the front's resamples (``draws``: resampled seed indices, one row per resample)."""
    found = {}
    for label in dict.fromkeys(r.variant.label for r in rows):
        mine = sorted((r for r in rows if r.variant.label == label), key=lambda r: r.w)
        w = np.array([r.w for r in mine])
        adherence = np.array([r.hits.mean() for r in mine])
        star = _strength(adherence, w, level)
        resampled = np.array([_strength(np.array([r.hits[d].mean() for r in mine]), w, level) for d in draws])
        slopes = {}
        for s in spaces:
            kid = np.array([r.features[s].kid() for r in mine])
            k = int(np.clip(np.searchsorted(w, star), 1, len(w) - 1)) if math.isfinite(star) else 1
            slopes[s] = float((kid[k] - kid[k - 1]) / (w[k] - w[k - 1])) if len(w) > 1 else 0.0
        found[label] = Calibration(label, star, resampled, slopes)
    return found


def _strength(adherence: np.ndarray, w: np.ndarray, level: float) -> float:
    """Where adherence first reaches ``level`` along increasing w; the lowest w if it starts there; NaN if never."""
    return float(w[0]) if adherence[0] >= level else stats.crossing(adherence, w, level)


def primary_tests(
    verdict_rows: dict,
    calibrations: dict[str, Calibration],
    spaces: list[str],
    level: float,
    bootstrap: int,
    binary: bool,
) -> list[dict]:
    """One primary test per method and feature space: KID at its w* minus CFG's at its w*, with the calibration's
    error inside one basic bootstrap; Holm-adjusted over the methods in each space. ``verdict_rows``: label ->
    :class:`t2i.comparison.Row` on the fresh seeds (CFG's under "cfg")."""
    cfg = verdict_rows["cfg"]
    n, m = len(cfg.hits), len(cfg.features[spaces[0]].y)
    draws, refs = stats.resamples(n, m, bootstrap, seed=1)  # the verdict seeds' own resamples ...
    shift = {label: c.resampled[:bootstrap] - c.w for label, c in calibrations.items()}  # ... paired with the front's
    tests = []
    for s in spaces:
        kid_boot = {label: r.features[s].kids(draws, refs) for label, r in verdict_rows.items()}
        mine = []
        for label, row in verdict_rows.items():
            if label == "cfg":
                continue
            c, base = calibrations[label], calibrations["cfg"]
            d = float(row.features[s].kid() - cfg.features[s].kid())
            boot = kid_boot[label] - kid_boot["cfg"] + c.slopes[s] * shift[label] - base.slopes[s] * shift["cfg"]
            reached = float(np.isfinite(boot).mean())
            lo, hi = stats.interval(d, boot)
            a_lo, a_hi = _adherence_interval(row.hits, binary)
            mine.append(
                {
                    "method": label,
                    "features": s,
                    "metric": "kid",
                    "primary": True,
                    "axis": "calibrated",
                    "at": f"calibrated adherence {level:g}",
                    "level": level,
                    "w": c.w,
                    "w_cfg": base.w,
                    "cfg": float(cfg.features[s].kid()),
                    "value": float(row.features[s].kid()),
                    "difference": d,
                    "lo": lo,
                    "hi": hi,
                    "p": stats.p_value(d, boot),
                    "better": d < 0,
                    "reached": reached,
                    "adherence": float(row.hits.mean()),
                    "adherence_lo": a_lo,
                    "adherence_hi": a_hi,
                    "adherence_cfg": float(cfg.hits.mean()),
                }
            )
        for t, adjusted in zip(mine, stats.holm_adjusted([t["p"] for t in mine])):
            t["p_holm"] = adjusted
            t["verdict"] = "not resolved" if adjusted > 1 - stats.LEVEL else "better" if t["better"] else "worse"
        tests += mine
    return tests


def _adherence_interval(hits: np.ndarray, binary: bool) -> tuple[float, float]:
    if binary:
        return stats.clopper_pearson(int(hits.sum()), len(hits))
    mean, se = hits.mean(), hits.std(ddof=1) / math.sqrt(len(hits))
    z = scipy_stats.norm.ppf((1 + stats.LEVEL) / 2)
    return float(mean - z * se), float(mean + z * se)


def needed(
    verdict_rows: dict, calibrations: dict[str, Calibration], tests: list[dict], space: str, power: float
) -> dict[str, float]:
    """For each method whose primary test is not resolved: the verdict N at which its effect, if it stayed as
    measured, would be resolved after Holm with ``power``, from the KID difference's standard error on subsamples of
    N / 4, N / 2 and N seeds (se = c N^-b, fitted) with the calibration's variance added as measured (the front's N
    unchanged); infinite where the calibration alone hides the effect or beyond :data:`MAX_EXTRAPOLATION` x N (a
    planning figure, never extrapolated further)."""
    primary = [t for t in tests if t["features"] == space]
    z = scipy_stats.norm.ppf(1 - (1 - stats.LEVEL) / (2 * max(len(primary), 1))) + scipy_stats.norm.ppf(power)
    cfg = verdict_rows["cfg"]
    n, m = len(cfg.hits), len(cfg.features[space].y)
    found = {}
    for test in (t for t in primary if t["verdict"] == "not resolved"):
        row, label = verdict_rows[test["method"]], test["method"]
        c, base = calibrations[label], calibrations["cfg"]
        calibration = np.nanvar(c.slopes[space] * c.resampled - base.slopes[space] * base.resampled, ddof=1)
        sizes, errors = [n // 4, n // 2, n], []
        for size in sizes:
            draws, refs = stats.resamples(n, m, 60, seed=size)
            draws, refs = draws[:, :size], refs[:, : min(size, m)]
            diffs = row.features[space].kids(draws, refs) - cfg.features[space].kids(draws, refs)
            errors.append(float(np.std(diffs, ddof=1)))
        # |effect| = z sqrt(se_kid(N)^2 + calibration): solve for se_kid(N), then N from the fitted se_kid = c N^-b
        target = (test["difference"] / z) ** 2 - calibration
        need = stats.samples_needed(z * math.sqrt(target), sizes, errors, z) if target > 0 else float("inf")
        found[label] = need if need <= MAX_EXTRAPOLATION * n else float("inf")
    return found
