"""Experiment configs: the schema (:mod:`t2i.configs.schema`) filled with an experiment's values
(``t2i/experiments/<name>.py``) in one of its profiles:

- ``full``  the thesis experiment (cluster, GPU, real data and CLIP weights);
- ``demo``  the offline CPU demo (`make demo`): bundled digits, bundled sentence encoder, small UNet;
- ``smoke`` the test-suite profile: tiny and fast, exercises every code path.

A config is ``BASE``, then the experiment's ``FULL``, then the profile's flat overrides, then the caller's. Every
field is range-checked when a config is made, so a bad ``--set`` fails before anything is written.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..errors import ConfigError
from ..experiments import BASE, NAMES, module
from .schema import (
    BETA_SCHEDULES,
    COMPILE_MODES,
    LR_SCHEDULES,
    PRECISIONS,
    RENAMED,
    RESUMABLE,
    SAMPLERS,
    SPACINGS,
    TRACKERS,
    ExperimentConfig,
)

__all__ = [
    "BETA_SCHEDULES",
    "COMPILE_MODES",
    "EXPERIMENTS",
    "LR_SCHEDULES",
    "PRECISIONS",
    "RENAMED",
    "RESUMABLE",
    "SAMPLERS",
    "SPACINGS",
    "TRACKERS",
    "ExperimentConfig",
    "get",
    "profiles",
]

EXPERIMENTS = NAMES


@cache
def profiles(experiment: str) -> dict[str, ExperimentConfig]:
    """Every profile of ``experiment`` (``full`` first). Only this experiment's file is imported."""
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {experiment!r}; known: {sorted(EXPERIMENTS)}")
    spec = module(experiment)
    for profile, values in (("full", spec.FULL), *spec.PROFILES.items()):
        for key, own in (("experiment", experiment), ("profile", profile)):
            if values.get(key, own) != own:
                raise ConfigError(
                    f"t2i/experiments/{experiment}.py sets {key}={values[key]!r} in its {profile!r} "
                    f"values: an experiment is named by its file and a profile by its key; remove it"
                )
    full = ExperimentConfig.from_dict({**BASE, **spec.FULL, "experiment": experiment, "profile": "full"})
    return {"full": full, **{p: full.replace(**overrides, profile=p) for p, overrides in spec.PROFILES.items()}}


def get(experiment: str, profile: str = "full", **overrides: Any) -> ExperimentConfig:
    """The config of ``experiment`` in ``profile``, with ``overrides`` applied (``None`` values are ignored,
    so notebook parameters can default to "use the profile's value")."""
    known = profiles(experiment)
    if profile not in known:
        raise ConfigError(f"unknown profile {profile!r} for {experiment}; known: {sorted(known)}")
    return known[profile].replace(**{k: v for k, v in overrides.items() if v is not None})
