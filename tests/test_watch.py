"""Watching a run (trackers, sample grids, periodic evaluation) without changing it; the training options of big
models (gradient accumulation and checkpointing, LR schedules by name, the accelerate precision setting)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from t2i import checkpoints, data, experiment, paths, runs, train, watch
from t2i.errors import MissingAsset
from t2i.models import build_unet

ROOT = Path(__file__).resolve().parents[1]


def weights(run: Path, ema: bool = False) -> dict[str, torch.Tensor]:
    return checkpoints.load_unet(checkpoints.latest(run), ema=ema).state_dict()


def test_a_tracked_run_writes_tensorboard_events_with_losses_lr_and_a_sample_grid(smoke_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = smoke_cfg.replace(epochs=2, report_to="tensorboard", sample_every_steps=4, sample_every_epochs=None)
    run = experiment.train(cfg, paths.run_dir("mnist", "tracked"))
    events = EventAccumulator(str(run / "tracking"), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("loss", "loss_smoothed", "lr", "grad_norm", "images_per_s", "data_wait_share"):
        assert tag in scalars, (tag, scalars)
    assert [e.step for e in events.Scalars("loss")] == list(range(1, 9))
    assert [e.value for e in events.Scalars("loss")] == pytest.approx(runs.read_loss_log(run)["loss"].tolist(), rel=1e-5)
    assert [e.step for e in events.Images("samples")] == [4, 8]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-00000004.png", "step-00000008.png"]


def test_grids_and_evaluations_do_not_change_training_and_a_resumed_run_draws_the_same_grids(smoke_cfg):
    cfg = smoke_cfg.replace(epochs=2)
    plain = experiment.train(cfg, paths.run_dir("mnist", "plain"))
    watched_cfg = cfg.replace(sample_every_steps=3, sample_every_epochs=1, eval_every_epochs=1,
                              eval_guidance_scales=(1.0, 3.0), eval_samples_per_prompt=2)
    watched = experiment.train(watched_cfg, paths.run_dir("mnist", "watched"))
    resumed = paths.run_dir("mnist", "resumed")
    experiment.train(watched_cfg.replace(epochs=1), resumed)
    experiment.train(watched_cfg, resumed)
    for run in (watched, resumed):
        for ema in (False, True):
            a, b = weights(plain, ema), weights(run, ema)
            assert all(torch.equal(a[k], b[k]) for k in a), f"{run.name}: watching changed the weights"
    grids = sorted(p.name for p in (watched / "samples").iterdir())
    assert grids == ["step-00000003.png", "step-00000004.png", "step-00000006.png", "step-00000008.png"]
    assert [(resumed / "samples" / g).read_bytes() == (watched / "samples" / g).read_bytes() for g in grids] == [True] * 4
    rows = watch.read_eval_log(watched)
    assert [(r["epoch"], r["guidance_scale"]) for r in rows] == [(1, "real"), (1, 1.0), (1, 3.0),
                                                                 (2, "real"), (2, 1.0), (2, 3.0)]
    assert all(0 <= r["adherence"] <= 1 and r["samples"] == 20 for r in rows)
    assert watch.read_eval_log(resumed) == rows


class FixedNoise:
    """An objective whose noise and timestep depend on each image alone, so it does not matter how images are grouped
    into batches: the ground truth for gradient accumulation."""

    def __init__(self, table):
        self.table = table

    def to(self, device):
        return FixedNoise(self.table.to(device))

    def __call__(self, model, batch, generator, timer=None):
        x0, ids = batch
        eps = torch.sin(37.0 * x0 + 1.0)
        t = torch.full((len(x0),), 500, device=x0.device)
        pred = model(0.6 * x0 + 0.8 * eps, t, encoder_hidden_states=self.table.embed(ids)).sample
        return F.mse_loss(pred, eps)


def test_two_accumulated_batches_of_b_make_the_update_of_one_batch_of_2b(smoke_cfg, caption_table):
    dataset = data.load_dataset(smoke_cfg)
    full = train.fit(smoke_cfg.replace(epochs=1, batch_size=32), paths.run_dir("mnist", "b32"), dataset,
                     FixedNoise(caption_table))
    halves = train.fit(smoke_cfg.replace(epochs=1, batch_size=16, gradient_accumulation_steps=2),
                       paths.run_dir("mnist", "b16x2"), dataset, FixedNoise(caption_table))
    a, b = weights(full), weights(halves)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)
    tensors = checkpoints.load_tensors(checkpoints.latest(halves))
    assert tensors["optimizer.0.step"].item() == 2  # 4 batches, 2 updates


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(smoke_cfg):
    torch.manual_seed(0)
    x, t = torch.randn(4, *smoke_cfg.model_shape), torch.tensor([10, 200, 500, 900])
    emb = torch.randn(4, smoke_cfg.max_tokens, smoke_cfg.cross_attention_dim)
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(1)
        unet = build_unet(smoke_cfg).train()
        if checkpointing:
            unet.enable_gradient_checkpointing()
        loss = F.mse_loss(unet(x, t, encoder_hidden_states=emb).sample, x)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in unet.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, atol=1e-5, rtol=0)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_run_with_gradient_checkpointing_trains_like_one_without(smoke_cfg, fit):
    a = fit(smoke_cfg.replace(epochs=1), paths.run_dir("mnist", "no-ckpt"))
    b = fit(smoke_cfg.replace(epochs=1, gradient_checkpointing=True), paths.run_dir("mnist", "grad-ckpt"))
    for key, value in weights(a).items():
        torch.testing.assert_close(value, weights(b)[key], atol=1e-5, rtol=0)


@pytest.mark.parametrize("schedule, final", [("constant", 1.0), ("cosine", 0.0), ("linear", 0.0)])
def test_the_lr_schedule_is_chosen_by_name_over_all_optimizer_steps(smoke_cfg, fit, schedule, final):
    run = fit(smoke_cfg.replace(epochs=2, lr_schedule=schedule, lr_warmup_steps=2), paths.run_dir("mnist", schedule))
    last_lr = checkpoints.load_state(checkpoints.latest(run))["lr_schedule"]["_last_lr"][0]
    assert last_lr == pytest.approx(final * smoke_cfg.learning_rate, abs=1e-9)


@pytest.mark.parametrize("setting, used", [("auto", "bf16"), ("no", "no")])
def test_an_accelerate_precision_setting_is_honoured_when_the_config_says_auto(smoke_cfg, fit, monkeypatch, setting,
                                                                               used):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    run = fit(smoke_cfg.replace(epochs=1, train_subset=16, mixed_precision=setting), paths.run_dir("mnist", setting))
    assert checkpoints.load_state(checkpoints.latest(run))["precision"] == used  # a config's own choice wins


def test_reporting_to_a_tracker_that_is_not_installed_says_what_to_install(smoke_cfg, fit, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(MissingAsset, match="pip install wandb"):
        fit(smoke_cfg.replace(epochs=1, report_to="wandb"), paths.run_dir("mnist", "wandb"))


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
    dry = subprocess.run(["make", "-n", "watch", "RUN=runs/mnist/demo"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "MAKEFLAGS": ""})
    assert dry.returncode == 0, dry.stderr
    assert "tensorboard --logdir runs/mnist/demo" in dry.stdout
