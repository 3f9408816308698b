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
place; ``latest`` (a one-line text file) is moved only after that. Nothing read from a checkpoint is trusted before
it is checked against the manifest: discovery orders checkpoints by the step in their *verified* ``state.json``, and
a damaged newest checkpoint is reported with a warning and the previous valid one is used. The newest ``keep``
checkpoints are kept, and epoch milestones (every ``checkpoint_every`` epochs) are never pruned.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

from .errors import RunError, UserError
from .files import fsync_dir, write_atomic

LATEST = "latest"
MANIFEST = "manifest.json"


class CheckpointError(UserError, RuntimeError):
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
    # a checkpoint under this name that was a milestone stays one (a preemption at the first batch of the next epoch
    # writes the same epoch-NNNN again: it must not demote it, or pruning deletes the epoch's milestone)
    milestone = milestone or (final.exists() and _was_milestone(final))
    try:
        tmp.mkdir()
        for relative, write in writers.items():
            write(tmp / relative)
        # every component is listed in state.json (which the manifest hashes): verify() requires each, so a
        # checkpoint published without one of them can never pass as complete
        (tmp / "state.json").write_text(
            json.dumps({**state, "milestone": milestone, "components": sorted(writers)}, indent=2)
        )
        (tmp / MANIFEST).write_text(json.dumps(_manifest(tmp), indent=2))
        _fsync_tree(tmp)
    except Exception as exc:  # noqa: BLE001 - a full or read-only disk is one line; anything else re-raises
        message = _disk_problem(exc, root)
        if message is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # the earlier checkpoints are untouched
        raise CheckpointError(message) from exc
    if final.exists():  # re-writing the same name (e.g. resumed and preempted again at the same step)
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)
    write_atomic(root / LATEST, name)
    _prune(root, keep)
    return final


def save_tensors(tensors: dict[str, torch.Tensor]):
    """A writer for :func:`save` that stores tensors as safetensors."""
    return lambda path: save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, path)


def verify(path: Path) -> None:
    """Raise :class:`CheckpointError` unless every file in the manifest is present with its size and hash, and every
    component the checkpoint must have (``state.json``'s ``components``; ``unet`` for checkpoints written before
    components were listed) is among them."""
    path = Path(path)
    expected = _read_manifest(path)
    for relative, (size, digest) in expected.items():
        file = path / relative
        if not file.exists() or file.stat().st_size != size or _sha256(file) != digest:
            raise CheckpointError(f"{path}: {relative} is missing or damaged")
    if "state.json" not in expected:
        raise CheckpointError(f"{path}: the manifest lists no state.json")
    required = json.loads((path / "state.json").read_text()).get("components", ["unet"])
    absent = [c for c in required if not any(f == c or f.startswith(c + "/") for f in expected)]
    if absent:
        raise CheckpointError(f"{path}: incomplete, it lacks {', '.join(absent)}")


def _disk_problem(exc: BaseException, root: Path) -> str | None:
    """A one-line reason if ``exc`` is a full (ENOSPC) or read-only (EROFS) disk, else None. safetensors reports
    these as ``SafetensorError(... (os error 28))``, not as an OSError."""
    code = getattr(exc, "errno", None) or next(
        (c for c in (errno.ENOSPC, errno.EROFS, errno.EDQUOT) if f"(os error {c})" in str(exc)), None
    )
    if code == errno.EROFS:
        return f"cannot write a checkpoint in {root}: the file system is read-only; point T2I_RUNS_DIR elsewhere"
    if code not in (errno.ENOSPC, errno.EDQUOT):
        return None
    newest = next((p for p in candidates(root.parent) if p.is_dir()), None)
    need = f"about {_folder_mb(newest):.0f} MB (the size of {newest.name})" if newest else "more space"
    free = shutil.disk_usage(root).free / 2**20
    return (
        f"no space left for a checkpoint in {root}: it needs {need}, {free:.0f} MB are free. The earlier "
        "checkpoints are intact: free some space and run the same command again to resume"
    )


def _folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _was_milestone(path: Path) -> bool:
    try:
        return bool(json.loads((path / "state.json").read_text()).get("milestone", False))
    except (OSError, ValueError):
        return False


def candidates(run_dir: Path) -> list[Path]:
    """Every checkpoint folder of a run, usable or not: newest (highest verified step) first, folders whose
    ``state.json`` does not match their manifest last."""
    root = checkpoint_dir(run_dir)
    if not root.exists():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    steps = {p: _verified_step(p) for p in found}
    return sorted(found, key=lambda p: (steps[p] is not None, steps[p] or 0, p.name), reverse=True)


