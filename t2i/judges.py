"""Judges: classifiers trained on real held-out images that measure prompt adherence of generated ones.

A judge is only as good as its own accuracy, so every judge carries the accuracy it reached on real images
it did not train on, and every adherence number is reported next to it. (The thesis scored CIFAR-10 with an
ImageNet ResNet-18 that was never trained on CIFAR-10, at 9-16% accuracy; that cannot measure adherence.)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from . import paths
from .console import progress


@dataclass(frozen=True)
class JudgeConfig:
    channels: int = 1  # input channels
    num_classes: int = 10
    width: int = 32  # channels of the first conv; doubled in the second
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0


class SmallConvNet(nn.Module):
    """Two conv blocks and a linear head; resolution-agnostic through adaptive pooling."""

    def __init__(self, cfg: JudgeConfig):
        super().__init__()
        w = cfg.width
        self.features = nn.Sequential(
            nn.Conv2d(cfg.channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.3),
        )
        self.head = nn.Linear(2 * w * 16, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Judge:
    """A trained classifier over images in [0, 1], with the held-out accuracy it reached."""

    def __init__(self, cfg: JudgeConfig, net: SmallConvNet, test_accuracy: float | None = None):
        self.cfg, self.net, self.test_accuracy = cfg, net.eval(), test_accuracy

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Class index per image; images [N, C, H, W] in [0, 1]."""
        self.net.eval()
        return torch.cat([self.net(_standardise(b)).argmax(1) for b in images.split(batch_size)])

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Penultimate-layer features [N, D] (a distribution-metric feature space for offline runs)."""
        self.net.eval()
        return torch.cat([self.net.features(_standardise(b)) for b in images.split(batch_size)])

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        self.net.eval()
        return torch.cat([self.net(_standardise(b)) for b in images.split(batch_size)])

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        return (self.predict(images) == labels).float().mean().item()

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.net.state_dict(), directory / "judge.safetensors")
        (directory / "judge.json").write_text(json.dumps({"config": asdict(self.cfg), "test_accuracy": self.test_accuracy}, indent=2))

    @classmethod
    def load(cls, directory: Path) -> "Judge":
        meta = json.loads((Path(directory) / "judge.json").read_text())
        cfg = JudgeConfig(**meta["config"])
        net = SmallConvNet(cfg)
        net.load_state_dict(load_file(Path(directory) / "judge.safetensors"))
        return cls(cfg, net, meta["test_accuracy"])


def train_judge(images: torch.Tensor, labels: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor,
                cfg: JudgeConfig = JudgeConfig()) -> Judge:
    """Train on (images, labels) in [0, 1] with small random shifts as augmentation; measure on the test set."""
    torch.manual_seed(cfg.seed)
    net = SmallConvNet(cfg)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.learning_rate, total_steps=cfg.epochs * -(-len(images) // cfg.batch_size))
    for _ in progress(range(cfg.epochs), desc="judge"):
        net.train()
        for index in torch.randperm(len(images)).split(cfg.batch_size):
            loss = F.cross_entropy(net(_standardise(_shift(images[index]))), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    judge = Judge(cfg, net)
    judge.test_accuracy = judge.accuracy(test_images, test_labels)
    return judge


def judge_dir(cfg) -> Path:
    """Where the judge of a dataset at a resolution lives: ``runs/judges/<dataset>-<resolution>px/``. One judge serves
    every run of that dataset and resolution, so their adherence numbers are comparable."""
    return paths.runs_dir() / "judges" / f"{cfg.dataset}-{cfg.resolution}px"


def for_config(cfg, retrain: bool = False) -> Judge:
    """The judge for a config's dataset and resolution, by name: loaded if it was trained before, else trained on
    the dataset's ``judge_train`` split (images the diffusion model never sees), measured on ``judge_test``, saved."""
    from . import data

    directory = judge_dir(cfg)
    if (directory / "judge.json").exists() and not retrain:
        return Judge.load(directory)
    judge = train_judge(*data.load_images(cfg, "judge_train"), *data.load_images(cfg, "judge_test"),
                        JudgeConfig(channels=cfg.channels, num_classes=len(cfg.class_names)))
    judge.save(directory)
    return judge


def _standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.5


def _shift(x: torch.Tensor, max_pixels: int = 1) -> torch.Tensor:
    """Random translation by up to ``max_pixels``: cheap augmentation so the judge does not memorise positions."""
    dx, dy = torch.randint(-max_pixels, max_pixels + 1, (2,)).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))
