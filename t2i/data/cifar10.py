"""CIFAR-10 through torchvision (thesis 3.3.3); the smoke profile reads synthetic shards in the same parquet layout.

train = judge_train = the 50,000 training images; judge_test = the 10,000 test images. Unlike the digits, the
judge trains on the diffusion model's training set: a ResNet-18 needs all 50,000 images to reach the >= 93% that
makes it a trustworthy judge (8,000 give ~80%), and which real images a judge learned from does not bias the
adherence it measures on generated ones. Its accuracy is measured on the test set, which nothing trains on.
"""

from __future__ import annotations

import torch

from .. import paths
from ..configs import ExperimentConfig
from ..errors import MissingAsset
from .mnist import resize
from .base import RESNET18, DatasetSpec


class Cifar10(DatasetSpec):
    name = "cifar10"
    card_id = "uoft-cs/cifar10"
    terms = (
        "other",
        "CIFAR-10's license is unknown (its dataset card says so); use for research",
        "https://huggingface.co/datasets/uoft-cs/cifar10",
    )

    def local_images(self, cfg: ExperimentConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.datasets import CIFAR10

        try:
            ds = CIFAR10(paths.data_dir(), train=(split != "judge_test"), download=False)
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
            raise MissingAsset(
                f"CIFAR-10 is not in {paths.data_dir() / 'cifar-10-batches-py'}; run `make assets EXPERIMENTS=cifar10` "
                "on a node with internet (or point T2I_DATA_DIR at a directory that holds cifar-10-batches-py)"
            ) from exc
        # uint8 [N, 32, 32, 3] -> [N, 3, 32, 32]
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div(255)
        return resize(images, cfg.resolution), torch.tensor(ds.targets, dtype=torch.long)

    def fetch(self, cfg: ExperimentConfig) -> None:
        from torchvision.datasets import CIFAR10

        for train in (True, False):
            CIFAR10(paths.data_dir(), train=train, download=True)

    def missing(self, cfg: ExperimentConfig) -> list[str]:
        if cfg.shards is not None:
            return super().missing(cfg)
        folder = paths.data_dir() / "cifar-10-batches-py"
        return [] if (folder / "test_batch").exists() else [f"CIFAR-10 under {folder}"]

    def judge_recipe(self, cfg: ExperimentConfig) -> dict:
        return class_resnet_recipe(cfg)


def class_resnet_recipe(cfg: ExperimentConfig) -> dict:
    """A CIFAR-style ResNet-18 for RGB classes: SGD, crop-style shifts, flips, label smoothing (>= 93% on CIFAR-10 is
    the target)."""
    return {
        **RESNET18,
        "channels": cfg.channels,
        "num_classes": len(cfg.class_names),
        "epochs": cfg.judge_epochs,
        "label_smoothing": 0.1,
        "max_shift": max(1, cfg.resolution // 8),
    }


DATASET = Cifar10()
