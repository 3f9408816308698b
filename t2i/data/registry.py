"""Datasets by name: ``cfg.dataset`` names a module ``t2i/data/<name>.py`` whose ``DATASET`` is its
:class:`~t2i.data.base.DatasetSpec`. A new dataset is one new module."""

from __future__ import annotations

import importlib

from ..configs import ExperimentConfig
from ..configs.schema import DATA_DIR
from .base import DatasetSpec


def spec(dataset: str | ExperimentConfig) -> DatasetSpec:
    """The spec of a dataset, by name or by a config that names it."""
    name = dataset.dataset if isinstance(dataset, ExperimentConfig) else dataset
    if not (DATA_DIR / f"{name}.py").is_file():
        raise ValueError(f"unknown dataset {name!r}: there is no module t2i/data/{name}.py")
    found = getattr(importlib.import_module(f"{__package__}.{name}"), "DATASET", None)
    if not isinstance(found, DatasetSpec):
        raise TypeError(f"t2i/data/{name}.py must define DATASET, a t2i.data.base.DatasetSpec")
    return found
