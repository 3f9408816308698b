"""Where things live. Everything is anchored at the project root, never at the current directory.

Papermill, SLURM and JupyterLab all start processes in different directories, so every path the
project writes or reads is derived from here. Each location can be moved with an environment variable
(useful for scratch filesystems on a cluster, and for tests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ConfigError

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


def portable(path: Path) -> str:
    """A path inside the project relative to its root (so a sidecar or a card reads the same on every clone); any
    other path as it is."""
    try:
        return str(Path(path).resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(path)


def run_dir(experiment: str, run_name: str) -> Path:
    """``runs/<experiment>/<run_name>``; a run name is one path component (no separators, not ``.`` or ``..``), so a
    run can never be written outside the runs folder."""
    if not run_name or run_name in (".", "..") or "/" in run_name or "\\" in run_name or "\0" in run_name:
        raise ConfigError(f"run name {run_name!r} must be a single folder name (no '/', not '..')")
    return runs_dir() / experiment / run_name


def report_dir(profile: str, experiment: str | None = None, run_name: str | None = None) -> Path:
    """The one reports layout: ``reports/<profile>/`` holds the thesis artefacts `make figures` draws (and their
    index); ``reports/<profile>/<experiment>/<run>/`` what a notebook run wrote, beside its executed notebook (and
    ``eval/`` for `make eval`). Keyed by run, so no run's figures overwrite another's; benchmarks go to
    ``reports/bench/``."""
    base = reports_dir() / profile
    return base / experiment / run_name if experiment and run_name else base


def run_reports(run_dir: Path) -> Path:
    """The report folder of an existing run, ``reports/<profile>/<experiment>/<run>/`` (from its config.json)."""
    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    return report_dir(cfg["profile"], cfg["experiment"], Path(run_dir).name)


# What the commands that measure a trained run write, each in its folder of the run's reports.
EVAL = "eval"  # `make eval` (t2i.evaluate): sweep.md/.csv/.tex and a plot per metric
SWEEP = "sweep"  # the eval sweep's table
GUIDANCE = "guidance"  # `make guidance` (t2i.comparison)
SAMPLER_FRONT = "samplers"  # `make samplers` (t2i.sampler_front)
EMA_FRONT = "ema"  # `make ema` (t2i.ema_front)


def eval_dir(run_dir: Path) -> Path:
    """Where `make eval` of a run writes: ``reports/<profile>/<experiment>/<run>/eval/``."""
    return run_reports(run_dir) / EVAL


def sweep_table(run_dir: Path) -> Path:
    """The CSV of a run's `make eval` sweep (thesis Table 1 and the model card read it)."""
    return eval_dir(run_dir) / f"{SWEEP}.csv"


def guidance_dir(run_dir: Path) -> Path:
    """Where `make guidance` of a run writes: ``reports/<profile>/<experiment>/<run>/guidance/``."""
    return run_reports(run_dir) / GUIDANCE


PER_DEVICE_BENCH = ("gpu", "gpu_breakdown")  # written per device: reports/bench/<device>/<name>.*
CPU_BENCH_PREFIX = "cpu-"  # device folders of CPU runs (t2i.bench.device_slug)


def bench_report(name: str) -> Path:
    """``reports/bench/<name>.csv``, or for the per-device reports the one to quote: the newest GPU run's (by its
    provenance's ``created``), else the newest CPU run's. A CPU run never hides a GPU report."""
    root = reports_dir() / "bench"
    if name not in PER_DEVICE_BENCH:
        return root / f"{name}.csv"
    found = [p for p in root.glob(f"*/{name}.csv")]

    def rank(path: Path) -> tuple[bool, str]:
        sidecar = path.with_name(f"{name}.provenance.json")
        created = json.loads(sidecar.read_text()).get("created", "") if sidecar.exists() else ""
        return (not path.parent.name.startswith(CPU_BENCH_PREFIX), created)

    return max(found, key=rank) if found else root / f"{name}.csv"
