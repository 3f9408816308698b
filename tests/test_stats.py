"""t2i.stats: paired intervals that cover the truth where it is known, exact rate intervals, Holm, matched levels."""

from __future__ import annotations

import numpy as np
import pytest
from pytorch_fid.fid_score import calculate_frechet_distance

from t2i import metrics, resampled, stats


def pytorch_fid(x: np.ndarray, y: np.ndarray) -> float:
    return float(calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)))


@pytest.mark.parametrize("dim", [6, 64])  # below N (covariances) and above N (Gram matrices)
def test_fd_of_a_resample_is_pytorch_fids_number_in_either_space(dim):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, dim)) + 0.3, rng.normal(size=(50, dim)) * 1.2
    features = stats.FeatureSet(x, y)
    assert features.by_gram == (dim > 40)
    assert features.fd() == pytest.approx(pytorch_fid(x, y), rel=1e-6)
    rows, refs = rng.integers(0, 40, 40), rng.integers(0, 50, 50)
    assert features.fd(rows, refs) == pytest.approx(pytorch_fid(x[rows], y[refs]), rel=1e-6)


def test_kid_is_the_unbiased_mmd_and_ignores_the_repeats_of_a_resample():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 8)), rng.normal(size=(30, 8)) + 0.5
    features = stats.FeatureSet(x, y)
    assert features.kid() == pytest.approx(metrics.mmd2_unbiased(x, y), rel=1e-9)
    rows = np.array([0, 0, 1, 2, 2, 2])  # repeats of an image are not pairs of different images
    distinct = np.array([0, 1, 2])
    assert features.kid(rows, None) != pytest.approx(metrics.mmd2_unbiased(x[rows], y))
    weights = np.bincount(rows)[distinct]
    within = sum(
        weights[i] * weights[j] * ((x[a] @ x[b]) / 8 + 1) ** 3
        for i, a in enumerate(distinct)
        for j, b in enumerate(distinct)
        if a != b
    ) / (6**2 - (weights**2).sum())
    k_yy = ((y @ y.T) / 8 + 1) ** 3
    between = (weights[:, None] * ((x[distinct] @ y.T) / 8 + 1) ** 3).sum() / (6 * 30)
    expected = within + (k_yy.sum() - np.trace(k_yy)) / (30 * 29) - 2 * between
    assert features.kid(rows, None) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("dim", [6, 30, 64])  # below the distinct images (features), between, above N (Gram)
def test_fd_of_many_resamples_on_their_distinct_images_is_pytorch_fids_number(dim):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, dim)) + 0.3, rng.normal(size=(50, dim)) * 1.2
    features = stats.FeatureSet(x, y)
    draws, refs = stats.resamples(40, 50, 12)
    expected = [pytorch_fid(x[d], y[q]) for d, q in zip(draws, refs)]
    np.testing.assert_allclose(resampled.fds(features, draws, refs), expected, rtol=1e-6)
    assert len({len(np.unique(d)) for d in draws}) > 1  # resamples of different sizes once their repeats are merged


def test_kids_of_many_resamples_at_once_are_each_resamples_kid():
    rng = np.random.default_rng(5)
    features = stats.FeatureSet(rng.normal(size=(40, 6)), rng.normal(loc=0.3, size=(50, 6)))
    draws, refs = stats.resamples(40, 50, 25)
    expected = [features.kid(d, q) for d, q in zip(draws, refs)]
    np.testing.assert_allclose(features.kids(draws, refs), expected, rtol=1e-10, atol=1e-12)


