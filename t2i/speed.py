"""Speed settings that belong to the process and the model, not to the training loop: TF32 on CUDA, the UNet's memory
layout and activation checkpointing, and ``torch.compile`` with where its compiled code is cached.

Each is a switch in the config with a safe default (CPU float32 always works); tests/test_train.py checks that each is
on exactly when asked.
"""

from __future__ import annotations

import os
import platform
import time

import torch
from accelerate import Accelerator

from . import paths
from .configs import ExperimentConfig
from .models import compile_regions


def hardware(device: torch.device) -> str:
    """The device a run trains on, in words, for checkpoints and model cards."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU ({os.cpu_count()} cores)"


def enable_tf32() -> None:
    """TF32 matmuls and convolutions on Ampere and newer GPUs: nearly free speed at float32's range. Process-wide."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def prepare(unet: torch.nn.Module, cfg: ExperimentConfig) -> torch.nn.Module:
    """The config's layout and memory switches, applied to a freshly built UNet (before the optimizer sees it)."""
    if cfg.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return unet


def compiled(unet: torch.nn.Module, cfg: ExperimentConfig, accelerator: Accelerator) -> torch.nn.Module:
    """What the loop calls: the prepared UNet itself (``compile="off"``), a ``torch.compile`` of it (``full``), or the
    UNet with each ResNet and attention block compiled in place (``regional``, :func:`t2i.models.compile_regions`).
    Compiled code is cached under the runs folder (:func:`compile_cache_dir`), so a resumed job compiles faster."""
    if cfg.compile == "off":
        return unet
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = compile_cache_dir()
    if cfg.compile == "full":
        return torch.compile(unet)
    compile_regions(accelerator.unwrap_model(unet))
    return unet


def report_compile(accelerator: Accelerator, started: float) -> None:
    """After the first compiled step (which compiles): how long it took, and where the compiled code is cached."""
    if accelerator.device.type == "cuda":
        torch.cuda.synchronize()
    accelerator.print(
        f"torch.compile: the first step took {time.perf_counter() - started:.1f} s "
        f"(cache {os.environ['TORCHINDUCTOR_CACHE_DIR']})"
    )


def compile_cache_dir() -> str:
    """Where torch.compile keeps its compiled code: ``$TORCHINDUCTOR_CACHE_DIR`` as the user set it before starting
    Python (:data:`t2i.USER_COMPILE_CACHE`), else ``runs/.compile-cache``, so a resumed job on a fresh node reuses the
    code its earlier attempts compiled. Importing diffusers sets the variable to inductor's default directory
    (in /tmp, per node), so ``os.environ.setdefault`` would never take effect."""
    from . import USER_COMPILE_CACHE

    if USER_COMPILE_CACHE and USER_COMPILE_CACHE != inductor_default_cache_dir():  # (diffusers imported before t2i)
        return USER_COMPILE_CACHE
    return str(paths.runs_dir() / ".compile-cache")


def inductor_default_cache_dir() -> str | None:
    """Inductor's default cache directory, from a private module (torch 2.14 has it; None where a torch lacks it)."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:
        return None
    return default_cache_dir()
