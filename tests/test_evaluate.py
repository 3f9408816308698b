"""t2i.evaluate: what the sweep's real row is measured on, and the CLIP score by default when its model is staged."""

from __future__ import annotations

import torch

from t2i import data, evaluate, judges, paths
from t2i.pipeline import TextToImage


def test_the_real_rows_adherence_is_measured_on_held_out_images_not_on_the_judges_training_set(smoke_cfg, fit,
                                                                                             monkeypatch):
    cfg = smoke_cfg.replace(epochs=1, judge_epochs=2)
    pipe = TextToImage.from_run(fit(cfg, paths.run_dir("mnist", "real-row")))
    judge = judges.for_config(cfg)
    asked = []
    load = data.load_images
    monkeypatch.setattr(evaluate.data, "load_images",
                        lambda cfg, split, limit=None, resolution=None: asked.append(split) or load(cfg, split, limit,
                                                                                                   resolution))
    rows = evaluate.sweep(pipe, judge, evaluate.make_extractor("judge", judge), [1.0], 2)
    n = rows[1]["samples"]
    assert asked == ["train", "judge_test"]  # the real-vs-real floor from train, its adherence from judge_test
    held_out, labels = load(cfg, "judge_test", limit=n)
    expected = (judge.predict(torch.round(held_out * 255) / 255) == labels).float().mean().item()
    assert abs(rows[0]["adherence"] - expected) < 1e-6


def test_make_eval_scores_clip_by_default_when_the_model_is_staged_and_says_so_when_not(capsys, tiny_clip_scorer_dir,
                                                                                       monkeypatch):
    from t2i import assets

    assert evaluate.make_clip_scorer("auto") is None
    assert "no CLIP score" in capsys.readouterr().out
    assert evaluate.make_clip_scorer("") is None
    monkeypatch.setattr(assets, "CLIP_SCORE_MODEL", str(tiny_clip_scorer_dir))  # as if `make assets` had staged it
    assert evaluate.make_clip_scorer("auto").name == str(tiny_clip_scorer_dir)
