"""``make bench-bootstrap``: what the guidance front's bootstrap costs per row, each way side by side in one run.

`make guidance` resamples each row of its front (N = 200 generated images against as many real ones, in every feature
space) for the front's descriptive intervals (:func:`t2i.comparison_front.analyse`): its FD and its KID per
resample. On random features as wide as the demo's two spaces (the judge's penultimate layer, 1024, wider than N: FD's
Gram path; the random CNN's, 128), this times FD one resample at a time (:meth:`t2i.stats.FeatureSet.fd`) and on
each resample's distinct images (:func:`t2i.resampled.fds`, what the front uses), KID one resample at a time and
every resample at once (:meth:`t2i.stats.FeatureSet.kids`, what the front and the verdict rows use), checks that each
pair of ways gives the same numbers, and multiplies by the front's rows: where the minutes of `make guidance` that
are not sampling go.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import paths, reports, resampled, stats
from . import machine

FRONT_ROWS = 90  # the demo's front: 15 curves x 6 strengths, w = 1 shared
WIDTHS = {"judge-penultimate": 1024, "random-cnn0": 128}  # the demo's feature spaces (t2i.metrics)


def run(n: int = 200, widths: dict[str, int] | None = None, resamples: int = 200, out: Path | None = None) -> str:
    rng = np.random.default_rng(0)
    draws, refs = stats.resamples(n, n, resamples)
    rows = []
    for space, dim in (widths or WIDTHS).items():
        row = stats.FeatureSet(rng.normal(size=(n, dim)), rng.normal(0.1, 1.0, size=(n, dim)))
        fd_s, fd_one = _timed(lambda: [row.fd(d, q) for d, q in zip(draws, refs)])
        distinct_s, fd_distinct = _timed(lambda: resampled.fds(row, draws, refs))
        kid_s, kid_one = _timed(lambda: [row.kid(d, q) for d, q in zip(draws, refs)])
        kids_s, kid_once = _timed(lambda: row.kids(draws, refs))
        ways = (
            ("FD, one resample at a time (FeatureSet.fd)", fd_s, fd_s, ""),
            ("FD, each resample's distinct images (resampled.fds)", distinct_s, fd_s, _gap(fd_one, fd_distinct)),
            ("KID, one resample at a time (FeatureSet.kid)", kid_s, kid_s, ""),
            ("KID, every resample at once (FeatureSet.kids)", kids_s, kid_s, _gap(kid_one, kid_once)),
        )
        rows += [
            {
                "features": f"{space} ({dim} wide)",
                "way": way,
                "seconds_per_row": seconds,
                "ms_per_resample": 1000 * seconds / resamples,
                "front_seconds": seconds * FRONT_ROWS,
                "speedup": before / seconds,
                "max_relative_difference": differs,
            }
            for way, seconds, before, differs in ways
        ]
    out = Path(out or paths.reports_dir() / "bench" / "bootstrap")
    caption = (
        f"One row's {resamples} paired bootstrap resamples (N = {n} generated against {n} real, random features as "
        f"wide as each of the demo's feature spaces) on {machine()}, one run. front_seconds: times the demo front's "
        f"{FRONT_ROWS} rows; speedup: against the same metric one resample at a time, in the same run; "
        "max_relative_difference: the largest gap between the two ways' numbers over the largest number. "
        "Reproduce: make bench-bootstrap."
    )
    table = reports.write_table(rows, out, caption=caption)
    reports.write_provenance(out.with_suffix(".md"), n=n, widths=widths or WIDTHS, resamples=resamples)
    print(table)
    return table


def _timed(measure) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    values = np.asarray(measure(), float)
    return time.perf_counter() - start, values


def _gap(a: np.ndarray, b: np.ndarray) -> str:
    """The largest difference between two ways' numbers, relative to the largest number (a KID can be near 0)."""
    return f"{float(np.max(np.abs(a - b)) / np.max(np.abs(a))):.1e}"