def test_the_paired_fd_difference_interval_covers_the_truth_about_as_often_as_it_says():
    """Two methods sampled from the same seeds: a_i = mu_a + z_i and b_i = mu_b + (0.8 z_i + 0.6 e_i), every set with
    identity covariance, so FD_a - FD_b = |mu_a|^2 - |mu_b|^2 exactly. 200 repeats of N = 100: the basic paired
    bootstrap's 90% interval must cover it between 87% and 96% of the time, and agree with its p-value."""
    rng = np.random.default_rng(2)
    dim, n, mu_a, mu_b = 4, 100, np.full(4, 0.25), np.full(4, 0.15)
    truth = (mu_a**2).sum() - (mu_b**2).sum()
    covered = 0
    for _ in range(200):
        z, e = rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
        reference = rng.normal(size=(n, dim))
        a, b = stats.FeatureSet(mu_a + z, reference), stats.FeatureSet(mu_b + 0.8 * z + 0.6 * e, reference)
        rows, refs = stats.resamples(n, n, 100, seed=int(rng.integers(1 << 30)))
        difference = a.fd() - b.fd()
        boot = np.array([a.fd(r, q) - b.fd(r, q) for r, q in zip(rows, refs)])
        lo, hi = stats.interval(difference, boot)
        p = stats.p_value(difference, boot)
        assert (lo > 0 or hi < 0) == (p < 0.10) or abs(p - 0.10) < 0.02, (lo, hi, p)  # one bootstrap, inverted
        covered += lo <= truth <= hi
    assert 0.87 <= covered / 200 <= 0.96, covered


def test_the_paired_adherence_difference_interval_covers_the_truth_about_as_often_as_it_says():
    """Paired 0/1 outcomes with known rates 0.92 and 0.88 (correlated through a shared draw), N = 300."""
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(200):
        u = rng.random(300)
        a, b = u < 0.92, (u < 0.85) | ((u >= 0.92) & (rng.random(300) < 0.375))  # P(b) = 0.85 + 0.08 * 0.375 = 0.88
        delta, lo, hi = stats.newcombe_paired(a, b)
        assert lo <= delta <= hi
        covered += lo <= 0.04 <= hi
    assert 0.84 <= covered / 200 <= 0.96, covered


def test_exact_rate_intervals_are_not_zero_wide_at_the_extremes():
    assert stats.clopper_pearson(200, 200) == pytest.approx((0.05 ** (1 / 200), 1.0))  # 0.985, not [1, 1]
    assert stats.clopper_pearson(0, 200)[0] == 0.0 and stats.clopper_pearson(0, 200)[1] > 0
    delta, lo, hi = stats.newcombe_paired(np.ones(200, bool), np.ones(200, bool))
    assert delta == 0 and lo < 0 < hi  # no discordant pair is not proof of no difference
    assert stats.mcnemar_exact(np.ones(10, bool), np.zeros(10, bool)) == pytest.approx(2 / 2**10)


def test_holm_on_a_hand_worked_example():
    """p = (0.01, 0.04, 0.03, 0.005) at alpha 0.05: sorted, 0.005 x 4 = 0.02 and 0.01 x 3 = 0.03 are rejected;
    0.03 x 2 = 0.06 is not, and stops the procedure (0.04 is not rejected even though 0.04 x 1 < 0.05)."""
    assert stats.holm([0.01, 0.04, 0.03, 0.005], alpha=0.05) == [True, False, False, True]
    assert stats.holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_a_curve_is_read_where_it_first_reaches_a_level():
    adherence = [0.93, 0.96, 0.99, 1.0, 0.995]  # w = 1, 1.25, 1.5, 2, 3
    fd = [20.0, 24.0, 30.0, 40.0, 60.0]
    assert stats.crossing(adherence, fd, 0.975) == pytest.approx(27.0)  # halfway between 0.96 and 0.99
    assert stats.crossing(adherence, fd, 0.99) == pytest.approx(30.0)  # a point on the level
    assert np.isnan(stats.crossing(adherence, fd, 0.9))  # below where every curve starts: not compared
    assert np.isnan(stats.crossing(adherence, fd, 1.01))  # never reached
    assert stats.crossing(fd, adherence, 35.0) == pytest.approx(0.995)  # adherence at a matched FD
    assert stats.samples_needed(1.0, [100, 400], [2.0, 1.0], z=2.0) == pytest.approx(1600)


def test_holm_across_methods_with_each_methods_levels_bonferroni_corrected():
    """Two methods, a: p 0.01 and 0.2 at two levels; b: p 0.03. Group p's: a 0.02, b 0.03; Holm: a 0.02 x 2 = 0.04,
    b max(0.04, 0.03) = 0.04. a's second test: 0.4 in place of a's 0.02 -> Holm gives a max(0.06, 0.4) = 0.4."""
    adjusted = stats.holm_over_groups([("a", 0.01), ("a", 0.2), ("b", 0.03)])
    assert adjusted == pytest.approx([0.04, 0.4, 0.04])


