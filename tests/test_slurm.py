"""slurm/notebook.sbatch end to end, with `srun` and `scontrol` replaced by stubs: a preemption signal to the kernel
checkpoints and requeues; the requeued attempt resumes and finishes."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from t2i import checkpoints, paths
from t2i.preemption import MARKER
from tests.helpers import ROOT

SCRIPT = ROOT / "slurm" / "notebook.sbatch"


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


def job(tmp_path: Path, attempt: int, *papermill_args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_RESTART_COUNT": str(attempt),
        "SLURM_SUBMIT_DIR": str(ROOT),
    }
    return subprocess.Popen(
        ["bash", str(SCRIPT), "notebooks/01_mnist.ipynb", "smoke", "slurm", *papermill_args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_preempted_notebook_job_requeues_and_the_next_attempt_resumes(tmp_path):
    (tmp_path / "bin").mkdir()
    stub(tmp_path / "bin", "srun", 'while [[ $1 == --* ]]; do shift; done\nexec "$@"\n')
    stub(tmp_path / "bin", "scontrol", f'echo "$@" >> {tmp_path / "scontrol.log"}\n')
    run = paths.run_dir("mnist", "slurm")

    watching = [
        "-y",
        "config_overrides: {report_to: tensorboard, sample_every_epochs: 1, eval_every_epochs: 1, "
        "eval_samples_per_prompt: 1, eval_guidance_scales: [3.0]}",
    ]
    first = job(tmp_path, 0, "-p", "epochs", "500", "-p", "samples_per_prompt", "1", *watching)
    deadline = time.monotonic() + 180
    while checkpoints.latest(run) is None:
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    kernels = [p for p in psutil.Process(first.pid).children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]
    assert len(kernels) == 1
    kernels[0].send_signal(signal.SIGUSR1)  # what SLURM's --signal=USR1@120 delivers to the job step
    out, _ = first.communicate(timeout=180)
    assert first.returncode == 0, out
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert (run / MARKER).exists() and "requeueing" in out
    stopped = checkpoints.load_state(checkpoints.latest(run))
    assert stopped["epoch"] < 500

    second = job(tmp_path, 1, "-p", "epochs", str(max(stopped["epoch"], 1)), "-p", "samples_per_prompt", "1", *watching)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]  # not requeued again
    assert not (run / MARKER).exists()
    out = paths.report_dir("smoke", "mnist", "slurm")  # the executed notebooks sit beside the figures they drew
    assert sorted(p.name for p in out.glob("*.ipynb")) == [
        "01_mnist.job4242.attempt0.ipynb",
        "01_mnist.job4242.attempt1.ipynb",
    ]
    assert (out / "extra_adherence.md").exists() and (out / "fig07_guidance_grid.png").exists()
    assert "sbatch slurm/notebook.sbatch" in json.loads((out / "fig06_loss.provenance.json").read_text())["command"]
    # what `make watch RUN=...` shows: the job's losses and a grid per epoch, across both attempts
    assert list((run / "tracking").rglob("events.out.tfevents.*")) and len(list((run / "samples").glob("*.png"))) >= 1
    assert (run / "eval.csv").read_text().count("\n") >= 3  # header, real row, w = 3 of at least one epoch
