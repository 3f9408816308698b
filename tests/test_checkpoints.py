"""t2i.checkpoints: atomic, verified checkpoints that load through from_pretrained; crashes mid-write, damaged ones,
pruning, full disks."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal

import pytest
import torch

from t2i import checkpoints, configs, paths, runs
from t2i.errors import RunError
from t2i.preemption import Preempted


def test_checkpoint_round_trip_through_from_pretrained(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "a"))
    ckpt = checkpoints.latest(run)
    assert ckpt.name == "epoch-0001"
    for part in (
        "unet/diffusion_pytorch_model.safetensors",
        "ema/diffusion_pytorch_model.safetensors",
        "training_state.safetensors",
        "state.json",
        "manifest.json",
    ):
        assert (ckpt / part).exists(), part
    state = checkpoints.load_state(ckpt)
    assert (state["epoch"], state["step"], state["step_in_epoch"]) == (1, 4, 0)  # 64 images / batch 16
    assert configs.ExperimentConfig.from_dict(state["config"]) == smoke_cfg.replace(epochs=1)
    assert runs.load_config(run) == smoke_cfg.replace(epochs=1)
    tensors = checkpoints.load_tensors(ckpt)
    assert tensors["optimizer.0.step"].item() == 4 and "rng.0.generator" in tensors
    raw, ema = checkpoints.load_unet(ckpt), checkpoints.load_unet(ckpt, ema=True)

    def config(model):
        return {k: v for k, v in model.config.items() if k != "_name_or_path"}

    assert config(raw) == config(ema)
    assert any(not torch.equal(a, b) for a, b in zip(raw.parameters(), ema.parameters()))
    assert not any(
        p.name.startswith(".") and p.name.endswith(".tmp") for p in checkpoints.checkpoint_dir(run).iterdir()
    )


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(smoke_cfg, fit, monkeypatch):
    cfg = smoke_cfg.replace(epochs=2)
    run = paths.run_dir("mnist", "crash")
    fit(cfg.replace(epochs=1), run)

    def die(directory):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(checkpoints, "_fsync_tree", die)  # files written, not yet renamed into place
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, run)
    assert checkpoints.latest(run).name == "epoch-0001"
    monkeypatch.undo()

    fit(cfg, run)  # resumes from epoch 1, replaces the stale temp folder
    assert checkpoints.latest(run).name == "epoch-0002"
    assert runs.read_loss_log(run)["step"].tolist() == list(range(1, 9))


def test_damaged_newest_checkpoint_falls_back_to_the_previous_with_a_warning(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=2), paths.run_dir("mnist", "damaged"))
    weights = checkpoints.checkpoint_dir(run) / "epoch-0002" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated, as after a full disk
    with pytest.warns(UserWarning, match="epoch-0002.*damaged"):
        assert checkpoints.latest(run).name == "epoch-0001"


def test_only_the_last_k_checkpoints_and_the_epoch_milestones_are_kept(smoke_cfg, fit):
    cfg = smoke_cfg.replace(epochs=4, checkpoint_every=2, checkpoint_every_steps=1, keep_checkpoints=2)
    run = fit(cfg, paths.run_dir("mnist", "prune"))
    kept = sorted(p.name for p in checkpoints.candidates(run))
    # newest two (steps 15, 16 = epoch 4) plus the milestone of epoch 2
    assert kept == ["epoch-0002", "epoch-0004", "step-00000015"]


def test_weights_load_without_pickle(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "safe"))
    files = {p.suffix for p in checkpoints.latest(run).rglob("*") if p.is_file()}
    assert files == {".safetensors", ".json"}


def test_a_checkpoint_published_without_one_of_its_components_fails_verification(smoke_cfg, fit, tmp_path):
    """What a second writer left behind: epoch-NNNN with ema/, state.json and training_state but no unet/, and a
    manifest that lists just what is there. It must not pass as the run's latest checkpoint."""
    run = fit(smoke_cfg.replace(epochs=2), paths.run_dir("mnist", "parts"))
    newest = checkpoints.latest(run)
    shutil.rmtree(newest / "unet")
    (newest / checkpoints.MANIFEST).write_text(json.dumps(checkpoints._manifest(newest), indent=2))
    with pytest.raises(checkpoints.CheckpointError, match="lacks unet"):
        checkpoints.verify(newest)
    with pytest.warns(UserWarning, match="lacks unet"):
        assert checkpoints.latest(run).name == "epoch-0001"


