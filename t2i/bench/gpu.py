"""``make bench-gpu``: how much of the card each experiment's training step uses, and what the trainer adds.

For each full config (on a machine without a GPU: the smoke configs, so CI runs the same code):

- parameters, and FLOP per training step (forward + backward at the config's batch), counted by
  ``torch.utils.flop_counter`` on the meta device (shapes only, no compute);
- the **bare step** (UNet forward, MSE, backward, AdamW; fixed device tensors, nothing else) in each variant of
  :data:`VARIANTS`: ms/step, images/s, TFLOP/s, utilisation of the card's dense bf16 peak (:data:`PEAK_BF16`, vendor
  datasheets; a measured 8192^3 bf16 matmul is reported beside it), peak memory, compile time;
- the **project trainer's step** (:meth:`t2i.train.Trainer.advance`: data from its real loader, the objective, AdamW,
  EMA, non-finite checks, the loss log), in the config's own precision and layout, as a ratio to the bare step in
  the same precision and layout, with the share of time spent waiting for data. WikiArt's trainer reads synthetic
  painting-size JPEG shards (1,400 x 1,100) through its DataLoader workers; CelebA's reads a synthetic latent cache,
  its workers caption and tokenise every image, and the step encodes the captions with a text encoder of the
  config's size;
- **where the bare step's time goes** (``gpu_breakdown.md``), from ``torch.profiler``: the share of each kind of op
  (:func:`_category`: convolution, attention, matmul, normalisation, copies and casts, optimizer, other), the
  heaviest ops, and on a GPU how many kernels a step launches and how much of the wall time the device was busy.

Each cell reports the median of its timed steps and their interquartile range (on a GPU timed by CUDA events, with
no synchronisation between steps), so a ratio of two cells comes with how much each wobbled; a cell times up to
``steps`` steps or ``cell_s`` seconds. Cells run cheapest first; torch.compile cells (regional, then whole-model)
last, while the time budget lasts (the rest are listed as skipped).
The table is rewritten after every cell, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import profiler
from torch.autograd import DeviceType
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

from .. import assets, configs, data, objectives, paths, reports, runs
from ..configs import ExperimentConfig
from ..data import celeba, latents, shards, synthetic
from ..models import build_unet, compile_regions, count_parameters
from ..text import CaptionTable, TextEncoder, resolve
from ..distributed import resolve_precision
from ..train import Trainer
from . import machine

EXPERIMENTS = ("mnist", "cifar10", "wikiart", "celeba")
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
# What the numbers depend on: a later change to any of these makes a committed gpu.md stale (tests/test_reports.py).
DEPENDS_ON = ("t2i/bench/gpu.py", "t2i/train.py", "t2i/batches.py", "t2i/objectives.py", "t2i/models.py",
              "t2i/tracking.py", "t2i/distributed.py", "t2i/runs.py", "t2i/checkpoints.py", "t2i/text.py", "t2i/data",
              "t2i/configs.py", "t2i/sampling.py")
# Dense bf16 tensor-core TFLOP/s by device name (vendor datasheets, no sparsity); first match wins.
PEAK_BF16 = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4),
             ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.2))


def run(out: Path | None = None, experiments: Sequence[str] = EXPERIMENTS, variants: Sequence[str] = tuple(VARIANTS),
        profile: str | None = None, steps: int | None = None, warmup: int | None = None,
        budget_s: float = 420.0, cell_s: float | None = None) -> str:
    """Time every cell, rewriting ``reports/bench/gpu.md`` after each; returns the table."""
    with _compile_cache():
        return _run(out, experiments, variants, profile, steps, warmup, budget_s, cell_s)


@contextlib.contextmanager
def _compile_cache() -> Iterator[None]:
    """A cold torch.compile cache for the run, so compile_s is what a job's first step pays (unless the caller set
    TORCHINDUCTOR_CACHE_DIR to a directory of their own: then that cache, warm or not). Importing diffusers sets the
    variable to inductor's default directory, which is the one to avoid: earlier runs have filled it."""
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if before not in (None, _default_cache_dir()):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="t2i-bench-inductor-") as cold:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cold
        try:
            yield
        finally:
            if before is None:
                del os.environ["TORCHINDUCTOR_CACHE_DIR"]
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = before