def latest(run_dir: Path) -> Path | None:
    """The newest checkpoint that passes verification. If the one ``latest`` names is damaged, warn and fall back to
    the next newest valid one; None if the run has no usable checkpoint (:func:`candidates` says whether it has
    damaged ones)."""
    root = checkpoint_dir(run_dir)
    pointer = root / LATEST
    ordered = candidates(run_dir)
    named = root / pointer.read_text().strip() if pointer.exists() else None
    if named in ordered:
        ordered = [named] + [p for p in ordered if p != named]
    elif named is not None and ordered:
        warnings.warn(
            f"{pointer} names {pointer.read_text().strip()!r}, which is not a checkpoint of this run; "
            "using the newest valid one",
            stacklevel=2,
        )
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
        if "/" in checkpoint or "\\" in checkpoint or checkpoint in (".", ".."):
            raise RunError(f"--checkpoint {checkpoint!r}: name a checkpoint of the run (e.g. epoch-0005), not a path")
        path = checkpoint_dir(run_dir) / checkpoint
        if not path.is_dir():
            have = [p.name for p in candidates(run_dir)]
            raise RunError(f"no checkpoint {checkpoint!r} in {run_dir} (have: {have or 'none'})")
        verify(path)
        return path
    path = latest(run_dir)
    if path is None:
        raise RunError(f"no usable checkpoint in {run_dir}; train first")
    return path


def load_state(path: Path) -> dict:
    """The ``state.json`` of a checkpoint that passed :func:`verify`."""
    return json.loads((Path(path) / "state.json").read_text())


def load_unet(path: Path, ema: bool = False) -> UNet2DConditionModel:
    """The UNet of a checkpoint: raw weights, or the EMA weights if ``ema`` (and the checkpoint has them)."""
    sub = Path(path) / ("ema" if ema else "unet")
    if ema and not sub.exists():
        raise RunError(f"{path} has no EMA weights (trained with ema_decay=None); sample with --no-ema")
    return UNet2DConditionModel.from_pretrained(sub)


def load_weights(path: Path, ema: bool | None = None) -> tuple[UNet2DConditionModel, str]:
    """The UNet to sample with and which weights it holds (``"ema"`` or ``"raw"``): the EMA weights when the checkpoint
    has them, unless ``ema`` says otherwise (True: EMA or an error, False: the raw weights)."""
    use_ema = (Path(path) / "ema").is_dir() if ema is None else ema
    return load_unet(path, ema=use_ema), "ema" if use_ema else "raw"


def manifest_sha256(path: Path) -> str:
    """The SHA-256 of a checkpoint's manifest: one hash that names every byte of its weights and state."""
    return _sha256(Path(path) / MANIFEST)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(Path(path) / "training_state.safetensors")


def _manifest(directory: Path) -> dict[str, tuple[int, str]]:
    return {
        str(f.relative_to(directory)): (f.stat().st_size, _sha256(f))
        for f in sorted(directory.rglob("*"))
        if f.is_file() and f.name != MANIFEST
    }


def _read_manifest(path: Path) -> dict[str, tuple[int, str]]:
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
        return {str(k): (int(v[0]), str(v[1])) for k, v in manifest.items()}
    except FileNotFoundError:
        raise CheckpointError(f"{path} has no {MANIFEST} (incomplete write)") from None
    except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{path}: {MANIFEST} is damaged ({exc})") from None


def _verified_step(path: Path) -> int | None:
    """The step in a checkpoint's ``state.json`` if that file matches the manifest, else None (never trusted)."""
    try:
        size, digest = _read_manifest(path)["state.json"]
        state = Path(path) / "state.json"
        if state.stat().st_size != size or _sha256(state) != digest:
            return None
        return int(json.loads(state.read_text())["step"])
    except (CheckpointError, OSError, ValueError, KeyError, TypeError):
        return None


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
        fsync_dir(d)


