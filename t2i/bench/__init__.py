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
import re

from .. import paths


def device_slug(card: str, cpu: bool) -> str:
    """A folder name for a device: ``nvidia-h200`` for a GPU, ``cpu-<processor>-<n>cpus`` for a CPU."""

    def slug(text: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")

    return (
        f"{paths.CPU_BENCH_PREFIX}{slug(platform.processor() or platform.machine())}-{os.cpu_count()}cpus"
        if cpu
        else slug(card)
    )


def machine() -> str:
    """The CPU this ran on, for captions."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
