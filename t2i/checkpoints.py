"""Training checkpoints that cannot be half-written.

``runs/<experiment>/<run>/checkpoints/<name>/`` where ``<name>`` is ``epoch-NNNN`` at the end of an epoch and
``step-NNNNNNNN`` mid-epoch (preemption, ``checkpoint_every_steps``). Each holds:

- ``unet/`` and ``ema/``: diffusers ``save_pretrained`` (safetensors + config.json), so sampling loads them with the
  same ``from_pretrained`` as any diffusers model; ``ema/config.json`` also carries the EMA's own state;
- ``training_state.safetensors``: optimizer tensors and every RNG state (torch CPU/CUDA, the trainer's noise
  generator), never pickled;
- ``state.json``: epoch, step, position within the epoch, data seed, config, optimizer hyper-parameters, LR schedule,
  NumPy and Python RNG states;
- ``manifest.json``, written last: size and SHA-256 of every file above.

A checkpoint is written under a temporary name, every file and the folder are fsynced, and it is renamed into
place; ``latest`` (a one-line text file) is moved only after that. On load, the manifest is checked; a damaged newest
checkpoint is reported with a warning and the previous one is used. The newest ``keep`` checkpoints are kept, and
epoch milestones (every ``checkpoint_every`` epochs) are never pruned.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

LATEST = "latest"
MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or fails its manifest."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def name_for(epoch: int, step: int, step_in_epoch: int) -> str:
    return f"epoch-{epoch:04d}" if step_in_epoch == 0 else f"step-{step:08d}"


def save(run_dir: Path, name: str, writers: dict, state: dict, milestone: bool, keep: int) -> Path:
    """Write checkpoint ``name`` atomically, move ``latest`` to it, prune old ones.

    ``writers`` maps a relative path to a function that writes it (a directory for ``save_pretrained``, or a file).
    """
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / name, root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for relative, write in writers.items():
        write(tmp / relative)
    (tmp / "state.json").write_text(json.dumps({**state, "milestone": milestone}, indent=2))
    (tmp / MANIFEST).write_text(json.dumps(_manifest(tmp), indent=2))
    _fsync_tree(tmp)
    if final.exists():  # re-writing the same name (e.g. resumed and preempted again at the same step)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    _write_atomic(root / LATEST, name)
    _prune(root, keep)
    return final


def save_tensors(tensors: dict[str, torch.Tensor]):
    """A writer for :func:`save` that stores tensors as safetensors."""
    return lambda path: save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, path)


def verify(path: Path) -> None:
    """Raise :class:`CheckpointError` unless every file in the manifest is present with its size and hash."""
    path = Path(path)
    if not (path / MANIFEST).exists():
        raise CheckpointError(f"{path} has no {MANIFEST} (incomplete write)")
    expected = json.loads((path / MANIFEST).read_text())
    for relative, (size, digest) in expected.items():
        file = path / relative
        if not file.exists() or file.stat().st_size != size or _sha256(file) != digest:
            raise CheckpointError(f"{path}: {relative} is missing or damaged")


def candidates(run_dir: Path) -> list[Path]:
    """All checkpoints of a run, newest (highest step) first."""
    root = checkpoint_dir(run_dir)
    if not root.exists():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "state.json").exists()]
    return sorted(found, key=lambda p: json.loads((p / "state.json").read_text())["step"], reverse=True)


def latest(run_dir: Path) -> Path | None:
    """The newest checkpoint that passes verification. If the one ``latest`` names is damaged, warn and fall back to
    the next newest valid one; None if the run has no checkpoint."""
    root = checkpoint_dir(run_dir)
    pointer = root / LATEST
    ordered = candidates(run_dir)
    if pointer.exists():
        named = root / pointer.read_text().strip()
        ordered = [named] + [p for p in ordered if p != named]
    for path in ordered:
        try:
            verify(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping damaged checkpoint: {exc}", stacklevel=2)
            continue
        return path
    return None


def resolve(run_dir: Path, checkpoint: str | None = None) -> Path:
    """A checkpoint of a run by name (``epoch-0005``) or the latest valid one; a clear error if there is none."""
    if checkpoint:
        path = checkpoint_dir(run_dir) / checkpoint
        if not path.is_dir():
            have = [p.name for p in candidates(run_dir)]
            raise FileNotFoundError(f"no checkpoint {checkpoint!r} in {run_dir} (have: {have or 'none'})")
        verify(path)
        return path
    path = latest(run_dir)
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}; train first")
    return path


def load_state(path: Path) -> dict:
    return json.loads((Path(path) / "state.json").read_text())


def load_unet(path: Path, ema: bool = False) -> UNet2DConditionModel:
    """The UNet of a checkpoint: raw weights, or the EMA weights if ``ema`` (and the checkpoint has them)."""
    sub = Path(path) / ("ema" if ema else "unet")
    if ema and not sub.exists():
        raise FileNotFoundError(f"{path} has no EMA weights (trained with ema_decay=None); load with ema=False")
    return UNet2DConditionModel.from_pretrained(sub)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(Path(path) / "training_state.safetensors")


def _manifest(directory: Path) -> dict[str, tuple[int, str]]:
    return {str(f.relative_to(directory)): (f.stat().st_size, _sha256(f))
            for f in sorted(directory.rglob("*")) if f.is_file() and f.name != MANIFEST}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_tree(directory: Path) -> None:
    for f in directory.rglob("*"):
        if f.is_file():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
    for d in [directory, *[d for d in directory.rglob("*") if d.is_dir()]]:
        _fsync_dir(d)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _prune(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints and every milestone; delete the rest (never the one ``latest`` names)."""
    named = (root / LATEST).read_text().strip()
    ordered = candidates(root.parent)
    for path in ordered[keep:]:
        if path.name != named and not load_state(path).get("milestone", False):
            shutil.rmtree(path)
