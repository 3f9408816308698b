"""Adding an experiment (docs/development.md): one file in t2i/experiments/ and a notebook, and every entry point
knows it. A toy experiment is added to a copy of the project this way, then listed, configured and trained."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tests.helpers import ROOT

TOY = '''"""A toy experiment (tests/test_experiments.py): the bundled digits, captioned with number words."""

from . import SMOKE
from .mnist import DEMO, FULL as MNIST

SECTION = "9.1"  # after the thesis's own sections

FULL = {**MNIST, **DEMO, "experiment": "toy", "profile": "full", "caption_template": "The number {}",
        "class_names": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")}

PROFILES = {"smoke": {**SMOKE, "epochs": 1, "train_subset": 100, "block_out_channels": (8, 16, 16, 8)}}
'''


def test_a_new_experiment_is_one_file_and_a_notebook_and_every_entry_point_knows_it(tmp_path):
    """The toy experiment's notebook is 01_mnist with its one ``setup("...")`` literal changed: `make run-toy` trains,
    draws and judges the toy run, in runs/toy/, and SLURM finds the same run folder from the notebook's name."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "t2i", project / "t2i", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, project / name)  # (mtimes kept: make finds this clone's environment up to date)
    (project / ".venv").symlink_to(ROOT / ".venv")
    (project / "t2i" / "experiments" / "toy.py").write_text(TOY)
    (project / "notebooks").mkdir()
    notebook = (ROOT / "notebooks" / "01_mnist.ipynb").read_text()
    assert notebook.count('setup(\\"mnist\\"') == 1
    (project / "notebooks" / "09_toy.ipynb").write_text(notebook.replace('setup(\\"mnist\\"', 'setup(\\"toy\\"'))
    env = {**os.environ, "PYTHONPATH": str(project), "T2I_RUNS_DIR": str(tmp_path / "runs"),
           "T2I_REPORTS_DIR": str(tmp_path / "reports")}

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    listed = run(sys.executable, "-c", "from t2i import configs, experiments; print(experiments.NAMES[-1]); "
                                       "print(configs.get('toy', 'smoke').captions[3])")
    assert listed.split("\n")[:2] == ["toy", "The number three"]
    assert "run-toy" in run("make", "help")
    run("make", "run-toy", "PROFILE=smoke", "ARGS=-p samples_per_prompt 1")
    toy = tmp_path / "runs" / "toy" / "smoke"
    assert (toy / "checkpoints" / "epoch-0001" / "unet").is_dir() and not (tmp_path / "runs" / "mnist").exists()
    assert json.loads((toy / "config.json").read_text())["caption_template"] == "The number {}"
    reports = tmp_path / "reports" / "smoke" / "toy" / "smoke"
    assert (reports / "09_toy.ipynb").exists() and (reports / "fig07_guidance_grid.png").exists()
    assert "The number" in (reports / "fig07_guidance_grid.provenance.json").read_text()
    found = run(sys.executable, "-m", "t2i", "where", "run", "--notebook", "notebooks/09_toy.ipynb", "--run-name", "x")
    assert found.strip() == str(tmp_path / "runs" / "toy" / "x")
