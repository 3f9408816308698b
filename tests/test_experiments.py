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

FULL = {**MNIST, **DEMO, "caption_template": "The number {}",  # copied from MNIST: named by this file, not by it
        "class_names": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")}

PROFILES = {"smoke": {**SMOKE, "epochs": 1, "train_subset": 100, "block_out_channels": (8, 16, 16, 8)}}
'''


def test_a_new_experiment_is_one_file_and_a_notebook_and_every_entry_point_knows_it(tmp_path):
    """The toy experiment (a file named toy_words.py, its values copied from MNIST's) runs under its file's name: its
    notebook is 01_mnist with its one ``setup("...")`` literal changed: `make run-toy_words` trains, draws and judges
    the toy run, in runs/toy_words/, and SLURM finds the same run folder from the notebook's name."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "t2i", project / "t2i", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, project / name)  # (mtimes kept: make finds this clone's environment up to date)
    (project / ".venv").symlink_to(ROOT / ".venv")
    (project / "t2i" / "experiments" / "toy_words.py").write_text(TOY)
    (project / "notebooks").mkdir()
    notebook = (ROOT / "notebooks" / "01_mnist.ipynb").read_text()
    assert notebook.count('setup(\\"mnist\\"') == 1
    (project / "notebooks" / "09_toy_words.ipynb").write_text(
        notebook.replace('setup(\\"mnist\\"', 'setup(\\"toy_words\\"')
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(project),
        "T2I_RUNS_DIR": str(tmp_path / "runs"),
        "T2I_REPORTS_DIR": str(tmp_path / "reports"),
    }

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    listed = run(
        sys.executable,
        "-c",
        "from t2i import configs, experiments; print(experiments.NAMES[-1]); "
        "print(configs.get('toy_words', 'smoke').captions[3])",
    )
    assert listed.split("\n")[:2] == ["toy_words", "The number three"]
    assert "run-toy_words" in run("make", "help")
    run("make", "run-toy_words", "PROFILE=smoke", "ARGS=-p samples_per_prompt 1")
    toy = tmp_path / "runs" / "toy_words" / "smoke"
    assert (toy / "checkpoints" / "epoch-0001" / "unet").is_dir() and not (tmp_path / "runs" / "mnist").exists()
    assert json.loads((toy / "config.json").read_text())["caption_template"] == "The number {}"
    assert json.loads((toy / "config.json").read_text())["experiment"] == "toy_words"
    reports = tmp_path / "reports" / "smoke" / "toy_words" / "smoke"
    assert (reports / "09_toy_words.ipynb").exists() and (reports / "fig07_guidance_grid.png").exists()
    assert "The number" in (reports / "fig07_guidance_grid.provenance.json").read_text()
    found = run(
        sys.executable, "-m", "t2i", "where", "run", "--notebook", "notebooks/09_toy_words.ipynb", "--run-name", "x"
    )
    assert found.strip() == str(tmp_path / "runs" / "toy_words" / "x")


def test_an_experiment_file_that_names_another_experiment_or_profile_is_refused(monkeypatch):
    import types

    import pytest

    from t2i import configs
    from t2i.errors import ConfigError

    from t2i import experiments

    mnist = experiments.module("mnist")
    for full, profiles, phrase in (
        ({**mnist.FULL, "experiment": "mnist"}, {}, "sets experiment='mnist'"),
        (mnist.FULL, {"demo": {"profile": "smoke"}}, "sets profile='smoke' in its 'demo'"),
    ):
        fake = types.SimpleNamespace(FULL=full, PROFILES=profiles)
        monkeypatch.setattr(configs, "EXPERIMENTS", (*configs.EXPERIMENTS, "copied"))
        monkeypatch.setattr(configs, "module", lambda name: fake)
        configs.profiles.cache_clear()
        with pytest.raises(ConfigError, match=phrase):
            configs.profiles("copied")
    configs.profiles.cache_clear()