def _default_cache_dir() -> str | None:
    """Inductor's default cache directory, from a private module (torch 2.14 has it; None where a torch lacks it)."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:
        return None
    return default_cache_dir()


def _run(out: Path | None, experiments: Sequence[str], variants: Sequence[str], profile: str | None,
         steps: int | None, warmup: int | None, budget_s: float, cell_s: float | None) -> str:
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    # without a GPU: the demo config where there is one (the trainer-overhead target is measured on it), else smoke
    profiles = {e: profile or ("full" if cuda else "demo" if "demo" in configs.PROFILES[e] else "smoke")
                for e in experiments}
    steps, warmup = steps or (30 if cuda else 10), warmup or (3 if cuda else 1)
    cell_s = cell_s or (5.0 if cuda else 3.0)  # a cell stops timing after this long (at least 3 steps)
    if cuda:  # what the trainer does on CUDA
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    deadline = time.monotonic() + budget_s
    out = Path(out or paths.reports_dir() / "bench" / "gpu")
    card = torch.cuda.get_device_name() if cuda else machine()
    peak = next((p for name, p in PEAK_BF16 if name in card), None) if cuda else None
    ceiling = _matmul_ceiling() if cuda else None
    cfgs = {e: configs.get(e, profiles[e]) for e in experiments}
    sizes = {e: (_parameters(cfg), _flop_per_step(cfg)) for e, cfg in cfgs.items()}
    rows: list[dict] = []

    def record(experiment: str, variant: str, measured: dict) -> None:
        params, flop = sizes[experiment]
        ms, batch = measured.get("ms"), measured.get("batch", cfgs[experiment].batch_size)
        flop *= batch / cfgs[experiment].batch_size  # a cell that fell back to a smaller batch did less work
        row = {"experiment": experiment, "profile": profiles[experiment], "variant": variant, "batch": batch,
               "params_m": params / 1e6, "tflop_step": flop / 1e12,
               "ms_step": ms if ms is not None else "", "spread_pct": measured.get("spread_pct", ""),
               "steps": measured.get("steps", ""), "img_s": batch * 1000 / ms if ms else "",
               "tflop_s": flop / ms / 1e9 if ms else "", "util_pct": 100 * flop / ms / 1e9 / peak if ms and peak else "",
               "peak_gib": measured.get("peak_gib", ""), "compile_s": measured.get("compile_s", ""),
               "vs_bare": measured.get("vs_bare", ""), "data_wait_pct": measured.get("data_wait_pct", ""),
               "note": measured.get("note", "")}
        rows.append(row)
        print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()), flush=True)
        _write(rows, out, card, peak, ceiling, steps, warmup, budget_s, cell_s, device)

    breakdown: list[dict] = []

    def record_breakdown(experiment: str, variant: str, measured: dict) -> None:
        row = {"experiment": experiment, "profile": profiles[experiment], "variant": variant,
               "batch": measured.get("batch", cfgs[experiment].batch_size), "ms_step": measured.get("ms", ""),
               "device_busy_pct": measured.get("device_busy_pct", ""), "kernels_step": measured.get("kernels_step", ""),
               **{f"{c}_pct": measured.get(c, "") for c in CATEGORIES}, "note": measured.get("note", "")}
        breakdown.append(row)
        _write_breakdown(breakdown, out.with_name(out.name + "_breakdown"), card, profiled, device)

    timing, profiled = (steps, warmup, cell_s), min(steps, 3)
    cheap = [v for v in variants if VARIANTS[v][3] == "off"]
    for experiment in experiments:
        cfg = cfgs[experiment]
        precision = resolve_precision(cfg.mixed_precision)
        own = _variant_of(precision)  # the bare step the trainer is compared with: timed right before and after it
        for variant in sorted(cheap, key=lambda v: v == own):
            record(experiment, variant, _guarded(_bare, cfg, variant, device, *timing))
        before = {"ms": rows[-1]["ms_step"], "batch": rows[-1]["batch"]} if own in cheap else {}
        measured = _guarded(_trainer, cfg, device, *timing)
        after = _guarded(_bare, cfg, own, device, *timing) if measured.get("ms") else {}
        bares = [cell for cell in (before, after) if cell.get("ms")]
        notes = [measured["note"]] if measured.get("note") else []
        if bares and measured.get("ms"):  # the machine drifts between cells: the mean of both sides of the trainer
            per_image = float(np.mean([cell["ms"] / cell["batch"] for cell in bares]))  # batches differ after an OOM
            measured["vs_bare"] = measured["ms"] / measured["batch"] / per_image
            notes.append(f"vs the bare {own} step " + " / ".join(f"{cell['ms']:.4g}" for cell in bares)
                         + " ms (before / after)")
        if measured.get("encoder_flop"):  # work the bare step does not do: part of the ratio is this, not overhead
            unet_flop = sizes[experiment][1] * measured["batch"] / cfg.batch_size
            notes.append(f"includes the text encoder's forward, {measured['encoder_flop'] / 1e12:.3g} TFLOP "
                         f"({100 * measured['encoder_flop'] / unet_flop:.0f}% of the UNet step's)")
        measured["note"] = "; ".join(notes)
        record(experiment, f"trainer ({precision})", measured)
        for variant in [own, *(["bf16+heads64"] if "bf16+heads64" in variants else [])]:
            record_breakdown(experiment, variant, _guarded(_breakdown, cfg, variant, device, profiled, warmup))
    for variant in [v for v in variants if VARIANTS[v][3] != "off"]:
        for experiment in experiments:
            if time.monotonic() > deadline:
                record(experiment, variant, {"note": f"skipped: past the {budget_s:.0f} s budget"})
                continue
            record(experiment, variant, _guarded(_bare, cfgs[experiment], variant, device, *timing))
    return (out.with_suffix(".md")).read_text()


def _variant_of(precision: str) -> str:
    return "bf16" if precision == "bf16" else "fp32"


def _guarded(measure, cfg: ExperimentConfig, *args) -> dict:
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
                failure = _failure(exc)
        except Exception as exc:  # noqa: BLE001 - reported in the table, the next cell still runs
            failure = _failure(exc)
        if torch.cuda.is_available():  # out of the except block: the failed cell's tensors are freed by now
            torch.cuda.empty_cache()
        if failure:
            return {"note": failure}
        batch //= 2


def _failure(exc: Exception) -> str:
    return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


def _parameters(cfg: ExperimentConfig) -> int:
    with torch.device("meta"):  # shapes only: a 348M-parameter UNet in milliseconds
        return count_parameters(build_unet(cfg))


def _flop_per_step(cfg: ExperimentConfig) -> float:
    """FLOP of one forward + backward at the config's batch, counted on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        unet = build_unet(cfg)
        x = torch.empty(cfg.batch_size, *cfg.model_shape)
        t = torch.zeros(cfg.batch_size, dtype=torch.long)
        emb = torch.empty(cfg.batch_size, cfg.max_tokens, cfg.cross_attention_dim)
        with FlopCounterMode(display=False) as counter:
            F.mse_loss(unet(x, t, encoder_hidden_states=emb).sample, x).backward()
    return float(counter.get_total_flops())


