"""Paired statistics for comparing rows that share prompts and seeds (the guidance comparison, the sampler front).

Every row of a comparison is sampled from the same N seeds, so two rows are compared image by image, never as two
independent samples:

- **Frechet distance and KID of any resample** (:class:`FeatureSet`): both are functions of inner products, so the
  generated and reference features are multiplied once and every bootstrap resample is a gather plus one symmetric
  eigendecomposition of size N, not a D x D matrix square root. One resample draws the seeds *and* the reference
  images (:func:`resamples`), the same draw for every row.
- **Intervals and p-values from one bootstrap**: :func:`interval` is the basic (reverse-percentile) bootstrap
  interval, which reflects the bootstrap's spread around the estimate and so also removes the bias a resample sees
  (a resampled set repeats images, and FD grows with repetition); :func:`p_value` inverts that same interval. KID
  is computed as a U-statistic over distinct originals, which a resample's repeats do not bias.
- **Adherence at the extremes**: exact Clopper-Pearson intervals for a rate (:func:`clopper_pearson`), Newcombe's
  score interval for a paired difference of rates (:func:`newcombe_paired`) and McNemar's exact test
  (:func:`mcnemar_exact`): a percentile bootstrap of 200/200 is the zero-width [1, 1].
- **Many comparisons**: Holm's step-down correction (:func:`holm`).
- **Curves at matched levels**: :func:`crossing` reads a method's curve (ordered by strength) where it first
  reaches a level, so two methods are compared at the same adherence (or the same FD), not at the same w.

tests/test_stats.py checks the coverage of the paired intervals where the truth is known.
"""

from __future__ import annotations

import math
import numpy as np
from scipy import stats as scipy_stats

LEVEL = 0.90  # interval coverage and the family-wise level of Holm's correction (alpha = 1 - LEVEL)


