"""CIFAR-10 through torchvision (thesis 3.3.3).

train = judge_train = the 50,000 training images; judge_test = the 10,000 test images. Unlike the digits, the
judge trains on the diffusion model's training set: a ResNet-18 needs all 50,000 images to reach the >= 93% that
makes it a trustworthy judge (8,000 give ~80%), and which real images a judge learned from does not bias the
adherence it measures on generated ones. Its accuracy is measured on the test set, which nothing trains on.
"""

from __future__ import annotations

import torch

from .. import paths


def load_images(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 3, 32, 32] float32 in [0, 1] and labels [N] int64."""
    from torchvision.datasets import CIFAR10

    root = paths.data_dir()
    try:
        ds = CIFAR10(root, train=(split != "judge_test"), download=False)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
        raise FileNotFoundError(
            f"CIFAR-10 is not in {root / 'cifar-10-batches-py'}; run `make assets EXPERIMENT=cifar10` on a node with "
            "internet (or point T2I_DATA_DIR at a directory that holds cifar-10-batches-py)") from exc
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div(255)  # uint8 [N, 32, 32, 3] -> [N, 3, 32, 32]
    return images, torch.tensor(ds.targets, dtype=torch.long)
