"""Handwritten digits: MNIST through torchvision, or scikit-learn's bundled 8x8 digits for offline work.

Splits: ``train`` is what the diffusion model learns from; ``judge_train`` and ``judge_test`` are real digits
the diffusion model never sees, used to train the adherence judge and to measure the judge's own accuracy.

- MNIST: train = the 60,000 training images; judge_train = the first 8,000 test images; judge_test = the last 2,000.
- bundled digits (1,797 images): a fixed shuffle split 70% / 20% / 10% (seeded by SPLIT_SEED, not by the run seed,
  so every run and every judge sees the same split).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import paths
from ..configs import ExperimentConfig

SPLIT_SEED = 0
MNIST_JUDGE_TRAIN = 8000


def load_images(cfg: ExperimentConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, R, R] float32 in [0, 1] (the range judges, metrics and figures use) and labels [N] int64."""
    if cfg.channels != 1:
        raise ValueError(f"digit datasets are grayscale; the config asks for channels={cfg.channels}")
    images, labels = _mnist(split) if cfg.dataset == "mnist" else _bundled_digits(split)
    images = resize(images, cfg.resolution)
    if split == "train" and cfg.train_subset is not None:
        images, labels = images[: cfg.train_subset], labels[: cfg.train_subset]
    return images, labels


def _mnist(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    root = paths.data_dir()
    try:
        ds = MNIST(root, train=(split == "train"), download=False)
    except RuntimeError as exc:  # torchvision: "Dataset not found. You can use download=True to download it"
        raise FileNotFoundError(
            f"MNIST is not in {root / 'MNIST'}; run `make assets` on a node with internet "
            "(or point T2I_DATA_DIR at a directory that holds MNIST/raw)"
        ) from exc
    images = ds.data.float().div(255).unsqueeze(1)  # uint8 [N, 28, 28] -> [N, 1, 28, 28] in [0, 1]
    labels = ds.targets.long()
    if split == "judge_train":
        return images[:MNIST_JUDGE_TRAIN], labels[:MNIST_JUDGE_TRAIN]
    if split == "judge_test":
        return images[MNIST_JUDGE_TRAIN:], labels[MNIST_JUDGE_TRAIN:]
    return images, labels


def _bundled_digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()  # 1,797 images, 8x8, integer intensities 0..16, shipped inside scikit-learn
    index = bundled_split_indices(len(digits.target))[split]
    images = torch.from_numpy(digits.images[index]).float().div(16).unsqueeze(1)
    return images, torch.from_numpy(digits.target[index]).long()


def bundled_split_indices(n: int) -> dict[str, np.ndarray]:
    """The fixed 70 / 20 / 10 split of the bundled digits into train / judge_train / judge_test."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_train, n_judge = int(0.7 * n), int(0.2 * n)
    return {"train": order[:n_train], "judge_train": order[n_train:n_train + n_judge],
            "judge_test": order[n_train + n_judge:]}


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution:
        return images
    # antialias matters when shrinking (MNIST 28 -> 16); bilinear upsampling keeps the bundled digits smooth
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True,
                         align_corners=False).clamp(0, 1)
