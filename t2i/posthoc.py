"""Post-hoc EMA (Karras et al. 2024, "Analyzing and improving the training dynamics of diffusion models", section 3):
choose the EMA length after training, from snapshots of two power-function EMAs.

- **Tracking** (:class:`PowerEMA`, EDM2 eqs. 3-4 and Algorithm 2): for each relative length ``sigma_rel`` (EDM2 tracks
  0.05 and 0.10) an average updated after every optimizer step t with beta_t = (1 - 1/t)^(gamma + 1), where gamma
  solves sigma_rel^2 = (gamma + 1) / ((gamma + 2)^2 (gamma + 3)). EDM2 counts training images, t2i optimizer steps;
  with t2i's fixed batch, 1/t is the same fraction either way. Its state is saved in every checkpoint, so a resumed
  run tracks on bitwise as an uninterrupted one.
- **Snapshots** every ``ema_snapshot_every`` optimizer updates: both averages in half precision, one safetensors file
  in ``<run>/ema_snapshots/`` named by the training step (batches, the unit checkpoints count in, so a checkpoint
  and a resume see exactly the snapshots taken before them, with gradient accumulation too); the updates, which
  the profiles are functions of, and a SHA-256 of the tensors are in its metadata. Written atomically; a resume
  drops those after its checkpoint.
- **Reconstruction** (:func:`reconstruct`, EDM2 Algorithm 3): any sigma_rel as the least-squares combination of the
  snapshots' weight profiles (each a power function of training time), solved in closed form and normalised to sum
  to 1, as EDM2's ``solve_posthoc_coefficients``. Every snapshot is verified first (its checksum, its tensors'
  names and shapes, finite values): a damaged one is left out with a warning that names it, and the fit error then
  says what leaving it out cost; without two good snapshots, or with the newest one damaged, it is an error that
  names the file. The result is cached under a key made of the snapshots' checksums and verified when read.
- **Presets** (:func:`write_presets`, :func:`preset`): the lengths ``make ema`` chose, kept in the run
  (``ema_presets.json``) for the checkpoint they were chosen on; sampling that checkpoint uses them by default.

ema-pytorch's ``PostHocEMA`` implements the same idea but is not used: it saves snapshots with ``torch.save``
(pickle), does not normalise the solved coefficients (a fit that sums to 0.98 scales every weight by 0.98), updates
every 100 steps by default with a beta that ignores the skipped steps, and keeps its tracked state in a module that
t2i's pickle-free checkpoints would have to take apart anyway.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .errors import RunError
from .files import fsync_dir, write_atomic

SNAPSHOTS = "ema_snapshots"  # <run>/ema_snapshots/step-NNNNNNNN.safetensors
RECONSTRUCTED = "reconstructed"  # <run>/ema_snapshots/reconstructed/<key>.safetensors: the cache
PRESETS = "ema_presets.json"  # <run>/ema_presets.json: the lengths `make ema` chose (write_presets)
FIT_LIMIT = 0.05  # a reconstruction whose profile misses its target by more is not to be trusted (EDM2 Fig. 5)
SIGMA_RELS = (0.05, 0.10)  # EDM2's tracked profiles (sec. 3.3)
RANGE = (0.01, 0.25)  # the lengths reconstructions are offered for (EDM2 Fig. 5 sweeps 0.01-0.25)
NAME = re.compile(r"^step-(\d{8})\.safetensors$")


def gamma(sigma_rel: float) -> float:
    """The exponent of the power function with relative standard deviation ``sigma_rel`` (EDM2 Algorithm 2:
    the largest real root of gamma^3 + 7 gamma^2 + (16 - 1/sigma_rel^2) gamma + (12 - 1/sigma_rel^2))."""
    t = sigma_rel**-2
    return float(np.roots([1, 7, 16 - t, 12 - t]).real.max())


def beta(sigma_rel: float, step: int) -> float:
    """The power-function EMA's decay after optimizer step ``step`` (counted from 1): (1 - 1/t)^(gamma + 1); 0 at the
    first step, so the average starts as the weights."""
    return (1 - 1 / step) ** (gamma(sigma_rel) + 1)


class PowerEMA:
    """Power-function EMAs of the trained parameters, one per ``sigma_rel``; :meth:`step` after every update."""

    def __init__(
        self,
        named_params: list[tuple[str, torch.nn.Parameter]],
        sigma_rels: tuple[float, ...] = SIGMA_RELS,
        every: int | None = None,
        images_per_step: int = 1,
    ):
        self.every, self.images_per_step = every, images_per_step  # snapshot every ``every`` steps (None: never)
        self.names = [n for n, _ in named_params]
        self.params = [p for _, p in named_params]
        self.sigma_rels = tuple(float(s) for s in sigma_rels)
        self.gammas = [gamma(s) for s in self.sigma_rels]
        self.averages = [[p.detach().clone().float() for p in self.params] for _ in self.sigma_rels]
        self.steps = 0

    @classmethod
    def for_config(cls, cfg, unet: torch.nn.Module, accelerator, total_steps: int) -> "PowerEMA | None":
        """The tracking a config asks for (``ema_snapshot_every``), or None; says up front what its snapshots take."""
        if not cfg.ema_snapshot_every:
            return None
        tracked = cls(
            list(unet.named_parameters()),
            cfg.ema_sigma_rels,
            cfg.ema_snapshot_every,
            cfg.batch_size * accelerator.num_processes * cfg.gradient_accumulation_steps,
        )
        found = plan(total_steps, cfg.ema_snapshot_every, sum(p.numel() for p in tracked.params), cfg.ema_sigma_rels)
        accelerator.print(
            f"post-hoc EMA: lengths {list(tracked.sigma_rels)} tracked, {found['snapshots']} snapshots "
            f"(every {cfg.ema_snapshot_every} of {total_steps:,} steps), {found['bytes'] / 2**20:,.1f} "
            "MiB in half precision"
        )
        return tracked

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        for g, average in zip(self.gammas, self.averages):
            b = (1 - 1 / self.steps) ** (g + 1)
            torch._foreach_lerp_(average, [p.detach().float() for p in self.params], 1 - b)

    def update(self, run_dir: Path, write: bool, batch: int | None = None) -> None:
        """After an optimizer step: track it, and write a snapshot when one is due (``write``: the main process),
        named by ``batch``, the training step checkpoints count (the update count when not given)."""
        self.step()
        if write and self.every and self.steps % self.every == 0:
            self.snapshot(run_dir, self.steps * self.images_per_step, self.steps if batch is None else batch)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tracked state as named tensors (for checkpoints), in full precision."""
        return {
            f"phema.{k}.{name}": t for k, average in enumerate(self.averages) for name, t in zip(self.names, average)
        }

    def state(self) -> dict:
        return {"steps": self.steps, "sigma_rels": list(self.sigma_rels)}

    def load(self, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        if tuple(state["sigma_rels"]) != self.sigma_rels:
            raise RunError(f"the checkpoint tracks EMA lengths {state['sigma_rels']}, the config {self.sigma_rels}")
        self.steps = state["steps"]
        for k, average in enumerate(self.averages):
            for name, t in zip(self.names, average):
                t.copy_(tensors[f"phema.{k}.{name}"])

    def snapshot(self, run_dir: Path, images: int, batch: int) -> Path:
        """Write both averages (half precision) as ``ema_snapshots/step-<batch>.safetensors``, atomically, with the
        update count and a checksum of the tensors in its metadata."""
        tensors = {
            f"{sigma:g}/{name}": t.detach().to(torch.float16).cpu().contiguous()
            for sigma, average in zip(self.sigma_rels, self.averages)
            for name, t in zip(self.names, average)
        }
        return _save(
            Path(run_dir) / SNAPSHOTS / f"step-{batch:08d}.safetensors",
            tensors,
            {
                "step": str(batch),
                "updates": str(self.steps),
                "images": str(images),
                "sigma_rels": json.dumps(list(self.sigma_rels)),
            },
        )


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors: every name, dtype, shape and the bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """``tensors`` as a safetensors file with their :func:`checksum` in its metadata; temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, tmp, metadata={**metadata, "sha256": checksum(tensors)})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def _load_verified(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A snapshot's (or cached reconstruction's) tensors and metadata, or ValueError saying what is wrong with it: it
    does not parse, its checksum does not match its tensors, or a value is not finite."""
    try:
        with safe_open(path, "pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(path)
    except Exception as exc:  # safetensors raises its own errors, OSError, or others on damaged headers
        raise ValueError(f"cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if "sha256" in metadata and checksum(tensors) != metadata["sha256"]:
        raise ValueError("its tensors do not match its checksum (damaged)")
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"{len(bad)} tensor(s) hold NaN or infinite values ({bad[0]}, ...)")
    return tensors, metadata


def snapshots(run_dir: Path, up_to_step: int | None = None) -> list[tuple[int, Path]]:
    """The run's snapshots as (step, file), in order (those after ``up_to_step`` left out)."""
    folder = Path(run_dir) / SNAPSHOTS
    found = sorted((int(m[1]), p) for p in folder.glob("step-*.safetensors") if (m := NAME.match(p.name)))
    return [(s, p) for s, p in found if up_to_step is None or s <= up_to_step]


def drop_after(run_dir: Path, step: int) -> None:
    """A run resumed from a checkpoint at ``step`` forgets the snapshots a killed attempt wrote after it."""
    for s, path in snapshots(run_dir):
        if s > step:
            path.unlink()


def p_dot_p(t_a, gamma_a, t_b, gamma_b):
    """The inner product of two power-function weight profiles p(tau) = (gamma + 1) tau^gamma / t^(gamma + 1) on
    [0, t] (EDM2's ``p_dot_p``)."""
    t_ratio = t_a / t_b
    t_exp = np.where(t_a < t_b, gamma_b, -gamma_a)
    t_max = np.maximum(t_a, t_b)
    return (gamma_a + 1) * (gamma_b + 1) * t_ratio**t_exp / ((gamma_a + gamma_b + 1) * t_max)


def coefficients(steps: np.ndarray, sigma_rels: np.ndarray, out_step: float, out_sigma_rel: float) -> np.ndarray:
    """EDM2 Algorithm 3: the least-squares weights of the snapshots (taken at ``steps`` with lengths ``sigma_rels``)
    whose profiles combine into the profile of length ``out_sigma_rel`` at ``out_step``, normalised to sum to 1."""
    in_t = np.asarray(steps, np.float64).reshape(-1, 1)
    in_g = np.array([gamma(s) for s in sigma_rels], np.float64).reshape(-1, 1)
    A = p_dot_p(in_t, in_g, in_t.T, in_g.T)
    b = p_dot_p(in_t, in_g, np.float64(out_step), np.float64(gamma(out_sigma_rel)))
    x = np.linalg.solve(A, b).reshape(-1)
    return x / x.sum()


def reconstruct(run_dir: Path, sigma_rel: float, at_step: int | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights of a power-function EMA of length ``sigma_rel`` at the last snapshot (at or before ``at_step``),
    from the verified snapshots (damaged ones left out with a warning; see the module's docstring); cached under a
    key of the snapshots' checksums. Returns the parameters by name and what made them (``left_out``: the files not
    used; ``profile_error``: the fit of the snapshots used)."""
    lo, hi = RANGE
    if not lo <= sigma_rel <= hi:
        raise RunError(f"--ema-length {sigma_rel:g} is outside the range post-hoc EMA is offered for, [{lo:g}, {hi:g}]")
    found = snapshots(run_dir, at_step)
    if len(found) < 2:
        raise RunError(
            f"{run_dir} has {len(found)} post-hoc EMA snapshot(s)"
            f"{'' if at_step is None else f' up to step {at_step}'}; --ema-length needs a run trained with "
            "ema_snapshot_every set (and two snapshots)"
        )
    good, left_out = _verified(found)
    if found[-1][1] in left_out:
        raise RunError(
            f"the newest post-hoc EMA snapshot{'' if at_step is None else f' up to step {at_step}'}, "
            f"{found[-1][1]}, {left_out[found[-1][1]]}: restore it, or pass --ema-length with an earlier "
            "checkpoint"
        )
    if len(good) < 2:
        raise RunError(
            f"{run_dir}: fewer than two usable post-hoc EMA snapshots; "
            + "; ".join(f"{p} {why}" for p, why in left_out.items())
        )
    tracked = json.loads(good[0][2]["sigma_rels"])
    updates = [int(meta.get("updates", meta["step"])) for _, _, meta in good]  # the profiles' time (older files:
    steps = np.repeat(updates, len(tracked))  # "step" counted updates)
    lengths = np.tile(tracked, len(good))
    weights = coefficients(steps, lengths, updates[-1], sigma_rel)
    info = {
        "sigma_rel": sigma_rel,
        "step": found[-1][0],
        "snapshots": len(good),
        "tracked": tracked,
        "profile_error": profile_error(steps, lengths, weights, updates[-1], sigma_rel),
        "left_out": [p.name for p in left_out],
    }
    if left_out and info["profile_error"] > FIT_LIMIT:
        raise RunError(
            f"without the damaged snapshot(s) {', '.join(map(str, left_out))} "
            f"({'; '.join(left_out.values())}) sigma_rel={sigma_rel:g} fits its profile only to "
            f"{info['profile_error']:.1%}: restore them"
        )
    key = hashlib.sha256(json.dumps([sigma_rel, found[-1][0], [meta["sha256"] for _, _, meta in good]]).encode())
    cache = Path(run_dir) / SNAPSHOTS / RECONSTRUCTED / f"sigma{sigma_rel:g}-{key.hexdigest()[:24]}.safetensors"
    if cache.exists():
        try:
            return _load_verified(cache)[0], info
        except ValueError as exc:
            warnings.warn(f"rebuilding the post-hoc EMA cache {cache}: it {exc}", stacklevel=2)
    total: dict[str, torch.Tensor] = {}
    k = 0
    for _, path, _ in good:
        tensors = _load_verified(path)[0]  # verified again: read once more, it may have changed since
        for sigma in tracked:
            prefix = f"{sigma:g}/"
            for key_, t in tensors.items():
                if key_.startswith(prefix):
                    name = key_[len(prefix) :]
                    total[name] = total.get(name, 0) + float(weights[k]) * t.double()
            k += 1
    params = {name: t.float() for name, t in total.items()}
    if not all(torch.isfinite(t).all() for t in params.values()):
        raise RunError(
            f"the post-hoc EMA sigma_rel={sigma_rel:g} of {run_dir} is not finite (coefficients up to "
            f"{np.abs(weights).max():.3g} on half-precision snapshots): choose a longer length"
        )
    _save(cache, params, {"sigma_rel": str(sigma_rel), "step": str(found[-1][0])})
    return params, info


_SEEN: dict[tuple[str, int, int], tuple[dict, frozenset] | str] = {}


def _verified(found: list[tuple[int, Path]]) -> tuple[list[tuple[int, Path, dict]], dict[Path, str]]:
    """The snapshots that pass :func:`_load_verified` and hold the tensors (names and shapes) most of them hold, with
    their metadata (a checksum computed now for older files that carry none), and those left out with the reason,
    each warned about by name."""
    checked, left_out = [], {}
    for step, path in found:
        stat = path.stat()
        seen = (str(path), stat.st_size, stat.st_mtime_ns)  # verified once per process while the file is unchanged
        if seen not in _SEEN:
            try:
                tensors, meta = _load_verified(path)
                _SEEN[seen] = (
                    {**meta, "sha256": meta.get("sha256") or checksum(tensors)},
                    frozenset((k, tuple(t.shape)) for k, t in tensors.items()),
                )
            except ValueError as exc:
                _SEEN[seen] = str(exc)
        if isinstance(_SEEN[seen], str):
            left_out[path] = _SEEN[seen]
        else:
            checked.append((step, path, *_SEEN[seen]))
    if checked:
        usual = Counter(layout for *_, layout in checked).most_common(1)[0][0]
        for step, path, meta, layout in checked:
            if layout != usual or "sigma_rels" not in meta:
                left_out[path] = "holds other tensors than the run's other snapshots (another model's?)"
    for path, why in left_out.items():
        warnings.warn(f"post-hoc EMA: left out {path}: it {why}", stacklevel=3)
    return [(s, p, m) for s, p, m, _ in checked if p not in left_out], left_out


def profile_error(
    steps: np.ndarray, lengths: np.ndarray, weights: np.ndarray, out_step: float, out_sigma_rel: float
) -> float:
    """How well the snapshots' profiles combine into the target's: || sum x_i p_i - p_out || / || p_out || (EDM2
    Fig. 5 shows these fits; the reconstruction is as good as this error allows)."""
    in_t = np.asarray(steps, np.float64).reshape(-1, 1)
    in_g = np.array([gamma(s) for s in lengths], np.float64).reshape(-1, 1)
    A = p_dot_p(in_t, in_g, in_t.T, in_g.T)
    b = p_dot_p(in_t, in_g, np.float64(out_step), np.float64(gamma(out_sigma_rel))).reshape(-1)
    g_out = gamma(out_sigma_rel)
    p_out = p_dot_p(np.float64(out_step), g_out, np.float64(out_step), g_out)
    residual = weights @ A @ weights - 2 * weights @ b + p_out
    return float(math.sqrt(max(residual, 0.0) / p_out))


def plan(total_steps: int, every: int, parameters: int, sigma_rels: tuple[float, ...] = SIGMA_RELS) -> dict:
    """How many snapshots a run writes and the disk they take (half precision), stated before it starts."""
    count = total_steps // every
    return {"snapshots": count, "bytes": count * len(sigma_rels) * parameters * 2}


def write_presets(
    run_dir: Path, lengths: dict[str, float], checkpoint: Path, manifest_sha256: str | None, report: str
) -> Path:
    """Keep the lengths ``make ema`` chose (``{"unguided": .., "cfg": .., "autoguidance": .., "guide": ..}``) in the
    run, for the checkpoint they were chosen on; ``report``: where the choice is shown."""
    path = Path(run_dir) / PRESETS
    write_atomic(
        path,
        json.dumps(
            {
                "lengths": lengths,
                "checkpoint": Path(checkpoint).name,
                "checkpoint_manifest_sha256": manifest_sha256,
                "report": report,
            },
            indent=1,
        )
        + "\n",
    )
    return path


def preset(run_dir: Path, checkpoint: Path, manifest_sha256: str | None, way: str = "cfg") -> float | None:
    """The length ``make ema`` chose for ``way`` of sampling this checkpoint, or None: no presets, none for ``way``,
    or presets chosen on another checkpoint (said once: sampling keeps the fixed-decay EMA)."""
    path = Path(run_dir) / PRESETS
    if not path.exists():
        return None
    try:
        found = json.loads(path.read_text())
        lengths, chosen_on = found["lengths"], found["checkpoint_manifest_sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise RunError(f"{path} is damaged ({exc}); run `make ema` again or delete it") from None
    if chosen_on != manifest_sha256:
        warnings.warn(
            f"{path} holds EMA lengths chosen on {found.get('checkpoint')}, not on {Path(checkpoint).name}: "
            "sampling with the fixed-decay EMA (run `make ema` again to choose for this checkpoint)",
            stacklevel=2,
        )
        return None
    return lengths.get(way)
