"""Frechet distance of many bootstrap resamples of one row, each on its distinct images only.

A bootstrap resample of N seeds repeats images: about 63% of them are distinct. Its FD is a function of the distinct
images and how often each is drawn, so the centred cross-Gram matrix that :meth:`t2i.stats.FeatureSet.fd` takes the
singular values of (N x M, with repeated rows and columns) has the same nonzero singular values as the distinct
images' one weighted by the square roots of their counts: with E the N x U matrix that repeats rows and
D = E^T E = diag(counts), E C E_r^T (E C E_r^T)^T and D_x^1/2 C D_r C^T D_x^1/2 share their nonzero eigenvalues.
The eigendecomposition shrinks from N to about 0.63 N (a quarter of its work), and so does every product before it;
the means and traces are the counts' weighted ones. The same number as :meth:`~t2i.stats.FeatureSet.fd` on the
resample, which stays the definition (tests check both against pytorch-fid to 1e-6; ``make bench-bootstrap`` finds
them within 4e-9 of each other, relative, and times both: about 2x): how the guidance front affords its 90 rows x 2
feature spaces x 200 resamples (:func:`t2i.comparison_front.analyse`).
"""

from __future__ import annotations

import math

import numpy as np

from .stats import FeatureSet


def fds(row: FeatureSet, draws: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """:meth:`FeatureSet.fd` of every resample (``draws``: [B, n] indices into the generated images, ``refs``:
    [B, m] into the reference; :func:`t2i.stats.resamples`). A resample whose distinct images are fewer than the
    features' width is computed from inner products of its distinct images; one with more, from its features (as
    :meth:`~t2i.stats.FeatureSet.fd` does)."""
    return np.array([_fd(row, d, q) for d, q in zip(draws, refs)])


def _fd(row: FeatureSet, draw: np.ndarray, ref: np.ndarray) -> float:
    ux, cx = np.unique(draw, return_counts=True)
    ur, cr = np.unique(ref, return_counts=True)
    if row.dim <= min(len(ux), len(ur)):
        return row.fd(draw, ref)  # the features' D x D covariances are the smaller problem
    n, m = float(len(draw)), float(len(ref))
    wx, wr = cx / n, cr / m  # each distinct image's weight in its mean
    a, r, c = row.own[np.ix_(ux, ux)], row.ref[np.ix_(ur, ur)], row.cross[np.ix_(ux, ur)]
    mean_a, mean_r, mean_c = wx @ a @ wx, wr @ r @ wr, wx @ c @ wr  # mu.mu, mu_r.mu_r, mu.mu_r
    trace_a = (cx @ np.diag(a) - n * mean_a) / (n - 1)  # tr S_a
    trace_r = (cr @ np.diag(r) - m * mean_r) / (m - 1)
    centred = c - (c @ wr)[:, None] - (wx @ c)[None, :] + mean_c  # the distinct rows of X_c R_c^T
    scaled = np.sqrt(cx)[:, None] * centred * np.sqrt(cr)[None, :]
    small = scaled @ scaled.T if len(ux) <= len(ur) else scaled.T @ scaled
    nuclear = np.sqrt(np.clip(np.linalg.eigvalsh(small), 0, None)).sum()
    return float(mean_a + mean_r - 2 * mean_c + trace_a + trace_r - 2 * nuclear / math.sqrt((n - 1) * (m - 1)))
