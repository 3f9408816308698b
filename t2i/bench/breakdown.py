"""Where a bare step's time goes (``gpu_breakdown.md``): ``torch.profiler`` events attributed to kinds of op, and on
a GPU the kernels per step and how much of the wall time the device was busy."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import profiler
from torch.autograd import DeviceType

from ..configs import ExperimentConfig
from .measure import bare_step, reset_memory, sync, time_steps


# Kinds of op in a profile, in the breakdown's column order; see category.
CATEGORIES = ("conv", "attention", "matmul", "norm", "copy_cast", "optimizer", "other")


MATMUL_OPS = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_addmm_activation")


COPY_OPS = ("copy_", "_to_copy", "to", "clone", "contiguous", "cat", "_copy_from", "_copy_from_and_resize")


def profile_step(cfg: ExperimentConfig, variant: str, device: torch.device, steps: int, warmup: int) -> dict:
    """Where the bare step's time goes, from ``torch.profiler`` over ``steps`` steps: each op's own time (on a GPU, its
    kernels' time) summed by :func:`category`, the three heaviest ops, and on a GPU the kernels per step and the
    share of the wall time the device was busy. A busy share well under 100% means the GPU waits for the host to
    launch kernels (what CUDA graphs remove); near 100% with many cheap ops means memory traffic (what fusing
    removes)."""
    reset_memory(device)
    step = bare_step(cfg, variant, device)
    time_steps(step, warmup + 1, device)
    cuda = device.type == "cuda"
    activities = [profiler.ProfilerActivity.CPU, *([profiler.ProfilerActivity.CUDA] if cuda else [])]
    with profiler.profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        wall_us = 1e6 * (time.perf_counter() - start)
    by_category, by_op, kernels, kernel_us = attribute(prof.events(), cuda)
    attributed = sum(by_category.values())
    if not attributed:
        raise RuntimeError("the profiler recorded no op time")
    measured = {
        "ms": wall_us / steps / 1000,
        **{category: 100 * us / attributed for category, us in by_category.items()},
    }
    top = sorted(by_op.items(), key=lambda item: -item[1])[:3]
    notes = [", ".join(f"{name} {100 * us / attributed:.0f}%" for name, us in top)]
    if cuda:
        busy = kernel_us or attributed
        measured |= {"kernels_step": kernels / steps, "device_busy_pct": 100 * busy / wall_us}
        if attributed < 0.95 * busy:  # kernels the profiler could not tie to the op that launched them
            notes.append(f"{100 * attributed / busy:.0f}% of the kernel time tied to an op")
    measured["note"] = "; ".join(notes)
    return measured


def attribute(events, cuda: bool) -> tuple[dict[str, float], dict[str, float], int, float]:
    """Sum a profile's ``FunctionEvent`` list: microseconds by :func:`category` and by op name (each host op's own
    time, or on a GPU the time of the kernels it launched), and the number and total time of the device's kernels."""
    by_category = dict.fromkeys(CATEGORIES, 0.0)
    by_op: dict[str, float] = {}
    kernels, kernel_us = 0, 0.0
    for event in events:
        if event.device_type == DeviceType.CUDA:
            kernels, kernel_us = kernels + 1, kernel_us + event.time_range.elapsed_us()
        if event.device_type != DeviceType.CPU or event.is_async:
            continue
        own = sum(k.duration for k in event.kernels) if cuda else event.self_cpu_time_total
        ancestors, parent = [], event.cpu_parent
        while parent is not None:
            ancestors.append(parent.name)
            parent = parent.cpu_parent
        by_category[category(event.name, ancestors)] += own
        by_op[event.name] = by_op.get(event.name, 0.0) + own
    return by_category, by_op, kernels, kernel_us


def category(name: str, ancestors: Sequence[str] = ()) -> str:
    """The kind of op a profiled op is, from its name and its callers' (innermost first). The optimizer's ops and
    everything an attention op runs count as those; the rest by their own name, so the casts autocast inserts
    before a normalisation (which it runs in float32) count as ``copy_cast``, not as the normalisation."""
    if any(n.startswith("Optimizer.") for n in (name, *ancestors)):
        return "optimizer"
    if any("attention" in n for n in (name, *ancestors)):
        return "attention"
    op = name.removeprefix("aten::")
    if "conv" in op:
        return "conv"
    if op in MATMUL_OPS:
        return "matmul"
    if any(kind in op for kind in ("group_norm", "layer_norm", "batch_norm")):
        return "norm"
    if op in COPY_OPS:
        return "copy_cast"
    return "other"