def resamples(n: int, m: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` paired bootstrap draws: indices [count, n] into the N generated images (the shared seeds: the same
    draw for every row) and [count, m] into the reference images."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, (count, n)), rng.integers(0, m, (count, m))


class FeatureSet:
    """One row's generated features against the reference features, for FD and KID of any resample.

    FD is computed in whichever space is smaller: from the features (D x D covariances) when D is below N, else from
    inner products (the centred cross-Gram matrix's singular values: tr sqrt(S_a S_r) is their sum over
    sqrt((n-1)(m-1)); each resample is then a gather plus one symmetric eigendecomposition of size N, never a D x D
    matrix square root). KID always uses the Gram matrices."""

    def __init__(self, features: np.ndarray, reference: np.ndarray, ref_gram: np.ndarray | None = None):
        self.x, self.y = np.asarray(features, np.float64), np.asarray(reference, np.float64)
        self.dim = self.x.shape[1]
        self.own = self.x @ self.x.T
        self.cross = self.x @ self.y.T
        self.ref = self.y @ self.y.T if ref_gram is None else ref_gram
        self.by_gram = self.dim > min(len(self.x), len(self.y))

    def fd(self, rows: np.ndarray | None = None, refs: np.ndarray | None = None) -> float:
        """The Frechet distance of the generated rows ``rows`` (default all) to the reference rows ``refs``: the same
        number as pytorch-fid's ``calculate_frechet_distance`` on those features (tests check to 1e-6)."""
        rows = np.arange(len(self.x)) if rows is None else rows
        refs = np.arange(len(self.y)) if refs is None else refs
        if not self.by_gram:
            return _fd_features(self.x[rows], self.y[refs])
        a, r, c = self.own[np.ix_(rows, rows)], self.ref[np.ix_(refs, refs)], self.cross[np.ix_(rows, refs)]
        n, m = len(rows), len(refs)
        mean_gap = a.mean() + r.mean() - 2 * c.mean()  # |mu_a - mu_r|^2
        trace_a = (np.trace(a) - a.mean() * n) / (n - 1)  # tr S_a from the centred Gram matrix
        trace_r = (np.trace(r) - r.mean() * m) / (m - 1)
        centred = c - c.mean(axis=1, keepdims=True) - c.mean(axis=0, keepdims=True) + c.mean()  # X_c R_c^T
        small = centred @ centred.T if n <= m else centred.T @ centred
        nuclear = np.sqrt(np.clip(np.linalg.eigvalsh(small), 0, None)).sum()
        return float(mean_gap + trace_a + trace_r - 2 * nuclear / math.sqrt((n - 1) * (m - 1)))

    def kid(self, rows: np.ndarray | None = None, refs: np.ndarray | None = None) -> float:
        """KID: the unbiased MMD^2 with the polynomial kernel (x.y / d + 1)^3 (Binkowski et al. 2018), over all
        pairs of *distinct original* images, so a bootstrap resample's repeats add no bias."""
        rows = np.arange(len(self.x)) if rows is None else np.asarray(rows)
        refs = np.arange(len(self.y)) if refs is None else np.asarray(refs)
        return float(self.kids(rows[None], refs[None])[0])

    def kids(self, draws: np.ndarray, refs: np.ndarray) -> np.ndarray:
        """:meth:`kid` of every resample at once (``draws``, ``refs``: one resample per row), on count vectors: the
        kernel matrices are made once, not once per resample, which the thousands of resamples a Holm family of many
        methods needs (:func:`t2i.verdict.resamples_for`) would otherwise pay for."""
        kernel = lambda gram: (gram / self.dim + 1) ** 3  # noqa: E731
        ca, cr = _counts(draws, len(self.x)), _counts(refs, len(self.y))

        def within(c: np.ndarray, k: np.ndarray) -> np.ndarray:
            pairs = c.sum(1) ** 2 - (c**2).sum(1)
            return (np.einsum("bi,bi->b", c @ k, c) - (c**2) @ np.diag(k)) / pairs

        between = np.einsum("bi,bi->b", ca @ kernel(self.cross), cr) / (ca.sum(1) * cr.sum(1))
        return within(ca, kernel(self.own)) + within(cr, kernel(self.ref)) - 2 * between


def _counts(index: np.ndarray, size: int) -> np.ndarray:
    """How often each of ``size`` items appears in each row of ``index``."""
    found = np.zeros((len(index), size))
    np.add.at(found, (np.arange(len(index))[:, None], index), 1)
    return found


def _fd_features(x: np.ndarray, y: np.ndarray) -> float:
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    values, vectors = np.linalg.eigh(s_y)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T  # S_y^(1/2)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s_x @ root), 0, None)).sum()  # tr sqrt(S_x S_y)
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(s_x) + np.trace(s_y) - 2 * cross)


def interval(estimate: float, boot: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The basic (reverse-percentile) bootstrap interval [2 est - q_hi, 2 est - q_lo] (Davison & Hinkley 1997, eq.
    5.6): the bootstrap's spread around the estimate reflected, which also takes out the bias the bootstrap sees (a
    resample's FD sits above the sample's). :func:`p_value` inverts this same interval, so a 90% interval excludes 0
    exactly when p < 0.10 (up to the percentiles' interpolation); the suite's simulations check its coverage."""
    boot = _finite(boot)
    if not len(boot):
        return float("nan"), float("nan")
    lo, hi = np.percentile(boot, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(2 * estimate - hi), float(2 * estimate - lo)


def p_value(estimate: float, boot: np.ndarray) -> float:
    """Two-sided p-value of "the difference is 0" from the same bootstrap as :func:`interval`, by inverting it: the
    smallest alpha at which the basic (1 - alpha) interval excludes 0, 2 min(F*(2 est), 1 - F*(2 est)) where F* is
    the bootstrap distribution, counted with the (k + 1) / (B + 1) correction (so never 0: with B = 200 resamples,
    at least 0.01)."""
    boot = _finite(boot)
    if not len(boot):
        return float("nan")
    if estimate == 0:
        return 1.0
    beyond = np.sum(boot >= 2 * estimate) if estimate > 0 else np.sum(boot <= 2 * estimate)
    return float(min(1.0, 2 * (beyond + 1) / (len(boot) + 1)))


def _finite(boot: np.ndarray) -> np.ndarray:
    boot = np.asarray(boot, np.float64)
    return boot[np.isfinite(boot)]


def clopper_pearson(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a rate: 200 of 200 gives [0.985, 1] at 90%, not [1, 1]."""
    alpha = 1 - level
    lo = 0.0 if successes == 0 else scipy_stats.beta.ppf(alpha / 2, successes, n - successes + 1)
    hi = 1.0 if successes == n else scipy_stats.beta.ppf(1 - alpha / 2, successes + 1, n - successes)
    return float(lo), float(hi)


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def newcombe_paired(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """The difference of two paired rates, mean(a) - mean(b), with Newcombe's (1998) method-10 score interval (from
    Wilson intervals of each rate and their phi correlation): well-behaved at 0 or N discordant pairs, where a
    bootstrap has zero width. ``a``, ``b``: 0/1 outcomes of the same N items."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    n = len(a)
    both, only_a, only_b, neither = (a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum()
    z = scipy_stats.norm.ppf(1 - (1 - level) / 2)
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = _wilson(int(both + only_a), n, z)
    l2, u2 = _wilson(int(both + only_b), n, z)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins > 0 else 0.0
    delta = p1 - p2
    lower = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    upper = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return float(delta), float(delta - lower), float(delta + upper)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """McNemar's exact two-sided p-value for paired 0/1 outcomes: the discordant pairs under a fair coin."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(min(1.0, scipy_stats.binomtest(only_a, only_a + only_b, 0.5).pvalue))


def holm(p_values: list[float], alpha: float = 1 - LEVEL) -> list[bool]:
    """Holm's (1979) step-down procedure: which hypotheses are rejected at family-wise error ``alpha``. Sorted
    ascending, p_(k) is compared with alpha / (m - k); the first that fails stops the rejections."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values (reject where adjusted <= alpha): max over the step-down of (m - k) p_(k)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def holm_over_groups(tests: list[tuple[str, float]]) -> list[float]:
    """Adjusted p-values for tests that come in groups (a method's tests at several levels): Bonferroni within a group
    (its smallest p times its size is the group's p), Holm across the groups. A test's adjusted p is the Holm-adjusted
    p of its group with the group's p replaced by its own Bonferroni-corrected one, so a test is rejected at alpha only
    if its group is, and the family-wise error over the groups is at most alpha."""
    groups = list(dict.fromkeys(g for g, _ in tests))
    size = {g: sum(1 for h, _ in tests if h == g) for g in groups}
    least = {g: min(min(1.0, size[g] * p) for h, p in tests if h == g) for g in groups}
    adjusted = []
    for g, p in tests:
        own = {**least, g: min(1.0, size[g] * p)}
        adjusted.append(holm_adjusted([own[h] for h in groups])[groups.index(g)])
    return adjusted


def crossing(along: np.ndarray, values: np.ndarray, level: float, rising: bool = True) -> float:
    """Where a curve first reaches ``level``: ``along`` and ``values`` are the curve's points in order of strength
    (e.g. adherence and FD for w = 1, 1.25, ...). Returns ``values`` linearly interpolated at the first segment
    where ``along`` crosses ``level`` (upwards if ``rising``, else downwards), or NaN if it never does. A point
    exactly at the level counts."""
    along, values = np.asarray(along, np.float64), np.asarray(values, np.float64)
    sign = 1.0 if rising else -1.0
    gap = sign * (along - level)
    if gap[0] >= 0:
        return float(values[0]) if gap[0] == 0 else float("nan")  # starts beyond the level: not reached from below
    for k in range(1, len(along)):
        if gap[k] >= 0:
            t = -gap[k - 1] / (gap[k] - gap[k - 1])
            return float(values[k - 1] + t * (values[k] - values[k - 1]))
    return float("nan")


def samples_needed(effect: float, sizes: list[int], errors: list[float], z: float) -> float:
    """The N at which ``|effect|`` would be ``z`` standard errors, from standard errors measured at several
    subsample sizes: a fit se = c N^-b (b = 0.5 for a plain mean), extrapolated. Assumes the effect stays as
    measured."""
    sizes_a, errors_a = np.asarray(sizes, np.float64), np.asarray(errors, np.float64)
    keep = np.isfinite(errors_a) & (errors_a > 0)
    if keep.sum() < 2 or effect == 0:
        return float("inf")
    slope, intercept = np.polyfit(np.log(sizes_a[keep]), np.log(errors_a[keep]), 1)
    b = -slope
    if b <= 0:
        return float("inf")
    return float((z * math.exp(intercept) / abs(effect)) ** (1 / b))