# Simulations of the verdict's statistic (issue 38): KID differences between two methods that share seeds and a
# reference, with the basic bootstrap's interval and the p-value inverted from it. Small D, fast.
def _kid_difference(a: np.ndarray, b: np.ndarray, reference: np.ndarray, rng, bootstrap: int = 200):
    fa, fb = stats.FeatureSet(a, reference), stats.FeatureSet(b, reference)
    rows, refs = stats.resamples(len(a), len(reference), bootstrap, seed=int(rng.integers(1 << 30)))
    boot = np.array([fa.kid(r, q) - fb.kid(r, q) for r, q in zip(rows, refs)])
    d = fa.kid() - fb.kid()
    return d, stats.interval(d, boot), stats.p_value(d, boot)


def test_identical_methods_get_a_verdict_at_most_at_the_nominal_rate():
    """Two methods drawn from one distribution (correlated through their shared seeds): a verdict (p < 0.10) in at
    most 10% of 200 repeats, plus the simulation's own error."""
    rng = np.random.default_rng(11)
    d_, n = 16, 60
    verdicts = 0
    for _ in range(200):
        z, reference = rng.normal(size=(n, d_)), rng.normal(size=(n, d_))
        a = 0.2 + 0.7 * z + 0.714 * rng.normal(size=(n, d_))
        b = 0.2 + 0.7 * z + 0.714 * rng.normal(size=(n, d_))
        verdicts += _kid_difference(a, b, reference, rng)[2] < 0.10
    assert verdicts / 200 <= 0.10 + 0.035, verdicts  # 0.035: two binomial standard errors at 10%


def test_a_less_diverse_method_at_equal_kid_is_not_declared_better_and_fd_at_d_above_n_would_declare_it():
    """Reference N(0, I); method A N(0, 1.5 I), more diverse, and B N(0, 0.5 I), less diverse, with equal KID at
    N = infinity: for centred isotropic Gaussians KID's cubic kernel gives 3/d (c - 1)^2 for a covariance c I, the
    same at c = 1.5 and c = 0.5. FD at N = infinity favours A (d (sqrt(c) - 1)^2: 0.05 d against 0.09 d). With D
    above N, FD's finite-N bias makes B look better; KID declares either better at most at the nominal rate."""
    rng = np.random.default_rng(12)
    d_, n = 64, 40
    kid_b_better = fd_b_better = 0
    for _ in range(100):
        z, reference = rng.normal(size=(n, d_)), rng.normal(size=(n, d_))
        a, b = np.sqrt(1.5) * z, np.sqrt(0.5) * (0.8 * z + 0.6 * rng.normal(size=(n, d_)))
        _, (lo, hi), _ = _kid_difference(b, a, reference, rng, bootstrap=100)
        kid_b_better += hi < 0
        fd_b_better += stats.FeatureSet(b, reference).fd() < stats.FeatureSet(a, reference).fd()
    assert kid_b_better / 100 <= 0.10, kid_b_better
    assert fd_b_better / 100 >= 0.9, fd_b_better  # why FD is descriptive only


def test_the_kid_difference_interval_covers_the_truth_at_the_nominal_rate():
    """A = N(mu, I) and B = N(0, I) against N(0, I), paired through shared seeds: B is the reference's distribution,
    so the true KID difference is KID(A) at N = infinity, estimated without bias here from 4,000 draws (its error is
    far below the intervals'). The basic 90% interval covers it in 87-97% of 200 repeats."""
    rng = np.random.default_rng(13)
    d_, n, mu = 8, 80, np.full(8, 0.35)
    big = 4000
    truth = stats.FeatureSet(mu + rng.normal(size=(big, d_)), rng.normal(size=(big, d_))).kid()
    covered = 0
    for _ in range(200):
        z, reference = rng.normal(size=(n, d_)), rng.normal(size=(n, d_))
        a, b = mu + z, 0.8 * z + 0.6 * rng.normal(size=(n, d_))
        _, (lo, hi), _ = _kid_difference(a, b, reference, rng)
        covered += lo <= truth <= hi
    assert 0.87 <= covered / 200 <= 0.97, covered
