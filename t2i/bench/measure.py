"""Timing one cell of ``make bench-gpu``: the bare UNet step in each variant, its size (parameters, FLOP) and
the card's matmul ceiling, with the out-of-memory fallback that halves the batch."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..configs import ExperimentConfig
from ..models import build_unet, compile_regions, count_parameters


# name -> (autocast precision, channels_last, attention_head_width, compile: configs.COMPILE_MODES)
VARIANTS = {
    "fp32": ("no", False, None, "off"),  # float32 weights and activations, TF32 matmuls and convolutions
    "bf16": ("bf16", False, None, "off"),  # bf16 autocast, float32 master weights
    "bf16+channels_last": ("bf16", True, None, "off"),
    "bf16+heads64": ("bf16", False, 64, "off"),  # the thesis's parameters and FLOPs in fewer, 64-wide heads
    "bf16+compile-regional": ("bf16", False, None, "regional"),  # each ResNet / attention block (t2i.models)
    "bf16+compile": ("bf16", False, None, "full"),
    "bf16+heads64+compile": ("bf16", False, 64, "full"),
}


def guarded(measure, cfg: ExperimentConfig, *args) -> dict:
    """``measure(cfg, *args)`` at the config's batch, or at half of it, a quarter, an eighth while the card runs out
    of memory (WikiArt's bf16 step took 82 GiB at batch 64 on an H200, more than an 80 GB H100 has), saying so in
    the note.
    A cell that fails otherwise (a compiler error) is a row saying so, not the end of the benchmark."""
    batch = cfg.batch_size
    while True:
        failure = None
        try:
            measured = {**measure(cfg.replace(batch_size=batch), *args), "batch": batch}
            if batch < cfg.batch_size:
                note = f"batch {batch}: {cfg.batch_size} ran out of memory"
                measured["note"] = "; ".join(filter(None, [note, measured.get("note")]))
            return measured
        except torch.OutOfMemoryError as exc:
            if batch // 2 < max(1, cfg.batch_size // 8):
                failure = failure_note(exc)
        except Exception as exc:  # noqa: BLE001 - reported in the table, the next cell still runs
            failure = failure_note(exc)
        if torch.cuda.is_available():  # out of the except block: the failed cell's tensors are freed by now
            torch.cuda.empty_cache()
        if failure:
            return {"note": failure}
        batch //= 2


def failure_note(exc: Exception) -> str:
    return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


def parameters(cfg: ExperimentConfig) -> int:
    with torch.device("meta"):  # shapes only: a 348M-parameter UNet in milliseconds
        return count_parameters(build_unet(cfg))


def flop_per_step(cfg: ExperimentConfig) -> float:
    """FLOP of one forward + backward at the config's batch, counted on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        unet = build_unet(cfg)
        x = torch.empty(cfg.batch_size, *cfg.model_shape)
        t = torch.zeros(cfg.batch_size, dtype=torch.long)
        emb = torch.empty(cfg.batch_size, cfg.max_tokens, cfg.cross_attention_dim)
        with FlopCounterMode(display=False) as counter:
            F.mse_loss(unet(x, t, encoder_hidden_states=emb).sample, x).backward()
    return float(counter.get_total_flops())


def matmul_ceiling() -> float:
    """TFLOP/s of an 8192^3 bf16 matmul on random data: this card's practical ceiling."""
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    ms = time_steps(lambda: a @ b, 10, torch.device("cuda"))
    return 2 * 8192**3 / ms / 1e9


def time_steps(step, steps: int, device: torch.device) -> float:
    """Mean milliseconds per call of ``step`` over ``steps`` calls (the device drained before and after)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return 1000 * (time.perf_counter() - start) / steps


def step_times(step, steps: int, device: torch.device, cell_s: float) -> list[float]:
    """Milliseconds of each of up to ``steps`` calls of ``step``, stopping once ``cell_s`` seconds have passed (at
    least 3 calls, or ``steps`` if fewer). On a GPU, CUDA events recorded between the calls, with no synchronisation
    until the end: the host runs ahead of the device as in training, and each time is the device's."""
    least = min(3, steps)
    sync(device)
    start = time.perf_counter()
    if device.type == "cuda":
        events = [torch.cuda.Event(enable_timing=True)]
        events[0].record()
        while len(events) <= steps and (len(events) <= least or time.perf_counter() - start < cell_s):
            step()
            events.append(torch.cuda.Event(enable_timing=True))
            events[-1].record()
        torch.cuda.synchronize()
        return [a.elapsed_time(b) for a, b in zip(events, events[1:])]
    times: list[float] = []
    while len(times) < steps and (len(times) < least or time.perf_counter() - start < cell_s):
        begin = time.perf_counter()
        step()
        times.append(1000 * (time.perf_counter() - begin))
    return times


def summary(times: list[float]) -> dict:
    """The median step (robust to a stray slow step: a collection, a page fault, another process) and the
    interquartile range as a share of it, which says how far to trust a ratio of two cells."""
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return {"ms": float(median), "spread_pct": float(100 * (q3 - q1) / median), "steps": len(times)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | str:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else ""


def bare(cfg: ExperimentConfig, variant: str, device: torch.device, steps: int, warmup: int, cell_s: float) -> dict:
    """UNet forward, MSE, backward and AdamW on fixed device tensors: the floor the trainer is measured against."""
    reset_memory(device)
    step = bare_step(cfg, variant, device)
    first = time_steps(step, 1, device)  # includes compiling forward and backward for the compiled variants
    time_steps(step, warmup, device)
    measured = {**summary(step_times(step, steps, device, cell_s)), "peak_gib": peak_gib(device)}
    if VARIANTS[variant][3] != "off":
        measured["compile_s"] = first / 1000
    return measured


def bare_step(cfg: ExperimentConfig, variant: str, device: torch.device):
    """The bare step of ``cfg`` in ``variant``, as a function of no arguments (its UNet, optimizer and tensors
    built)."""
    precision, channels_last, head_width, compile_ = VARIANTS[variant]
    cfg = cfg.replace(attention_head_width=head_width)
    torch.manual_seed(0)
    unet = build_unet(cfg).to(device)
    if channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    torch._dynamo.reset()  # nothing compiled by an earlier cell is reused
    model = torch.compile(unet) if compile_ == "full" else unet
    if compile_ == "regional":
        compile_regions(unet)
    optimizer = torch.optim.AdamW(
        unet.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=device.type == "cuda"
    )
    generator = torch.Generator(device).manual_seed(0)
    x = torch.randn(cfg.batch_size, *cfg.model_shape, generator=generator, device=device)
    x = x.to(memory_format=torch.channels_last) if channels_last else x
    t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), generator=generator, device=device)
    emb = torch.randn(cfg.batch_size, cfg.max_tokens, cfg.cross_attention_dim, generator=generator, device=device)
    eps = torch.randn(x.shape, generator=generator, device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            pred = model(x, t, encoder_hidden_states=emb).sample
        F.mse_loss(pred.float(), eps).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step
