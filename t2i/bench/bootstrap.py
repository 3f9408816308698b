"""``make bench-bootstrap``: what the guidance front's bootstrap costs per row, and what drawing every resample at
once saves, side by side in one run.

`make guidance` resamples each row of its front (N = 200 generated images against as many real ones, in every feature
space) for the front's descriptive intervals (:func:`t2i.comparison_front.analyse`): its FD and its KID once per
resample, where the verdict rows draw every KID resample from one set of kernel matrices
(:meth:`t2i.stats.FeatureSet.kids`). On random features as wide as the judge's penultimate layer (1024, wider than N:
FD's Gram path), this times each way for one row in one space, checks that the two ways give the same KIDs, and
multiplies by the front's rows and spaces: where the minutes of `make guidance` that are not sampling go.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import paths, reports, stats
from . import machine

FRONT_ROWS, SPACES = 90, 2  # the demo's front: 15 curves x 6 strengths, w = 1 shared; the judge's and a random CNN's


def run(n: int = 200, dim: int = 1024, resamples: int = 200, out: Path | None = None) -> str:
    rng = np.random.default_rng(0)
    row = stats.FeatureSet(rng.normal(size=(n, dim)), rng.normal(0.1, 1.0, size=(n, dim)))
    draws, refs = stats.resamples(n, n, resamples)

    def timed(measure) -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        values = np.asarray(measure(), float)
        return time.perf_counter() - start, values

    fd_s, _ = timed(lambda: [row.fd(d, q) for d, q in zip(draws, refs)])
    kid_s, one_by_one = timed(lambda: [row.kid(d, q) for d, q in zip(draws, refs)])
    kids_s, at_once = timed(lambda: row.kids(draws, refs))
    gap = float(np.abs(one_by_one - at_once).max())
    ways = (
        ("FD, one resample at a time", fd_s, ""),
        ("KID, one resample at a time", kid_s, ""),
        ("KID, every resample at once (FeatureSet.kids)", kids_s, f"{gap:.1e}"),
    )
    rows = [
        {
            "way": way,
            "seconds_per_row": seconds,
            "ms_per_resample": 1000 * seconds / resamples,
            "front_seconds": seconds * FRONT_ROWS * SPACES,
            "speedup_vs_kid_one_at_a_time": kid_s / seconds,
            "max_kid_difference": differs,
        }
        for way, seconds, differs in ways
    ]
    out = Path(out or paths.reports_dir() / "bench" / "bootstrap")
    caption = (
        f"One row's {resamples} paired bootstrap resamples (N = {n} generated against {n} real, random "
        f"{dim}-wide features) on {machine()}, one run. front_seconds: times the demo front's {FRONT_ROWS} rows and "
        f"{SPACES} feature spaces; max_kid_difference: the largest gap between the two ways' KIDs. "
        "Reproduce: make bench-bootstrap."
    )
    table = reports.write_table(rows, out, caption=caption)
    reports.write_provenance(out.with_suffix(".md"), n=n, dim=dim, resamples=resamples, kid_speedup=kid_s / kids_s)
    print(table)
    return table
