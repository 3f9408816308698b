"""Post-hoc EMA (Karras et al. 2024, "Analyzing and improving the training dynamics of diffusion models", section 3):
choose the EMA length after training, from snapshots of two power-function EMAs.

- **Tracking** (:class:`PowerEMA`, EDM2 eqs. 3-4 and Algorithm 2): for each relative length ``sigma_rel`` (EDM2 tracks
  0.05 and 0.10) an average updated after every optimizer step t with beta_t = (1 - 1/t)^(gamma + 1), where gamma
  solves sigma_rel^2 = (gamma + 1) / ((gamma + 2)^2 (gamma + 3)). EDM2 counts training images, t2i optimizer steps;
  with t2i's fixed batch, 1/t is the same fraction either way. Its state is saved in every checkpoint, so a resumed
  run tracks on bitwise as an uninterrupted one.
- **Snapshots** every ``ema_snapshot_every`` steps: both averages in half precision, one safetensors file per step in
  ``<run>/ema_snapshots/`` (written atomically; a resume drops those after its checkpoint).
- **Reconstruction** (:func:`reconstruct`, EDM2 Algorithm 3): any sigma_rel as the least-squares combination of the
  snapshots' weight profiles (each a power function of training time), solved in closed form and normalised to sum
  to 1, as EDM2's ``solve_posthoc_coefficients``; cached per sigma_rel.

ema-pytorch's ``PostHocEMA`` implements the same idea but is not used: it saves snapshots with ``torch.save``
(pickle), does not normalise the solved coefficients (a fit that sums to 0.98 scales every weight by 0.98), updates
every 100 steps by default with a beta that ignores the skipped steps, and keeps its tracked state in a module that
t2i's pickle-free checkpoints would have to take apart anyway.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .errors import RunError
from .files import fsync_dir

SNAPSHOTS = "ema_snapshots"  # <run>/ema_snapshots/step-NNNNNNNN.safetensors
RECONSTRUCTED = "reconstructed"  # <run>/ema_snapshots/reconstructed/<key>.safetensors: the cache
SIGMA_RELS = (0.05, 0.10)  # EDM2's tracked profiles (sec. 3.3)
RANGE = (0.01, 0.25)  # the lengths reconstructions are offered for (EDM2 Fig. 5 sweeps 0.01-0.25)
NAME = re.compile(r"^step-(\d{8})\.safetensors$")


def gamma(sigma_rel: float) -> float:
    """The exponent of the power function with relative standard deviation ``sigma_rel`` (EDM2 Algorithm 2:
    the largest real root of gamma^3 + 7 gamma^2 + (16 - 1/sigma_rel^2) gamma + (12 - 1/sigma_rel^2))."""
    t = sigma_rel ** -2
    return float(np.roots([1, 7, 16 - t, 12 - t]).real.max())


def beta(sigma_rel: float, step: int) -> float:
    """The power-function EMA's decay after optimizer step ``step`` (counted from 1): (1 - 1/t)^(gamma + 1); 0 at the
    first step, so the average starts as the weights."""
    return (1 - 1 / step) ** (gamma(sigma_rel) + 1)


class PowerEMA:
    """Power-function EMAs of the trained parameters, one per ``sigma_rel``; :meth:`step` after every update."""

    def __init__(self, named_params: list[tuple[str, torch.nn.Parameter]], sigma_rels: tuple[float, ...] = SIGMA_RELS,
                 every: int | None = None, images_per_step: int = 1):
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
        tracked = cls(list(unet.named_parameters()), cfg.ema_sigma_rels, cfg.ema_snapshot_every,
                      cfg.batch_size * accelerator.num_processes * cfg.gradient_accumulation_steps)
        found = plan(total_steps, cfg.ema_snapshot_every, sum(p.numel() for p in tracked.params), cfg.ema_sigma_rels)
        accelerator.print(f"post-hoc EMA: lengths {list(tracked.sigma_rels)} tracked, {found['snapshots']} snapshots "
                          f"(every {cfg.ema_snapshot_every} of {total_steps:,} steps), {found['bytes'] / 2**20:,.1f} "
                          "MiB in half precision")
        return tracked

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        for g, average in zip(self.gammas, self.averages):
            b = (1 - 1 / self.steps) ** (g + 1)
            torch._foreach_lerp_(average, [p.detach().float() for p in self.params], 1 - b)

    def update(self, run_dir: Path, write: bool) -> None:
        """After an optimizer step: track it, and write a snapshot when one is due (``write``: the main process)."""
        self.step()
        if write and self.every and self.steps % self.every == 0:
            self.snapshot(run_dir, self.steps * self.images_per_step)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tracked state as named tensors (for checkpoints), in full precision."""
        return {f"phema.{k}.{name}": t for k, average in enumerate(self.averages) for name, t in zip(self.names, average)}

    def state(self) -> dict:
        return {"steps": self.steps, "sigma_rels": list(self.sigma_rels)}

    def load(self, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        if tuple(state["sigma_rels"]) != self.sigma_rels:
            raise RunError(f"the checkpoint tracks EMA lengths {state['sigma_rels']}, the config {self.sigma_rels}")
        self.steps = state["steps"]
        for k, average in enumerate(self.averages):
            for name, t in zip(self.names, average):
                t.copy_(tensors[f"phema.{k}.{name}"])

    def snapshot(self, run_dir: Path, images: int) -> Path:
        """Write both averages (half precision) as ``ema_snapshots/step-<steps>.safetensors``, atomically."""
        folder = Path(run_dir) / SNAPSHOTS
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step-{self.steps:08d}.safetensors"
        tmp = folder / f".{path.name}.tmp"
        tensors = {f"{sigma:g}/{name}": t.detach().to(torch.float16).cpu().contiguous()
                   for sigma, average in zip(self.sigma_rels, self.averages) for name, t in zip(self.names, average)}
        save_file(tensors, tmp, metadata={"step": str(self.steps), "images": str(images),
                                          "sigma_rels": json.dumps(list(self.sigma_rels))})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(folder)
        return path


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
    return (gamma_a + 1) * (gamma_b + 1) * t_ratio ** t_exp / ((gamma_a + gamma_b + 1) * t_max)


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
    from the snapshots; cached per length and snapshot set. Returns the parameters by name and what made them."""
    lo, hi = RANGE
    if not lo <= sigma_rel <= hi:
        raise RunError(f"--ema-length {sigma_rel:g} is outside the range post-hoc EMA is offered for, [{lo:g}, {hi:g}]")
    found = snapshots(run_dir, at_step)
    if len(found) < 2:
        raise RunError(f"{run_dir} has {len(found)} post-hoc EMA snapshot(s){'' if at_step is None else f' up to step {at_step}'}"
                       "; --ema-length needs a run trained with ema_snapshot_every set (and two snapshots)")
    with safe_open(found[0][1], "pt") as f:
        tracked = json.loads(f.metadata()["sigma_rels"])
    steps = np.repeat([s for s, _ in found], len(tracked))
    lengths = np.tile(tracked, len(found))
    weights = coefficients(steps, lengths, found[-1][0], sigma_rel)
    info = {"sigma_rel": sigma_rel, "step": found[-1][0], "snapshots": len(found), "tracked": tracked,
            "profile_error": profile_error(steps, lengths, weights, found[-1][0], sigma_rel)}
    cache = Path(run_dir) / SNAPSHOTS / RECONSTRUCTED / f"sigma{sigma_rel:g}-step{found[-1][0]:08d}-n{len(found)}.safetensors"
    if cache.exists():
        return load_file(cache), info
    total: dict[str, torch.Tensor] = {}
    k = 0
    for _, path in found:
        with safe_open(path, "pt") as f:
            for sigma in tracked:
                prefix = f"{sigma:g}/"
                for key in (key for key in f.keys() if key.startswith(prefix)):
                    name = key[len(prefix):]
                    total[name] = total.get(name, 0) + float(weights[k]) * f.get_tensor(key).double()
                k += 1
    params = {name: t.float() for name, t in total.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp")
    save_file(params, tmp, metadata={"sigma_rel": str(sigma_rel), "step": str(found[-1][0])})
    os.replace(tmp, cache)
    return params, info


def profile_error(steps: np.ndarray, lengths: np.ndarray, weights: np.ndarray, out_step: float,
                  out_sigma_rel: float) -> float:
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
