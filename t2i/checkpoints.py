"""Training checkpoints: ``runs/<experiment>/<run>/checkpoints/epoch-NNNN/``.

Each holds ``unet/`` (diffusers ``save_pretrained``: safetensors + config.json, reloadable with
``UNet2DConditionModel.from_pretrained``), ``optimizer.pt`` (a plain state dict, loaded with
``weights_only=True``) and ``state.json`` (epoch, step, the run's config). A checkpoint is written under a
temporary name and renamed into place, and ``checkpoints/latest`` is moved only after that, so a killed job
never leaves a half-written checkpoint behind a valid-looking name.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

LATEST = "latest"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save(run_dir: Path, unet: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> Path:
    """Write checkpoint ``epoch-{state['epoch']:04d}`` atomically and point ``latest`` at it."""
    root = checkpoint_dir(run_dir)
    final = root / f"epoch-{state['epoch']:04d}"
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    unet.save_pretrained(tmp / "unet", safe_serialization=True)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_atomic(root / LATEST, final.name)
    return final


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = checkpoint_dir(run_dir) / LATEST
    if not pointer.exists():
        return None
    path = checkpoint_dir(run_dir) / pointer.read_text().strip()
    if not (path / "state.json").exists():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is missing or incomplete")
    return path


def resolve(run_dir: Path, checkpoint: str | None = None) -> Path:
    """A checkpoint of a run by name (``epoch-0005``) or the latest one; a clear error if there is none."""
    path = checkpoint_dir(run_dir) / checkpoint if checkpoint else latest(run_dir)
    if path is None or not (path / "state.json").exists():
        have = sorted(p.name for p in checkpoint_dir(run_dir).glob("epoch-*")) if checkpoint_dir(run_dir).exists() else []
        raise FileNotFoundError(f"no checkpoint {checkpoint or 'latest'!r} in {run_dir} (have: {have or 'none'}); train first")
    return path


def load_state(path: Path) -> dict:
    return json.loads((Path(path) / "state.json").read_text())


def load_unet(path: Path) -> UNet2DConditionModel:
    return UNet2DConditionModel.from_pretrained(Path(path) / "unet")


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    optimizer.load_state_dict(torch.load(Path(path) / "optimizer.pt", weights_only=True, map_location="cpu"))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
