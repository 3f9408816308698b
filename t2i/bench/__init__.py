"""Benchmarks: speed and memory as ratios measured side by side in one run, written to ``reports/bench/``. Tests check
correctness; the numbers live here.

- ``python -m t2i.bench loader`` (``make bench-loader``): thesis Table 2, four ways to read WikiArt's shards;
- ``python -m t2i.bench latent`` (``make bench-latent``): a CelebA step on the latent cache vs encoding with the VAE;
- ``python -m t2i.bench gpu`` (``make bench-gpu``): every full config's training step per precision and layout,
  against the card's peak, and the project's trainer against the bare step.
"""

from __future__ import annotations

import os
import platform


def machine() -> str:
    """The CPU this ran on, for captions."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
