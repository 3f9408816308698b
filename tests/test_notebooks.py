"""The notebooks, executed headlessly by papermill exactly as `make run-*` does, with smoke parameters."""

import ast
import csv
import json
from pathlib import Path

import nbformat
import papermill
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from t2i import experiments
from tests.conftest import TINY_CLIP_WIDTH

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "t2i"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_a_thin_stripped_driver(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c for c in code if "parameters" in c.metadata.get("tags", [])], "needs a cell tagged 'parameters'"
    for cell in code:
        assert not cell.outputs and cell.execution_count is None, "commit notebooks stripped (nbstripout)"
        tree = ast.parse(cell.source)
        defs = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assert not defs, f"{path.name} defines {defs}: move them into t2i/"


EXPERIMENT_NOTEBOOKS = [p for p in NOTEBOOKS if experiments.experiment_of(p) is not None]


@pytest.mark.parametrize("path", EXPERIMENT_NOTEBOOKS, ids=lambda p: p.name)
def test_an_experiments_notebook_names_its_experiment_once_in_its_setup_call(path):
    """notebooks/NN_<name>.ipynb runs <name>: the file name says it (make run-<name>, SLURM), the one `setup("<name>")`
    call says it again (a test checks they agree), and no other literal or metadata copy does."""
    name = experiments.from_notebook(path)
    nb = nbformat.read(path, as_version=4)
    assert "t2i_experiment" not in nb.metadata
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    calls = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "setup"]
    assert len(calls) == 1 and isinstance(calls[0].args[0], ast.Constant) and calls[0].args[0].value == name
    literals = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Constant) and n.value == name]
    assert len(literals) == 1, f"{path.name} names {name!r} {len(literals)} times"


