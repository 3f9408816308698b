"""The experiments, one file each: ``t2i/experiments/<name>.py`` holds ``FULL`` (the thesis's values, each with the
section it comes from) and ``PROFILES`` (``demo``, ``smoke``...: flat overrides of ``FULL``). An experiment is named
by its file and a profile by its key in ``PROFILES`` (:func:`t2i.configs.profiles` sets both; a file that says
otherwise is refused), so a copied file runs under its own name.

:data:`NAMES` is found from the files, and feeds the configs, the Makefile (``make run-<name>``), SLURM, the bench
and the thesis registry: adding an experiment is one file here, a dataset module in ``t2i/data/`` if the dataset is
new, and a notebook ``notebooks/NN_<name>.ipynb`` (docs/development.md).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ConfigError

# What every experiment shares unless it says otherwise: library defaults (diffusers' UNet2DConditionModel and
# DDPMScheduler, torch's AdamW). No experiment's own values live here.
BASE: dict[str, Any] = dict(
    train_subset=None,
    layers_per_block=2,  # diffusers default
    attention_head_dim=8,  # diffusers default
    norm_num_groups=32,  # diffusers default
    weight_decay=0.01,  # torch.optim.AdamW default
    num_train_timesteps=1000,  # diffusers default
    clip_sample=True,  # diffusers' default is a clip to [-1, 1]; t2i clips to pixel_range (t2i.sampling)
)

# What every smoke profile (the test suite's) shares: the bundled MiniLM encoder, a tiny UNet, a few steps.
SMOKE: dict[str, Any] = dict(
    text_encoder="bundled:all-MiniLM-L6-v2",
    cross_attention_dim=384,
    layers_per_block=1,
    norm_num_groups=4,
    attention_head_dim=4,
    batch_size=16,
    checkpoint_every=1,
    num_inference_steps=3,
    judge_epochs=2,
    report_to="none",
    sample_every_epochs=None,
    learning_rate=1e-3,
    epochs=1,
    guidance_scales=(0.0, 1.0, 5.0),
)

# Four levels, cross-attention in the middle two: thesis 3.2.2, reused by 3.3.2 and 3.5.5.
UNET_4 = dict(
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
)


def module(name: str) -> ModuleType:
    """``t2i.experiments.<name>``, which defines ``SECTION``, ``FULL`` and ``PROFILES``."""
    return importlib.import_module(f"{__name__}.{name}")


def _section(name: str) -> str:
    """An experiment file's ``SECTION``, read from its source without importing it: listing the experiments imports
    none of them, so a report made from one experiment never depends on another's file (t2i.reports)."""
    tree = ast.parse((Path(__file__).with_name(f"{name}.py")).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SECTION" for t in node.targets):
            return ast.literal_eval(node.value)
    return "~"  # an experiment without one comes last


# In the thesis's order (each file's SECTION).
NAMES: tuple[str, ...] = tuple(
    sorted(
        (m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")),
        key=lambda name: (_section(name), name),
    )
)

# notebooks/NN_<experiment>[_<more>].ipynb runs <experiment>: the Makefile's rule for `make run-<experiment>`
NOTEBOOK_NAME = re.compile(r"^[0-9]{2}_(?P<rest>.+)$")


def experiment_of(notebook: str | Path) -> str | None:
    """The experiment a notebook runs, from its file name alone, or None: the longest experiment name the part after
    ``NN_`` is, or starts with followed by ``_`` (an experiment's name may hold underscores)."""
    found = NOTEBOOK_NAME.match(Path(notebook).stem)
    rest = found["rest"] if found else ""
    return max((n for n in NAMES if rest == n or rest.startswith(f"{n}_")), key=len, default=None)


def from_notebook(notebook: str | Path) -> str:
    """:func:`experiment_of`, or an error saying how an experiment's notebook is named (SLURM asks this; the
    notebook's ``setup`` call names the same experiment, tests/test_notebooks.py checks it)."""
    experiment = experiment_of(notebook)
    if experiment is None:
        raise ConfigError(
            f"{notebook} is not an experiment's notebook: its name must be NN_<experiment>[_*].ipynb "
            f"with <experiment> one of {NAMES}"
        )
    return experiment
