"""t2i.tracking: trackers (TensorBoard events, a tracker that is not installed)."""

from __future__ import annotations

import pytest

from t2i import experiment, paths, runs
from t2i.errors import MissingAsset
from tests.helpers import tensorboard_events


def test_a_tracked_run_writes_tensorboard_events_with_losses_lr_and_a_sample_grid(smoke_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = smoke_cfg.replace(epochs=2, report_to="tensorboard", sample_every_steps=4, sample_every_epochs=None)
    run = experiment.train(cfg, paths.run_dir("mnist", "tracked"))
    events = EventAccumulator(str(run / "tracking"), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("loss", "loss_smoothed", "lr", "grad_norm", "images_per_s", "data_wait_share"):
        assert tag in scalars, (tag, scalars)
    assert [e.step for e in events.Scalars("loss")] == list(range(1, 9))
    assert [e.value for e in events.Scalars("loss")] == pytest.approx(
        runs.read_loss_log(run)["loss"].tolist(), rel=1e-5
    )
    assert [e.step for e in events.Images("samples")] == [4, 8]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-00000004.png", "step-00000008.png"]


def test_reporting_to_a_tracker_that_is_not_installed_says_what_to_install(smoke_cfg, fit, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(MissingAsset, match="pip install wandb"):
        fit(smoke_cfg.replace(epochs=1, report_to="wandb"), paths.run_dir("mnist", "wandb"))


def test_a_run_resumed_from_an_earlier_checkpoint_shows_each_step_once_with_the_values_of_a_lone_run(smoke_cfg):
    """What a kill after a checkpoint leaves: events past it. TensorBoard hides them (purge_step); the smoothed loss
    carries on from the checkpoint."""
    import shutil

    cfg = smoke_cfg.replace(epochs=2, report_to="tensorboard", sample_every_steps=3, sample_every_epochs=None)
    alone = experiment.train(cfg, paths.run_dir("mnist", "alone"))
    run = experiment.train(cfg, paths.run_dir("mnist", "again"))
    shutil.rmtree(run / "checkpoints" / "epoch-0002")  # as if killed after step 8's events, before its checkpoint
    (run / "checkpoints" / "latest").write_text("epoch-0001")
    experiment.train(cfg, run)
    assert tensorboard_events(run) == tensorboard_events(alone)
    assert [step for step, _ in tensorboard_events(run)["loss"]] == list(range(1, 9))
    assert len(list((run / "tracking").glob("*/hparams.yml"))) == 1