def _matmul_ceiling() -> float:
    """TFLOP/s of an 8192^3 bf16 matmul on random data: this card's practical ceiling."""
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    ms = _time(lambda: a @ b, 10, torch.device("cuda"))
    return 2 * 8192**3 / ms / 1e9


def _time(step, steps: int, device: torch.device) -> float:
    """Mean milliseconds per call of ``step`` over ``steps`` calls (the device drained before and after)."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return 1000 * (time.perf_counter() - start) / steps


def _step_times(step, steps: int, device: torch.device, cell_s: float) -> list[float]:
    """Milliseconds of each of up to ``steps`` calls of ``step``, stopping once ``cell_s`` seconds have passed (at
    least 3 calls, or ``steps`` if fewer). On a GPU, CUDA events recorded between the calls, with no synchronisation
    until the end: the host runs ahead of the device as in training, and each time is the device's."""
    least = min(3, steps)
    _sync(device)
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


def _summary(times: list[float]) -> dict:
    """The median step (robust to a stray slow step: a collection, a page fault, another process) and the
    interquartile range as a share of it, which says how far to trust a ratio of two cells."""
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return {"ms": float(median), "spread_pct": float(100 * (q3 - q1) / median), "steps": len(times)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: torch.device) -> float | str:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else ""


def _bare(cfg: ExperimentConfig, variant: str, device: torch.device, steps: int, warmup: int, cell_s: float) -> dict:
    """UNet forward, MSE, backward and AdamW on fixed device tensors: the floor the trainer is measured against."""
    _reset_memory(device)
    step = _bare_step(cfg, variant, device)
    first = _time(step, 1, device)  # includes compiling forward and backward for the compiled variants
    _time(step, warmup, device)
    measured = {**_summary(_step_times(step, steps, device, cell_s)), "peak_gib": _peak_gib(device)}
    if VARIANTS[variant][3] != "off":
        measured["compile_s"] = first / 1000
    return measured