def test_a_preemption_checkpoint_at_an_epochs_first_batch_keeps_that_epochs_milestone(smoke_cfg, fit, monkeypatch):
    """SIGTERM while epoch 1's checkpoint is written: the trainer stops at epoch 2's first batch and writes
    epoch-0001 again. It stays a milestone, so pruning keeps it, and the rerun ends with every milestone."""
    from t2i import train

    cfg = smoke_cfg.replace(epochs=4, checkpoint_every=1, keep_checkpoints=2)
    run = paths.run_dir("mnist", "milestones")
    save = checkpoints.save_training
    calls = []

    def signal_during_the_first_save(*args, **kwargs):
        path = save(*args, **kwargs)
        if not calls:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered while epoch-0001 is being written
        calls.append(path.name)
        return path

    monkeypatch.setattr(train.checkpoints, "save_training", signal_during_the_first_save)
    with pytest.raises(Preempted):
        fit(cfg, run)
    assert calls == ["epoch-0001", "epoch-0001"]  # the epoch's end, then the preemption at epoch 2's first batch
    assert checkpoints.load_state(checkpoints.latest(run))["milestone"] is True
    monkeypatch.undo()
    fit(cfg, run)
    names = sorted(p.name for p in checkpoints.candidates(run))
    assert names == ["epoch-0001", "epoch-0002", "epoch-0003", "epoch-0004"]


def test_a_full_disk_during_a_checkpoint_is_one_line_naming_the_folder_and_the_run_resumes(
    smoke_cfg, fit, monkeypatch, capsys
):
    from t2i import cli

    cfg = smoke_cfg.replace(epochs=2)
    run = fit(cfg.replace(epochs=1), paths.run_dir("mnist", "full-disk"))

    def full(path):  # what safetensors raises when the disk fills up mid-write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints, "save_file", lambda *a, **k: full(None))
    with pytest.raises(checkpoints.CheckpointError, match="no space left for a checkpoint in .*full-disk/checkpoints"):
        fit(cfg, run)
    assert checkpoints.latest(run).name == "epoch-0001" and not list((run / "checkpoints").glob(".*.tmp"))
    monkeypatch.undo()
    fit(cfg, run)  # space freed: the same command resumes
    assert checkpoints.latest(run).name == "epoch-0002"
    assert "epoch-0002" in [p.name for p in checkpoints.candidates(run)]
    assert (
        cli.one_line(
            RuntimeError(
                "Caught X in DataLoader worker process 0.\nOriginal Traceback (most recent "
                "call last):\n  File ...\nt2i.data.shards.TooManyBadSamples: 3 bad rows"
            )
        )
        == "3 bad rows"
    )


def test_a_really_full_disk_stops_with_one_line_and_after_space_is_freed_the_run_ends_as_a_lone_run(
    smoke_cfg, fit, tmp_path, monkeypatch, capsys
):
    """A tmpfs as the runs folder with room for one and a half checkpoints: the first fits, the second does not."""
    from t2i import cli
    from tests.helpers import mounts, weights

    sets = ["--set", f"text_encoder={smoke_cfg.text_encoder}", "--set", "cross_attention_dim=32", "--set", "epochs=3"]
    args = ["train", "--experiment", "mnist", "--profile", "smoke", "--run-name", "full", *sets]
    assert cli.main(args) == 0
    alone = paths.run_dir("mnist", "full")
    size = sum(f.stat().st_size for f in (alone / "checkpoints" / "epoch-0001").rglob("*")) / 2**20
    with mounts.tmpfs(tmp_path / "small-disk", 1.5 * size) as disk:
        monkeypatch.setenv("T2I_RUNS_DIR", str(disk))
        assert cli.main(args) == 1
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert (
            error.startswith(
                f"error: no space left for a checkpoint in {disk}/mnist/full/checkpoints: it needs "
                f"about {size:.0f} MB (the size of epoch-0001)"
            )
            and "intact" in error
        ), error
        run = paths.run_dir("mnist", "full")
        assert checkpoints.latest(run).name == "epoch-0001" and not list((run / "checkpoints").glob(".*.tmp"))
        mounts.resize(disk, 8 * size)  # space freed: the same command resumes
        assert cli.main(args) == 0
        assert "resuming full from epoch-0001" in capsys.readouterr().out
        for ema in (False, True):
            a, b = weights(alone, ema), weights(run, ema)
            assert all(torch.equal(a[k], b[k]) for k in a)
        assert (run / runs.LOSS_LOG).read_bytes() == (alone / runs.LOSS_LOG).read_bytes()


def test_a_checkpoint_is_named_not_given_as_a_path_and_a_junk_latest_pointer_warns(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "named"))
    with pytest.raises(RunError, match="not a path"):
        checkpoints.resolve(run, "../../ref")
    (run / "checkpoints" / checkpoints.LATEST).write_text("../../elsewhere")
    with pytest.warns(UserWarning, match="not a checkpoint of this run"):
        assert checkpoints.latest(run).name == "epoch-0001"
