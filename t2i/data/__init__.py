"""Datasets: one module per dataset (``mnist``, ``digits``, ``cifar10``, ``wikiart``, ``celeba``), each defining a
:class:`~t2i.data.base.DatasetSpec`, found by name through :func:`spec`; and the machinery they share: parquet
streaming (``shards``), image decoding (``images``), the VAE latent cache (``latents``), synthetic shards
(``synthetic``).

``load_dataset`` gives what training iterates: ``(x0, condition)`` with x0 in the config's ``pixel_range`` and the
condition a class index (caption id) or, for CelebA, 40 attributes. ``load_images`` gives images in [0, 1], the
range judges, metrics and figures work in.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..configs import ExperimentConfig
from .registry import spec
from .shards import ReportsBadSamples
from .base import SPLITS, DatasetSpec

__all__ = ["SPLITS", "DatasetSpec", "ReportsBadSamples", "load_dataset", "load_images", "spec"]


def load_dataset(cfg: ExperimentConfig, log_dir: Path | None = None) -> Dataset:
    """The training examples of ``cfg`` (streams list the rows they skip in ``log_dir``)."""
    return spec(cfg).training_set(cfg, log_dir)


def load_images(
    cfg: ExperimentConfig, split: str, limit: int | None = None, resolution: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, C, R, R] float32 in [0, 1] and conditions (class indices [N], or CelebA's attributes [N, 40])."""
    return spec(cfg).load_images(cfg, split, limit, resolution)
