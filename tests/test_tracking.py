"""t2i.tracking: trackers (TensorBoard events, a tracker that is not installed)."""

from __future__ import annotations

import pytest

from t2i import experiment, paths, runs
from t2i.errors import MissingAsset


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


def test_reporting_to_a_tracker_that_is_not_installed_says_what_to_install(smoke_cfg, fit, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(MissingAsset, match="pip install wandb"):
        fit(smoke_cfg.replace(epochs=1, report_to="wandb"), paths.run_dir("mnist", "wandb"))
