"""Adding an experiment (docs/development.md): one file in t2i/experiments/ and a notebook, and every entry point
knows it. A toy experiment is added to a copy of the project this way, then listed, configured and trained."""

from __future__ import annotations

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

PROFILES = {"smoke": {**SMOKE, "epochs": 1, "train_subset": 32, "block_out_channels": (8, 16, 16, 8)}}
'''


def test_a_new_experiment_is_one_file_and_a_notebook_and_every_entry_point_knows_it(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "t2i", project / "t2i", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, project / name)
    (project / "t2i" / "experiments" / "toy.py").write_text(TOY)
    (project / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "01_mnist.ipynb", project / "notebooks" / "09_toy.ipynb")
    env = {**os.environ, "PYTHONPATH": str(project), "T2I_RUNS_DIR": str(tmp_path / "runs")}

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    listed = run(sys.executable, "-c", "from t2i import configs, experiments; print(experiments.NAMES[-1]); "
                                       "print(configs.get('toy', 'smoke').captions[3])")
    assert listed.split("\n")[:2] == ["toy", "The number three"]
    run(sys.executable, "-m", "t2i", "train", "--experiment", "toy", "--profile", "smoke")
    assert (tmp_path / "runs" / "toy" / "smoke" / "checkpoints" / "epoch-0001" / "unet").is_dir()
    assert "run-toy" in run("make", "help")
    planned = run("make", "-n", "run-toy", "PROFILE=smoke")
    assert "notebooks/09_toy.ipynb " in planned and "/smoke/toy/smoke/09_toy.ipynb -p profile smoke" in planned
