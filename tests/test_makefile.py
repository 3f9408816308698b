"""The Makefile as a user runs it: `make clean` then git, `make watch`."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT


def test_git_add_of_a_notebook_works_after_make_clean(tmp_path):
    """`make setup` installs the nbstripout filter pointing at .venv's Python; `make clean` deletes .venv, so it must
    take the filter out first, or every later `git add` of a notebook fails (the filter is required)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    (clone / "Makefile").write_text((ROOT / "Makefile").read_text())  # this tree's Makefile, committed or not
    site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(clone / ".venv")], check=True)
    (next((clone / ".venv" / "lib").glob("python3*/site-packages")) / "t2i-parent.pth").write_text(f"{site}\n")
    subprocess.run([str(clone / ".venv" / "bin" / "python"), "-m", "nbstripout", "--install"], cwd=clone, check=True)
    notebook = clone / "notebooks" / "01_mnist.ipynb"
    assert subprocess.run(["git", "add", str(notebook)], cwd=clone).returncode == 0  # the filter works
    subprocess.run(["make", "clean"], cwd=clone, check=True, capture_output=True)
    assert not (clone / ".venv").exists()
    notebook.write_text(notebook.read_text().replace("# 01 ·", "# 01 · (edited)"))
    done = subprocess.run(["git", "add", str(notebook)], cwd=clone, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_make_watch_serves_the_runs_tracking_folder_with_tensorboard():
    dry = subprocess.run(
        ["make", "-n", "watch", "RUN=runs/mnist/demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MAKEFLAGS": ""},
    )
    assert dry.returncode == 0, dry.stderr
    assert "tensorboard --logdir runs/mnist/demo" in dry.stdout
