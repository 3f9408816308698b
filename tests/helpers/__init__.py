"""What several test files share."""

from pathlib import Path

import torch

from t2i import checkpoints

ROOT = Path(__file__).resolve().parents[2]  # the project root


def weights(run: Path, ema: bool = False) -> dict[str, torch.Tensor]:
    """The UNet weights of a run's newest checkpoint."""
    return checkpoints.load_unet(checkpoints.latest(run), ema=ema).state_dict()
