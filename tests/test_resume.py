"""Resuming a run (workflow): after SIGKILL and preemption signals, bitwise; config changes; runs written by older
code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from t2i import checkpoints, data, paths, posthoc, runs
from t2i.preemption import MARKER, REQUEUE_EXIT_CODE
from tests.helpers import ROOT, weights


def test_resume_matches_uninterrupted_run(smoke_cfg, fit):
    dataset = data.load_dataset(smoke_cfg)
    straight = fit(smoke_cfg.replace(epochs=2), paths.run_dir("mnist", "straight"), dataset)
    resumed = paths.run_dir("mnist", "resumed")
    fit(smoke_cfg.replace(epochs=1), resumed, dataset)
    fit(smoke_cfg.replace(epochs=2), resumed, dataset)
    for ema in (False, True):
        a = checkpoints.load_unet(checkpoints.latest(straight), ema=ema).state_dict()
        b = checkpoints.load_unet(checkpoints.latest(resumed), ema=ema).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = runs.read_loss_log(resumed)
    assert log["step"].tolist() == list(range(1, 9))
    assert torch.equal(torch.tensor(log["loss"]), torch.tensor(runs.read_loss_log(straight)["loss"]))


def test_resume_drops_loss_rows_past_the_checkpoint(smoke_cfg, fit):
    run = paths.run_dir("mnist", "killed")
    fit(smoke_cfg.replace(epochs=1), run)
    with open(run / runs.LOSS_LOG, "a") as f:  # a job killed mid-epoch 2 logged steps 5..6 and no checkpoint
        f.write("2,5,0.5\n2,6,0.5\n")
    fit(smoke_cfg.replace(epochs=2), run)
    assert runs.read_loss_log(run)["step"].tolist() == list(range(1, 9))


def test_a_complete_run_is_not_trained_again(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "done"))
    before = weights(run)
    fit(smoke_cfg.replace(epochs=1), run)
    assert all(torch.equal(before[k], v) for k, v in weights(run).items())


def test_changed_config_refuses_to_resume(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "x"))
    with pytest.raises(ValueError, match="learning_rate"):
        fit(smoke_cfg.replace(epochs=1, learning_rate=0.5), run)


def test_a_run_written_before_the_house_plan_still_loads_samples_and_resumes(tmp_path):
    """tests/fixtures/run_c831579 was trained by commit c831579 (its config.json says profile_steps, not
    timing_steps, and compile=false, not "off"); today's code reads its config, samples from it and trains it one
    epoch further."""
    import shutil
    from pathlib import Path

    from t2i import experiment
    from t2i.pipeline import TextToImage

    run = paths.run_dir("mnist", "legacy")
    shutil.copytree(Path(__file__).parent / "fixtures" / "run_c831579", run)
    cfg = runs.load_config(run)
    assert cfg.timing_steps == 0 and cfg.compile == "off" and cfg.block_out_channels == (4, 8, 8, 4)
    images = TextToImage.from_run(run, device="cpu").images(["A handwritten digit 3"], 3.0)
    assert images.shape == (1, 1, 16, 16) and torch.isfinite(images).all()
    experiment.train(cfg.replace(epochs=2), run)
    assert checkpoints.latest(run).name == "epoch-0002"
    assert runs.read_loss_log(run)["step"].tolist() == [1.0, 2.0]


def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(tiny_clip_dir):
    """Weights, losses, and the post-hoc EMA's snapshots and tracked averages (a snapshot every step)."""
    settings = {"epochs": 4, "checkpoint_every_steps": 1, "ema_snapshot_every": 1}  # 4 steps per epoch
    finish(cli_train(settings, "straight", tiny_clip_dir))

    killed = paths.run_dir("mnist", "killed")
    proc = cli_train(settings, "killed", tiny_clip_dir)
    wait_for(lambda: latest_step(killed) >= 6, proc)  # mid-epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped_at = checkpoints.load_state(checkpoints.latest(killed))["step"]
    assert stopped_at < 16, "the kill landed after the run finished; nothing was tested"

    out = finish(cli_train(settings, "killed", tiny_clip_dir))
    assert "resuming killed from" in out
    straight = paths.run_dir("mnist", "straight")
    assert_same_weights(straight, killed)
    assert runs.read_loss_log(killed)["loss"].tolist() == runs.read_loss_log(straight)["loss"].tolist()
    snapshots = {run: {p.name: snapshot(p) for _, p in posthoc.snapshots(run)} for run in (straight, killed)}
    assert len(snapshots[straight]) == 16 and snapshots[killed].keys() == snapshots[straight].keys()
    for name, (tensors, metadata) in snapshots[straight].items():  # (the header's key order is the writer's own)
        assert snapshots[killed][name][1] == metadata, name
        assert all(torch.equal(snapshots[killed][name][0][k], t) for k, t in tensors.items()), name
    tracked = [
        {k: v for k, v in checkpoints.load_tensors(checkpoints.latest(run)).items() if k.startswith("phema.")}
        for run in (straight, killed)
    ]
    assert tracked[0] and tracked[0].keys() == tracked[1].keys()
    assert all(torch.equal(tracked[0][k], tracked[1][k]) for k in tracked[0])


