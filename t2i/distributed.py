"""What every training process must agree on: the precision it runs in, its own random stream, and flags that are
true everywhere when true anywhere (a signal may reach only some ranks; one rank's data may run out first)."""

from __future__ import annotations

import os

import numpy as np
import torch
from accelerate import Accelerator


def resolve_precision(setting: str) -> str:
    """``auto``: ``$ACCELERATE_MIXED_PRECISION`` (what ``accelerate config`` / ``launch`` set) if given, else bf16
    autocast on a CUDA GPU that has it, else full float32 (CPUs)."""
    if setting != "auto":
        return setting
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return os.environ["ACCELERATE_MIXED_PRECISION"]
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def local_device() -> torch.device:
    """This process's GPU before accelerate has started (``LOCAL_RANK``, which ``accelerate launch`` and torchrun
    set), or the CPU: work done while datasets are built (the latent cache) must not pile every rank onto cuda:0."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Independent, reproducible stream for (run seed, epoch, process)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def any_process(accelerator: Accelerator, *flags: bool) -> tuple[bool, ...]:
    """Each flag, True on every process if it is True on any: one collective for all of them."""
    if accelerator.num_processes == 1:
        return flags
    summed = accelerator.reduce(torch.tensor([float(f) for f in flags], device=accelerator.device), "sum")
    return tuple(bool(v > 0) for v in summed.tolist())
