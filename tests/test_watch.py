"""t2i.watch: sample grids and periodic evaluation while a run trains, without changing it."""

from __future__ import annotations


import torch

from t2i import experiment, paths, watch
from tests.helpers import weights


def test_grids_and_evaluations_do_not_change_training_and_a_resumed_run_draws_the_same_grids(smoke_cfg):
    cfg = smoke_cfg.replace(epochs=2)
    plain = experiment.train(cfg, paths.run_dir("mnist", "plain"))
    watched_cfg = cfg.replace(
        sample_every_steps=3,
        sample_every_epochs=1,
        eval_every_epochs=1,
        eval_guidance_scales=(1.0, 3.0),
        eval_samples_per_prompt=2,
    )
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
    assert [(resumed / "samples" / g).read_bytes() == (watched / "samples" / g).read_bytes() for g in grids] == [
        True
    ] * 4
    rows = watch.read_eval_log(watched)
    assert [(r["epoch"], r["guidance_scale"]) for r in rows] == [
        (1, "real"),
        (1, 1.0),
        (1, 3.0),
        (2, "real"),
        (2, 1.0),
        (2, 3.0),
    ]
    assert all(0 <= r["adherence"] <= 1 and r["samples"] == 20 for r in rows)
    assert watch.read_eval_log(resumed) == rows