def test_01_mnist_then_05_evaluate_then_06_guidance_run_end_to_end_under_papermill(tmp_path, tiny_clip_dir):
    if KERNEL not in KernelSpecManager().find_kernel_specs():
        pytest.fail(f"Jupyter kernel {KERNEL!r} is not registered: run `make setup`")
    reports = tmp_path / "reports"
    papermill.execute_notebook(
        str(NOTEBOOK_DIR / "01_mnist.ipynb"),
        str(tmp_path / "01_mnist.ipynb"),
        kernel_name=KERNEL,
        progress_bar=False,
        cwd=str(tmp_path),  # notebooks must not depend on where they are started
        parameters={
            "profile": "smoke",
            "samples_per_prompt": 2,
            "config_overrides": {"text_encoder": str(tiny_clip_dir), "cross_attention_dim": TINY_CLIP_WIDTH},
        },
    )
    out = reports / "smoke" / "mnist" / "smoke"
    for name in (
        "fig01_denoising",
        "fig02_cfg_w5",
        "fig03_training_samples",
        "fig04_no_guidance",
        "fig05_empty_prompt",
        "fig06_loss",
        "fig07_guidance_grid",
        "extra_adherence",
    ):
        assert (out / f"{name}.png").stat().st_size > 1000, name
        provenance = json.loads((out / f"{name}.provenance.json").read_text())
        assert provenance["git_commit"] and provenance["packages"]["torch"]
    grid = json.loads((out / "fig07_guidance_grid.provenance.json").read_text())
    assert grid["samples"] == 10 * 3 and len(grid["checkpoint_manifest_sha256"]) == 64
    with open(out / "extra_adherence.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["guidance_scale"]) for r in rows] == [0.0, 1.0, 5.0]
    assert all(int(r["samples"]) == 20 and 0 <= float(r["adherence"]) <= 1 for r in rows)
    assert "guidance_scale" in (out / "extra_adherence.md").read_text()
    run = tmp_path / "runs" / "mnist" / "smoke"
    assert (run / "checkpoints" / "epoch-0002").is_dir()

    papermill.execute_notebook(
        str(NOTEBOOK_DIR / "05_evaluate.ipynb"),
        str(tmp_path / "05_evaluate.ipynb"),
        kernel_name=KERNEL,
        progress_bar=False,
        cwd=str(tmp_path),
        parameters={"run_dir": str(run), "guidance_scales": [0.0, 3.0], "samples_per_prompt": 2, "features": "judge"},
    )
    out = reports / "smoke" / "mnist" / "smoke" / "eval"
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["guidance_scale"] for r in rows] == ["real", "0.0", "3.0"]
    assert all(int(r["samples"]) == 20 and float(r["fid"]) >= 0 for r in rows)
    for name in ("fid_vs_w", "kid_vs_w", "is_vs_w", "adherence_vs_w", "fid_vs_adherence"):
        assert json.loads((out / f"{name}.provenance.json").read_text())["features"] == "judge-penultimate"
    assert "real" in (out / "sweep.md").read_text() and "N = 20" in (out / "sweep.md").read_text()

    papermill.execute_notebook(
        str(NOTEBOOK_DIR / "06_guidance.ipynb"),
        str(tmp_path / "06_guidance.ipynb"),
        kernel_name=KERNEL,
        progress_bar=False,
        cwd=str(tmp_path),
        parameters={
            "run_dir": str(run),
            "samples_per_prompt": 2,
            "methods": ["cfg", "autoguidance"],
            "strengths": [3.0],
            "guide_checkpoint": "epoch-0001",
            "features": "judge",
        },
    )
    with open(reports / "smoke" / "mnist" / "smoke" / "guidance" / "guidance.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["cfg", "autoguidance"]


@pytest.mark.parametrize(
    "name, experiment, judge", [("02_cifar10", "cifar10", "cifar10-16px"), ("03_wikiart", "wikiart", "wikiart-32px")]
)
def test_parquet_experiment_notebooks_run_in_smoke_mode_on_synthetic_shards(
    tmp_path, monkeypatch, name, experiment, judge
):
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "data"))  # the smoke profile writes synthetic shards here
    papermill.execute_notebook(
        str(NOTEBOOK_DIR / f"{name}.ipynb"),
        str(tmp_path / f"{name}.ipynb"),
        kernel_name=KERNEL,
        progress_bar=False,
        cwd=str(tmp_path),
        parameters={
            "profile": "smoke",
            "samples_per_prompt": 1,
            **({"grid_samples_per_prompt": 2} if experiment == "wikiart" else {}),
        },
    )
    out = tmp_path / "reports" / "smoke" / experiment / "smoke"
    cfg_w = [0.0, 1.0, 5.0]
    grids = (
        [(f"extra_class_grid_w{w:g}", w, 2) for w in cfg_w]
        if experiment == "wikiart"
        else [("fig09_class_grid_w0", 0.0, 10), ("fig12_class_grid_w10", 10.0, 10), ("fig13_samples_w5", 5.0, 4)]
    )
    for name, w, columns in grids:
        provenance = json.loads((out / f"{name}.provenance.json").read_text())
        assert provenance["guidance_scale"] == w and provenance["samples_per_prompt"] == columns
    with open(out / "extra_adherence.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["guidance_scale"]) for r in rows] == cfg_w
    assert (tmp_path / "runs" / "judges" / judge / "judge.safetensors").exists()
    run = tmp_path / "runs" / experiment / "smoke"
    assert (run / "checkpoints" / "epoch-0001").is_dir()
    if experiment == "wikiart":  # the smoke profile times its first steps
        assert "| forward |" in (run / "timing.md").read_text()


def test_make_run_celeba_runs_the_latent_diffusion_notebook_headlessly_in_smoke_mode(tmp_path, monkeypatch):
    """`make run-celeba` as a batch job runs it, with the smoke profile: synthetic CelebA-format shards, a tiny random
    VAE, the latent cache, training, Figures 16-18."""
    import subprocess

    for name in ("DATA", "RUNS", "REPORTS"):
        monkeypatch.setenv(f"T2I_{name}_DIR", str(tmp_path / name.lower()))
    monkeypatch.delenv("T2I_COMMAND", raising=False)  # under `make test` it says "make test"
    done = subprocess.run(
        [
            "make",
            "-C",
            str(NOTEBOOK_DIR.parent),
            "run-celeba",
            "PROFILE=smoke",
            "ARGS=-p adherence_prompts 3 -p samples_per_prompt 2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "reports" / "smoke" / "celeba" / "smoke"
    assert (out / "04_celeba_ldm.ipynb").exists()  # the executed notebook, beside its figures
    for name in ("fig16_loss", "fig17_samples", "fig18_guidance_grid", "extra_adherence"):
        assert (out / f"{name}.png").stat().st_size > 1000, name
    with open(out / "extra_adherence.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["guidance_scale"]) for r in rows] == [0.0, 2.0, 5.0]
    assert all(int(r["samples"]) == 6 and 0 <= float(r["adherence"]) <= 1 for r in rows)
    judge = json.loads((tmp_path / "runs" / "judges" / "celeba-64px" / "judge.json").read_text())
    assert judge["config"]["multilabel"] and len(judge["per_class_accuracy"]) == 40
    provenance = json.loads((out / "fig18_guidance_grid.provenance.json").read_text())
    assert provenance["guidance_scales"] == [0.0, 2.0, 5.0] and provenance["samples"] == 6 * 3
    assert provenance["command"].startswith("make run-celeba")
    assert list((tmp_path / "data" / "latents").glob("celeba-64px-*/train-*.parquet"))  # the cache was built
    assert (tmp_path / "runs" / "celeba" / "smoke" / "checkpoints" / "epoch-0001").is_dir()