def _bare_step(cfg: ExperimentConfig, variant: str, device: torch.device):
    """The bare step of ``cfg`` in ``variant``, as a function of no arguments (its UNet, optimizer and tensors built)."""
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
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                  fused=device.type == "cuda")
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


def _breakdown(cfg: ExperimentConfig, variant: str, device: torch.device, steps: int, warmup: int) -> dict:
    """Where the bare step's time goes, from ``torch.profiler`` over ``steps`` steps: each op's own time (on a GPU, its
    kernels' time) summed by :func:`_category`, the three heaviest ops, and on a GPU the kernels per step and the
    share of the wall time the device was busy. A busy share well under 100% means the GPU waits for the host to
    launch kernels (what CUDA graphs remove); near 100% with many cheap ops means memory traffic (what fusing removes)."""
    _reset_memory(device)
    step = _bare_step(cfg, variant, device)
    _time(step, warmup + 1, device)
    cuda = device.type == "cuda"
    activities = [profiler.ProfilerActivity.CPU, *([profiler.ProfilerActivity.CUDA] if cuda else [])]
    with profiler.profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        wall_us = 1e6 * (time.perf_counter() - start)
    by_category, by_op, kernels, kernel_us = _attribute(prof.events(), cuda)
    attributed = sum(by_category.values())
    if not attributed:
        raise RuntimeError("the profiler recorded no op time")
    measured = {"ms": wall_us / steps / 1000, **{category: 100 * us / attributed for category, us in by_category.items()}}
    top = sorted(by_op.items(), key=lambda item: -item[1])[:3]
    notes = [", ".join(f"{name} {100 * us / attributed:.0f}%" for name, us in top)]
    if cuda:
        busy = kernel_us or attributed
        measured |= {"kernels_step": kernels / steps, "device_busy_pct": 100 * busy / wall_us}
        if attributed < 0.95 * busy:  # kernels the profiler could not tie to the op that launched them
            notes.append(f"{100 * attributed / busy:.0f}% of the kernel time tied to an op")
    measured["note"] = "; ".join(notes)
    return measured