def test_preemption_signals_checkpoint_exit_for_requeue_and_resume_exactly(tiny_clip_dir):
    """SIGUSR1 (SLURM's warning before the time limit) and SIGTERM (preemption), each against the same
    uninterrupted run."""
    settings = {"epochs": 8}  # the signal is sent after epoch 1 and handled at the next step: 7 epochs to spare
    finish(cli_train(settings, "straight", tiny_clip_dir))
    for signum in (signal.SIGUSR1, signal.SIGTERM):
        run = paths.run_dir("mnist", f"preempted-{signum.name}")
        proc = cli_train(settings, run.name, tiny_clip_dir)
        wait_for(lambda: latest_step(run) >= 4, proc)  # after the first epoch checkpoint
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == REQUEUE_EXIT_CODE, out
        assert signal.Signals(signum).name in out
        ckpt = checkpoints.latest(run)
        assert (run / MARKER).read_text().strip() == ckpt.name
        assert checkpoints.load_state(ckpt)["step"] < 32, "the signal arrived after the run finished"

        finish(cli_train(settings, run.name, tiny_clip_dir))
        assert not (run / MARKER).exists()
        assert_same_weights(paths.run_dir("mnist", "straight"), run)


def snapshot(path: Path) -> tuple[dict, dict]:
    """A post-hoc EMA snapshot's tensors and metadata."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def cli_train(cfg_overrides: dict, run_name: str, tiny_clip_dir) -> subprocess.Popen:
    """`python -m t2i train` in its own process, as a batch job would run it."""
    sets = {"text_encoder": str(tiny_clip_dir), "cross_attention_dim": 32, **cfg_overrides}
    args = [sys.executable, "-m", "t2i", "train", "--experiment", "mnist", "--profile", "smoke", "--run-name", run_name]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return subprocess.Popen(
        args, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(
                f"training ended (code {proc.returncode}) before the test could interrupt it:\n{proc.stdout.read()}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the run")
        time.sleep(0.002)


def latest_step(run: Path) -> int:
    pointer = checkpoints.checkpoint_dir(run) / checkpoints.LATEST
    try:
        return checkpoints.load_state(checkpoints.checkpoint_dir(run) / pointer.read_text().strip())["step"]
    except (FileNotFoundError, ValueError, KeyError):
        return -1


def assert_same_weights(run_a: Path, run_b: Path) -> None:
    for ema in (False, True):
        a = checkpoints.load_unet(checkpoints.latest(run_a), ema=ema).state_dict()
        b = checkpoints.load_unet(checkpoints.latest(run_b), ema=ema).state_dict()
        assert a.keys() == b.keys()
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{len(different)} tensors differ (ema={ema}), e.g. {different[:3]}"


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out
