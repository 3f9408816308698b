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

from . import data, hub, paths
from .console import progress
from .files import build_lock


@dataclass(frozen=True)
class JudgeConfig:
    channels: int = 1  # input channels
    num_classes: int = 10
    arch: str = "small"  # "small" (SmallConvNet, digits) or "resnet18" (RGB datasets)
    width: int = 32  # SmallConvNet: channels of the first conv; doubled in the second
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"  # "adamw" | "sgd" (Nesterov momentum 0.9, the usual CIFAR ResNet recipe)
    learning_rate: float = 2e-3  # peak of the one-cycle schedule
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    max_shift: int = 1  # augmentation: random translation by up to this many pixels
    flip: bool = False  # augmentation: random horizontal flips (not for digits)
    multilabel: bool = False  # independent yes/no outputs (CelebA's 40 attributes) instead of one class
    resolution: int | None = None  # images are resized to this before classification (None: used as given)
    seed: int = 0


def judge_config(cfg) -> JudgeConfig:
    """The judge recipe of an experiment's dataset (its module's ``judge_recipe``)."""
    return JudgeConfig(**data.spec(cfg).judge_recipe(cfg))


class SmallConvNet(nn.Module):
    """Two conv blocks and a linear head; resolution-agnostic through adaptive pooling."""

    def __init__(self, cfg: JudgeConfig):
        super().__init__()
        w = cfg.width
        self.features = nn.Sequential(
            nn.Conv2d(cfg.channels, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Dropout(0.3),
        )
        self.head = nn.Linear(2 * w * 16, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResNet18(nn.Module):
    """torchvision's ResNet-18 adapted to small images: a 3x3 stride-1 stem and no max-pool (as for CIFAR-10),
    so a 32 px image keeps 32 px in the first stage instead of 8. Trained from scratch."""

    def __init__(self, cfg: JudgeConfig):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(num_classes=cfg.num_classes)
        net.conv1 = nn.Conv2d(cfg.channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.head, net.fc = net.fc, nn.Identity()
        self.features = net  # everything up to the pooled 512-d features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_net(cfg: JudgeConfig) -> nn.Module:
    if cfg.arch == "small":
        return SmallConvNet(cfg)
    if cfg.arch == "resnet18":
        return ResNet18(cfg)
    raise ValueError(f"unknown judge arch {cfg.arch!r}; known: small, resnet18")


class Judge:
    """A trained classifier over images in [0, 1], with the held-out accuracy it reached."""

    def __init__(
        self,
        cfg: JudgeConfig,
        net: nn.Module,
        test_accuracy: float | None = None,
        per_class_accuracy: list[float] | None = None,
    ):
        self.cfg, self.net, self.test_accuracy = cfg, net.eval(), test_accuracy
        self.per_class_accuracy = per_class_accuracy  # multi-label judges: accuracy of each output on real images

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: torch.device | str) -> "Judge":
        self.net.to(device)
        return self

    @torch.no_grad()
    def _batched(self, fn, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        self.net.eval()
        return torch.cat([fn(_standardise(self._resize(b.to(self.device)))).cpu() for b in images.split(batch_size)])

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        size = self.cfg.resolution
        if size is None or x.shape[-1] == size:
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Class index per image, or for a multi-label judge a [N, num_classes] 0/1 tensor; images [N, C, H, W] in
        [0, 1]."""
        if self.cfg.multilabel:
            return self._batched(lambda x: (self.net(x) > 0).long(), images, batch_size)
        return self._batched(lambda x: self.net(x).argmax(1), images, batch_size)

    def features(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Penultimate-layer features [N, D] (a distribution-metric feature space for offline runs)."""
        return self._batched(self.net.features, images, batch_size)

    def logits(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        return self._batched(self.net, images, batch_size)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction right; for a multi-label judge the mean over outputs of each output's accuracy."""
        return (self.predict(images) == labels).float().mean().item()

    def accuracy_per_class(self, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
        """Multi-label judges: the accuracy of each output."""
        return (self.predict(images) == labels).float().mean(0).tolist()

    def save(self, directory: Path, data: str | None = None) -> None:
        """``data``: the ``repo@commit`` the judge learned from (t2i.hub.downloaded), None for local data."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous().cpu() for k, v in self.net.state_dict().items()}, directory / "judge.safetensors")
        (directory / "judge.json").write_text(
            json.dumps(
                {
                    "config": asdict(self.cfg),
                    "test_accuracy": self.test_accuracy,
                    "per_class_accuracy": self.per_class_accuracy,
                    "data": data,
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, directory: Path) -> "Judge":
        meta = json.loads((Path(directory) / "judge.json").read_text())
        cfg = JudgeConfig(**meta["config"])
        net = build_net(cfg)
        net.load_state_dict(load_file(Path(directory) / "judge.safetensors"))
        return cls(cfg, net, meta["test_accuracy"], meta.get("per_class_accuracy"))


def train_judge(
    images: torch.Tensor,
    labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    cfg: JudgeConfig = JudgeConfig(),
    device: torch.device | str | None = None,
) -> Judge:
    """Train on (images, labels) in [0, 1] with random shifts (and flips) as augmentation, one-cycle learning rate;
    measure on the test set. Runs on the GPU when there is one."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    net = build_net(cfg).to(device)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            net.parameters(), lr=cfg.learning_rate, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(images) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.learning_rate, total_steps=steps)
    for _ in progress(range(cfg.epochs), desc=f"judge ({cfg.arch}, {len(images):,} images, {device.type})"):
        net.train()
        for index in torch.randperm(len(images)).split(cfg.batch_size):
            logits = net(_standardise(_augment(images[index].to(device), cfg)))
            target = labels[index].to(device)
            loss = (
                F.binary_cross_entropy_with_logits(logits, target.float())
                if cfg.multilabel
                else F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    judge = Judge(cfg, net)
    judge.test_accuracy = judge.accuracy(test_images, test_labels)
    if cfg.multilabel:
        judge.per_class_accuracy = judge.accuracy_per_class(test_images, test_labels)
    return judge


def judge_dir(cfg) -> Path:
    """Where the judge of a dataset at a resolution lives: ``runs/judges/<dataset>-<resolution>px/``. One judge serves
    every run of that dataset and resolution, so their adherence numbers are comparable."""
    return paths.runs_dir() / "judges" / f"{cfg.dataset}-{judge_config(cfg).resolution or cfg.resolution}px"


def for_config(cfg, retrain: bool = False) -> Judge:
    """The judge for a config's dataset and resolution, by name: loaded if it was trained before, else trained on
    the dataset's ``judge_train`` split (images the diffusion model never sees), measured on ``judge_test``, saved."""
    directory = judge_dir(cfg)
    with build_lock(directory):  # several ranks or jobs: one trains it, the others wait and load it
        source = hub.downloaded(cfg.judge_shards or cfg.shards, paths.data_dir()) if cfg.shards else None
        saved = directory / "judge.json"
        if saved.exists() and not retrain and json.loads(saved.read_text()).get("data") == source:
            return Judge.load(directory)  # (trained on data of another revision: trained again)
        recipe = judge_config(cfg)
        judge = train_judge(
            *data.load_images(cfg, "judge_train", resolution=recipe.resolution),
            *data.load_images(cfg, "judge_test", resolution=recipe.resolution),
            recipe,
        )
        judge.save(directory, data=source)
        return judge


def _standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.5


def _augment(x: torch.Tensor, cfg: JudgeConfig) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (one per batch: cheap, and enough that the judge does not
    memorise positions), and random horizontal flips per image if ``flip``."""
    dx, dy = torch.randint(-cfg.max_shift, cfg.max_shift + 1, (2,)).tolist()
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if cfg.flip:
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x
