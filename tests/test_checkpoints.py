"""t2i.checkpoints: atomic, verified checkpoints that load through from_pretrained; crashes mid-write, damaged ones, pruning."""

from __future__ import annotations

import pytest
import torch

from t2i import checkpoints, configs, paths, runs


def test_checkpoint_round_trip_through_from_pretrained(smoke_cfg, fit):
    run = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "a"))
    ckpt = checkpoints.latest(run)
    assert ckpt.name == "epoch-0001"
    for part in ("unet/diffusion_pytorch_model.safetensors", "ema/diffusion_pytorch_model.safetensors",
                 "training_state.safetensors", "state.json", "manifest.json"):
        assert (ckpt / part).exists(), part
    state = checkpoints.load_state(ckpt)
    assert (state["epoch"], state["step"], state["step_in_epoch"]) == (1, 4, 0)  # 64 images / batch 16
    assert configs.ExperimentConfig.from_dict(state["config"]) == smoke_cfg.replace(epochs=1)
    assert runs.load_config(run) == smoke_cfg.replace(epochs=1)
    tensors = checkpoints.load_tensors(ckpt)
    assert tensors["optimizer.0.step"].item() == 4 and "rng.0.generator" in tensors
    raw, ema = checkpoints.load_unet(ckpt), checkpoints.load_unet(ckpt, ema=True)
    assert {k: v for k, v in raw.config.items() if k != "_name_or_path"} == {k: v for k, v in ema.config.items() if k != "_name_or_path"}
    assert any(not torch.equal(a, b) for a, b in zip(raw.parameters(), ema.parameters()))
    assert not any(p.name.startswith(".") and p.name.endswith(".tmp") for p in checkpoints.checkpoint_dir(run).iterdir())


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
