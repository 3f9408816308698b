"""Where things live. Everything is anchored at the project root, never at the current directory.

Papermill, SLURM and JupyterLab all start processes in different directories, so every path the
project writes or reads is derived from here. Each location can be moved with an environment variable
(useful for scratch filesystems on a cluster, and for tests).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("T2I_ROOT", Path(__file__).resolve().parents[1]))


def _dir(env_var: str, default: Path) -> Path:
    return Path(os.environ[env_var]).expanduser().resolve() if os.environ.get(env_var) else default


def data_dir() -> Path:
    """Datasets (MNIST, shards). Override: ``T2I_DATA_DIR``."""
    return _dir("T2I_DATA_DIR", ROOT / "data")


def runs_dir() -> Path:
    """Training runs: ``runs/<experiment>/<run-name>/``. Override: ``T2I_RUNS_DIR``."""
    return _dir("T2I_RUNS_DIR", ROOT / "runs")


def reports_dir() -> Path:
    """Curated figures and tables the thesis cites. Override: ``T2I_REPORTS_DIR``."""
    return _dir("T2I_REPORTS_DIR", ROOT / "reports")


def run_dir(experiment: str, run_name: str) -> Path:
    return runs_dir() / experiment / run_name


def report_dir(notebook: str, profile: str) -> Path:
    """``reports/<notebook>/`` for the thesis (``full``) profile, ``reports/<notebook>/<profile>/`` otherwise,
    so a demo or smoke run never overwrites the thesis figures."""
    base = reports_dir() / notebook
    return base if profile == "full" else base / profile