def _attribute(events, cuda: bool) -> tuple[dict[str, float], dict[str, float], int, float]:
    """Sum a profile's ``FunctionEvent`` list: microseconds by :func:`_category` and by op name (each host op's own
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
        by_category[_category(event.name, ancestors)] += own
        by_op[event.name] = by_op.get(event.name, 0.0) + own
    return by_category, by_op, kernels, kernel_us


# Kinds of op in a profile, in the breakdown's column order; see _category.
CATEGORIES = ("conv", "attention", "matmul", "norm", "copy_cast", "optimizer", "other")
MATMUL_OPS = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_addmm_activation")
COPY_OPS = ("copy_", "_to_copy", "to", "clone", "contiguous", "cat", "_copy_from", "_copy_from_and_resize")


def _category(name: str, ancestors: Sequence[str] = ()) -> str:
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


def _trainer(cfg: ExperimentConfig, device: torch.device, steps: int, warmup: int, cell_s: float) -> dict:
    """The project's trainer on its real data path: ``Trainer.advance`` per step, the loader's wait timed apart."""
    _reset_memory(device)
    with tempfile.TemporaryDirectory(prefix="t2i-bench-") as tmp:
        work = Path(tmp)
        dataset, objective = _trainer_inputs(cfg, work, batches=steps + warmup + 1)  # steps: the most it times
        trainer = Trainer(cfg, work / "run", dataset, objective, log_every=10, restart=False)
        trainer.batches.set_epoch(0)
        loader = trainer.batches.iterate()
        waited = [0.0]

        def step(log: runs.LossLog) -> None:
            start = time.perf_counter()
            batch = next(loader)
            waited[0] += time.perf_counter() - start
            trainer.advance(batch, log)

        with runs.LossLog(work / "run", enabled=False) as log:
            _time(lambda: step(log), warmup, device)
            waited[0] = 0.0
            times = _step_times(lambda: step(log), steps, device, cell_s)
        measured = {**_summary(times), "peak_gib": _peak_gib(device),
                    "data_wait_pct": 100 * waited[0] / (sum(times) / 1000)}
        if isinstance(objective.conditioner, celeba.AttributeCaptions):  # captions encoded in every step
            measured["encoder_flop"] = _encoder_flop(objective.conditioner.encoder, cfg.batch_size)
        return measured


def _trainer_inputs(cfg: ExperimentConfig, work: Path, batches: int):
    """Training examples in the experiment's real format, ``batches`` batches of them, and its objective."""
    n = cfg.batch_size * batches
    generator = torch.Generator().manual_seed(0)
    if cfg.vae is not None:  # a latent cache of random posteriors; captions drawn from random attributes
        files = _synthetic_latent_cache(cfg, work / "latents", n)
        conditioner = celeba.AttributeCaptions(_text_encoder(cfg))
        return (latents.stream(cfg, files, transform=conditioner.example_transform),
                objectives.for_config(cfg, conditioner))
    conditioner = CaptionTable(torch.randn(len(cfg.class_names), cfg.max_tokens, cfg.cross_attention_dim,
                                           generator=generator), torch.randn(cfg.max_tokens, cfg.cross_attention_dim))
    if cfg.shards is not None:  # painting-size JPEGs in the dataset's parquet layout, one shard per worker
        workers = max(cfg.num_workers, 1)
        rows = -(-n // workers) + cfg.batch_size  # every worker yields full batches
        synthetic.write_class_shards(work / "shards", workers, rows, len(cfg.class_names), image_size=(1400, 1100),
                                     label_column=cfg.label_column, grain=0.012, row_group_size=64,
                                     distinct_images=2 * len(cfg.class_names))
        dataset = shards.ShardStream(shards.find_shards(str(work / "shards" / "train-*.parquet")),
                                     data.spec(cfg).row_decoder(cfg), seed=cfg.seed,
                                     max_bad_fraction=cfg.max_bad_fraction)
        return dataset, objectives.for_config(cfg, conditioner)
    images = torch.rand(n, *cfg.model_shape, generator=generator) * (cfg.pixel_range[1] - cfg.pixel_range[0])
    labels = torch.randint(0, len(cfg.class_names), (n,), generator=generator)
    return TensorDataset(images + cfg.pixel_range[0], labels), objectives.for_config(cfg, conditioner)


def _synthetic_latent_cache(cfg: ExperimentConfig, out: Path, rows: int) -> list[Path]:
    """Latent-cache shards (random posterior mean/std in float16, random attributes) with the cache's key file."""
    rng = np.random.default_rng(0)
    out.mkdir(parents=True)
    size = int(np.prod(cfg.model_shape))
    workers = max(cfg.num_workers, 1)
    per_shard = -(-rows // workers) + cfg.batch_size
    files = []
    for k in range(workers):
        mean = rng.normal(0, 1, (per_shard, size)).astype(np.float16)
        std = rng.uniform(0.01, 0.1, (per_shard, size)).astype(np.float16)
        attributes = (rng.random((per_shard, len(celeba.ATTRIBUTES))) < 0.3).astype(np.int64)
        table = pa.table({"row": np.arange(per_shard), "mean": pa.array([m.tobytes() for m in mean], pa.binary(2 * size)),
                          "std": pa.array([s.tobytes() for s in std], pa.binary(2 * size)),
                          "condition": pa.array([a.tobytes() for a in attributes], pa.binary())})
        files.append(out / f"train-{k:05d}-of-{workers:05d}.parquet")
        pq.write_table(table, files[-1], row_group_size=64)
    (out / shards.KEY_FILE).write_text(json.dumps(latents.cache_key(cfg)))
    return files


def _text_encoder(cfg: ExperimentConfig) -> TextEncoder:
    """The config's text encoder if it is on disk, else one of its size with random weights (CLIP ViT-B/32's text
    tower: 12 layers, width 512), tokenised with the bundled MiniLM tokenizer: the same compute per caption."""
    if not assets.missing(cfg, text=True):
        return TextEncoder.from_pretrained(cfg.text_encoder, cfg.max_tokens)
    torch.manual_seed(0)
    model = CLIPTextModel(CLIPTextConfig(hidden_size=cfg.cross_attention_dim, max_position_embeddings=max(77, cfg.max_tokens)))
    return TextEncoder(AutoTokenizer.from_pretrained(resolve("bundled:all-MiniLM-L6-v2")), model, cfg.max_tokens)


def _encoder_flop(encoder: TextEncoder, batch: int) -> float:
    """FLOP of the text encoder's forward over one batch of captions (every caption padded to max_tokens)."""
    tokens = encoder.tokenize([""] * batch)
    with FlopCounterMode(display=False) as counter:
        encoder.embed_tokens(tokens)
    return float(counter.get_total_flops())


def _write_breakdown(rows: list[dict], out: Path, card: str, steps: int, device: torch.device) -> None:
    cuda = device.type == "cuda"
    caption = (f"Where the bare training step's time goes on {card} (torch {torch.__version__}), from torch.profiler over "
               f"{steps} steps after warm-up: the share of "
               + ("the kernels' time (on the device)" if cuda else "the ops' own time (on the CPU)")
               + " by kind of op (t2i.bench.gpu._category: an optimizer's and an attention op's inner ops count as "
               "those; copy_cast includes the float32 casts bf16 autocast inserts around normalisation, and "
               "concatenation); note: the three heaviest ops. "
               + ("device_busy_pct: kernel time over wall time (well under 100: the GPU waits for the host to launch "
                  "kernels, which CUDA graphs remove; a lower bound, as the profiler slows the host); kernels_step: kernels "
                  "launched per step. " if cuda else
                  "device_busy_pct and kernels_step: GPU only. ")
               + "ms_step is under the profiler (slower than gpu.md). Reproduce: make bench-gpu.")
    reports.write_table(rows, out, caption=caption)
    reports.write_provenance(out.with_suffix(".md"), device=card, device_type=device.type, steps=steps,
                             torch=torch.__version__, depends_on=DEPENDS_ON)


def _write(rows: list[dict], out: Path, card: str, peak: float | None, ceiling: float | None, steps: int,
           warmup: int, budget_s: float, cell_s: float, device: torch.device) -> None:
    ceiling_text = f"; a measured 8192^3 bf16 matmul ran at {ceiling:.0f} TFLOP/s" if ceiling else ""
    caption = (f"Training step of each config on {card} (torch {torch.__version__}) at the config's batch, or at half "
               "of it (a quarter, an eighth) where that ran out of memory, as the note says: ms_step is the median of "
               f"`steps` timed steps (up to {steps}, or as many as fit in {cell_s:g} s, at least 3) after {warmup} "
               "warm-up steps" + (", timed by CUDA events" if device.type == "cuda" else "") + "; spread_pct is "
               "their interquartile range as a % of the median. tflop_step: forward + backward FLOP at the config's batch "
               f"(torch.utils.flop_counter). util_pct: achieved TFLOP/s over the card's dense bf16 peak "
               + (f"({peak:g} TFLOP/s, datasheet{ceiling_text})" if peak else "(unknown for this device)")
               + ". Bare rows: UNet forward, MSE, backward and AdamW on fixed tensors. Trainer rows: the project's "
               "step with its data path, objective, EMA and checks; vs_bare = the trainer's ms per image over the bare "
               "step's in the same precision and layout, the bare step timed right before and again right after the "
               "trainer (the mean of the two; both in the note); data_wait_pct = share of the step spent waiting for "
               "the loader. heads64: "
               "attention heads of width 64 instead of the thesis layout's head count (same parameters and FLOP). "
               "compile-regional: each ResNet and attention block compiled on its own (t2i.models.compile_regions); "
               "compile: the whole UNet. compile_s: the first compiled step (compiling forward and backward), with a cold "
               "compile cache unless TORCHINDUCTOR_CACHE_DIR was set. "
               "Reproduce: make bench-gpu.")
    reports.write_table(rows, out, caption=caption)
    reports.write_provenance(out.with_suffix(".md"), device=card, device_type=device.type,
                             peak_bf16_tflops=peak, measured_matmul_tflops=ceiling, steps=steps, warmup=warmup,
                             budget_s=budget_s, cell_s=cell_s, torch=torch.__version__, depends_on=DEPENDS_ON)