def _prune(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints and every milestone; delete the rest (never the one ``latest`` names, and
    never one that cannot be verified: that is for a person to look at)."""
    named = (root / LATEST).read_text().strip()
    for path in candidates(root.parent)[keep:]:
        if path.name != named and _verified_step(path) is not None and not load_state(path).get("milestone", False):
            shutil.rmtree(path)


# --- the trainer's state: weights, EMA, optimizer, LR schedule and RNGs, as safetensors + JSON (nothing pickled) --
def save_training(run_dir: Path, name: str, unet: UNet2DConditionModel, ema, optimizer, lr_schedule,
                  rng: list[dict], state: dict, milestone: bool, keep: int, tracked=None) -> Path:  # fmt: skip
    """Checkpoint ``name``: ``unet/`` and ``ema/`` (the EMA weights in a UNet, what sampling loads), and every tensor
    of the optimizer, the EMA, the post-hoc EMA's tracked averages (``tracked``: :class:`t2i.posthoc.PowerEMA`) and each
    process's RNGs (``rng``: :func:`rng_state` per rank) in ``training_state.safetensors``; ``state`` plus their JSON
    parts in ``state.json``."""
    tensors, optimizer_json = split_optimizer_state(optimizer.state_dict())
    if tracked is not None:
        tensors.update(tracked.tensors())
        state = {**state, "phema": tracked.state()}
    for rank, rank_state in enumerate(rng):
        tensors.update({f"rng.{rank}.{k}": v for k, v in rank_state["tensors"].items()})
    writers = {"unet": lambda p: unet.save_pretrained(p, safe_serialization=True)}
    ema_json = None
    if ema is not None:
        ema_json = ema.state_dict()
        tensors.update({f"ema.{i}": p for i, p in enumerate(ema_json.pop("shadow_params"))})
        writers["ema"] = lambda p: _ema_unet(unet, ema).save_pretrained(p, safe_serialization=True)
    writers["training_state.safetensors"] = save_tensors(tensors)
    state = {
        **state,
        "optimizer": optimizer_json,
        "lr_schedule": lr_schedule.state_dict(),
        "ema": ema_json,
        "rng": [rank_state["json"] for rank_state in rng],
    }
    return save(run_dir, name, writers, state, milestone, keep)


def load_training(
    path: Path, unet: torch.nn.Module, ema, optimizer, lr_schedule, rank: int, tracked=None
) -> tuple[dict, tuple[dict, dict]]:
    """Restore what :func:`save_training` wrote into the given objects; return ``state.json`` and this rank's RNG state
    (JSON part, tensors) for :func:`set_rng_state`."""
    state, tensors = load_state(path), load_tensors(path)
    if tracked is not None:
        if "phema" not in state:
            raise RunError(
                f"{path} was written without post-hoc EMA tracking; ema_snapshot_every cannot be turned on "
                "mid-run (train a new run)"
            )
        tracked.load(state["phema"], tensors)
    unet.load_state_dict(load_unet(path).state_dict())
    optimizer.load_state_dict(join_optimizer_state(tensors, state["optimizer"]))
    lr_schedule.load_state_dict(state["lr_schedule"])
    if ema is not None:
        device = next(unet.parameters()).device
        shadow = [tensors[f"ema.{i}"].to(device) for i in range(len(ema.shadow_params))]
        ema.load_state_dict({**state["ema"], "shadow_params": shadow})
    rng = state["rng"][rank] if rank < len(state["rng"]) else None
    return state, (rng, {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"rng.{rank}.")})


def _ema_unet(unet: UNet2DConditionModel, ema) -> UNet2DConditionModel:
    """A copy of the UNet holding the EMA weights."""
    copy = UNet2DConditionModel.from_config(unet.config)
    ema.copy_to(copy.parameters())
    return copy


def split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state -> (tensors for safetensors, everything else as JSON)."""
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def join_optimizer_state(tensors: dict[str, torch.Tensor], saved: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": saved["param_groups"]}


def rng_state(generator: torch.Generator) -> dict:
    """Every RNG a training step may touch: ``{"tensors": ... for safetensors, "json": ...}``.

    The training step draws its noise, timesteps and dropout masks from ``generator`` alone, which is what makes a
    resumed run bitwise equal to an uninterrupted one. The global torch state is saved and restored too, but after a
    resume it differs from an uninterrupted run's: building the model and loading a checkpoint draw from it (weight
    initialisation before the checkpoint overwrites the weights). No training computation reads it afterwards, so
    weights and losses are unaffected (tests/test_resume.py compares them bit for bit)."""
    tensors = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {
        "tensors": tensors,
        "json": {"numpy": [kind, keys.tolist(), pos, has_gauss, gauss], "python": [version, list(internal), py_gauss]},
    }


def set_rng_state(generator: torch.Generator, json_state: dict, tensors: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    generator.set_state(tensors["generator"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    kind, keys, pos, has_gauss, gauss = json_state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = json_state["python"]
    random.setstate((version, tuple(internal), py_gauss))
