"""t2i.runs: one writer per run folder (the run lock), run names that stay inside the runs folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from t2i import checkpoints, paths, runs
from t2i.errors import ConfigError, RunError
from tests.conftest import TINY_CLIP_WIDTH
from tests.helpers import ROOT, weights

HOLD = (
    "import sys, time; from t2i import runs; lock = runs.RunLock(sys.argv[1]).__enter__(); print('held', "
    "flush=True); time.sleep(60)"
)


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_free(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=f"pid {holder.pid}, since"):
            runs.RunLock(tmp_path).__enter__()
    finally:
        holder.send_signal(signal.SIGKILL)  # a job that dies without cleaning up
        holder.wait()
    with runs.RunLock(tmp_path):  # the kernel released its lock with its process
        pass


def test_two_trainers_on_one_run_the_second_is_refused_and_the_first_ends_as_a_lone_run_would(tmp_path, tiny_clip_dir):
    """The same job submitted twice: both start together; whichever takes the run's lock trains, the other stops
    with one line, and the run ends bitwise equal to a lone run, with no duplicated steps in its log."""
    args = [
        sys.executable,
        "-m",
        "t2i",
        "train",
        "--experiment",
        "mnist",
        "--profile",
        "smoke",
        "--set",
        "epochs=4",
        "--set",
        "train_subset=128",
        "--set",
        f"text_encoder={tiny_clip_dir}",
        "--set",
        f"cross_attention_dim={TINY_CLIP_WIDTH}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    both = [
        subprocess.Popen(
            [*args, "--run-name", "shared"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in both]
    codes = sorted(code for code, _, _ in results)
    refused = [err for code, _, err in results if code == 1]
    assert codes == [0, 1] and "is being trained by host" in refused[0] and "Traceback" not in refused[0], results
    lone = subprocess.run([*args, "--run-name", "lone"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert lone.returncode == 0, lone.stderr[-2000:]
    shared, alone = paths.run_dir("mnist", "shared"), paths.run_dir("mnist", "lone")
    assert all((weights(shared)[k] == v).all() for k, v in weights(alone).items())
    assert (shared / runs.LOSS_LOG).read_bytes() == (alone / runs.LOSS_LOG).read_bytes()  # no duplicated steps
    assert checkpoints.latest(shared).name == "epoch-0004"


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".", ""])
def test_a_run_name_is_one_folder_inside_the_runs_folder(name):
    with pytest.raises(ConfigError, match="single folder name"):
        paths.run_dir("mnist", name)
