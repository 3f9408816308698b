"""MNIST through torchvision (thesis 3.2.3).

Splits: ``train`` = the 60,000 training images (what the diffusion model learns from); ``judge_train`` = the first
8,000 test images and ``judge_test`` = the last 2,000: real digits the diffusion model never sees, used to train the
adherence judge and to measure the judge's own accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import paths
from ..configs import ExperimentConfig
from ..errors import MissingAsset
from .base import SMALL_CNN, DatasetSpec

JUDGE_TRAIN = 8000


class Mnist(DatasetSpec):
    name = "mnist"
    card_id = "ylecun/mnist"
    terms = (
        "cc-by-sa-3.0",
        "MNIST (Yann LeCun, Corinna Cortes) is made available under CC BY-SA 3.0",
        "https://www.tensorflow.org/api_docs/python/tf/keras/datasets/mnist/load_data",
    )

    def local_images(self, cfg: ExperimentConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.datasets import MNIST

        check_grayscale(cfg)
        try:
            ds = MNIST(paths.data_dir(), train=(split == "train"), download=False)
        except RuntimeError as exc:  # torchvision: "Dataset not found. You can use download=True to download it"
            raise MissingAsset(
                f"MNIST is not in {paths.data_dir() / 'MNIST'}; run `make assets EXPERIMENTS=mnist` on a node with "
                "internet (or point T2I_DATA_DIR at a directory that holds MNIST/raw)"
            ) from exc
        images = ds.data.float().div(255).unsqueeze(1)  # uint8 [N, 28, 28] -> [N, 1, 28, 28] in [0, 1]
        labels = ds.targets.long()
        if split == "judge_train":
            images, labels = images[:JUDGE_TRAIN], labels[:JUDGE_TRAIN]
        elif split == "judge_test":
            images, labels = images[JUDGE_TRAIN:], labels[JUDGE_TRAIN:]
        return resize(images, cfg.resolution), labels

    def fetch(self, cfg: ExperimentConfig) -> None:
        from torchvision.datasets import MNIST

        for train in (True, False):
            MNIST(paths.data_dir(), train=train, download=True)

    def missing(self, cfg: ExperimentConfig) -> list[str]:
        raw = paths.data_dir() / "MNIST" / "raw"
        return [] if (raw / "t10k-labels-idx1-ubyte").exists() else [f"MNIST under {raw}"]

    def judge_recipe(self, cfg: ExperimentConfig) -> dict:
        return {**SMALL_CNN, "channels": cfg.channels, "num_classes": len(cfg.class_names), "epochs": cfg.judge_epochs}


def check_grayscale(cfg: ExperimentConfig) -> None:
    if cfg.channels != 1:
        raise ValueError(f"digit datasets are grayscale; the config asks for channels={cfg.channels}")


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Square images [N, C, H, W] in [0, 1] to ``resolution``: antialiased when shrinking (MNIST 28 -> 16), bilinear
    upsampling keeps the bundled 8x8 digits smooth."""
    if images.shape[-1] == resolution:
        return images
    return F.interpolate(
        images, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
    ).clamp(0, 1)


DATASET = Mnist()
