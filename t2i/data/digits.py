"""scikit-learn's bundled handwritten digits (1,797 images, 8x8): real digits that need no download, for the demo.

Splits: a fixed shuffle 70% / 20% / 10% into train / judge_train / judge_test (seeded by :data:`SPLIT_SEED`, not by
the run seed, so every run and every judge sees the same split).
"""

from __future__ import annotations

import numpy as np
import torch

from ..configs import ExperimentConfig
from .mnist import check_grayscale, resize
from .base import SMALL_CNN, DatasetSpec

SPLIT_SEED = 0


class Digits(DatasetSpec):
    name = "digits"
    card_id = "sklearn-digits"
    terms = (
        "cc-by-4.0",
        "scikit-learn's digits are the UCI Optical Recognition of Handwritten Digits test set, CC BY 4.0",
        "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
    )

    def local_images(self, cfg: ExperimentConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_digits

        check_grayscale(cfg)
        digits = load_digits()  # 1,797 images, 8x8, integer intensities 0..16, shipped inside scikit-learn
        index = split_indices(len(digits.target))[split]
        images = torch.from_numpy(digits.images[index]).float().div(16).unsqueeze(1)
        return resize(images, cfg.resolution), torch.from_numpy(digits.target[index]).long()

    def fetch(self, cfg: ExperimentConfig) -> None:
        """Nothing to download: the digits ship inside scikit-learn."""

    def missing(self, cfg: ExperimentConfig) -> list[str]:
        return []

    def judge_recipe(self, cfg: ExperimentConfig) -> dict:
        return {**SMALL_CNN, "channels": cfg.channels, "num_classes": len(cfg.class_names), "epochs": cfg.judge_epochs}


def split_indices(n: int) -> dict[str, np.ndarray]:
    """The fixed 70 / 20 / 10 split of the bundled digits into train / judge_train / judge_test."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_train, n_judge = int(0.7 * n), int(0.2 * n)
    return {
        "train": order[:n_train],
        "judge_train": order[n_train : n_train + n_judge],
        "judge_test": order[n_train + n_judge :],
    }


DATASET = Digits()
