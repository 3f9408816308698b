"""t2i.evaluate: what the sweep's real row is measured on, and the CLIP score by default when its model is staged."""

from __future__ import annotations

import pytest
import torch

from t2i import data, evaluate, judges, paths
from t2i.pipeline import TextToImage


def test_the_real_rows_adherence_is_measured_on_held_out_images_not_on_the_judges_training_set(
    smoke_cfg, fit, monkeypatch
):
    cfg = smoke_cfg.replace(epochs=1, judge_epochs=2)
    pipe = TextToImage.from_run(fit(cfg, paths.run_dir("mnist", "real-row")))
    judge = judges.for_config(cfg)
    asked = []
    load = data.load_images
    monkeypatch.setattr(
        evaluate.data,
        "load_images",
        lambda cfg, split, limit=None, resolution=None: asked.append(split) or load(cfg, split, limit, resolution),
    )
    rows = evaluate.sweep(pipe, judge, evaluate.make_extractor("judge", judge), [1.0], 2)
    n = rows[1]["samples"]
    assert asked == ["train", "judge_test"]  # the real-vs-real floor from train, its adherence from judge_test
    held_out, labels = load(cfg, "judge_test", limit=n)
    expected = (judge.predict(torch.round(held_out * 255) / 255) == labels).float().mean().item()
    assert abs(rows[0]["adherence"] - expected) < 1e-6


def test_make_eval_scores_clip_by_default_when_the_model_is_staged_and_says_so_when_not(
    capsys, tiny_clip_scorer_dir, monkeypatch
):
    from t2i import assets

    assert evaluate.make_clip_scorer("auto") is None
    assert "no CLIP score" in capsys.readouterr().out
    assert evaluate.make_clip_scorer("") is None
    monkeypatch.setattr(assets, "CLIP_SCORE_MODEL", str(tiny_clip_scorer_dir))  # as if `make assets` had staged it
    assert evaluate.make_clip_scorer("auto").name == str(tiny_clip_scorer_dir)


@pytest.fixture
def ten_real_images(monkeypatch):
    """Ten real training images, each a different grey (0.0, 0.1, ... 0.9) with its index as condition, and a pixel
    extractor; nothing cached."""
    real = (torch.arange(10.0) / 10)[:, None, None, None].expand(10, 1, 4, 4).clone(), torch.arange(10)
    monkeypatch.setattr(
        evaluate.data, "load_images", lambda cfg, split, limit=None, resolution=None: (real[0][:limit], real[1][:limit])
    )
    extractor = lambda images: evaluate.metrics.Features(images.flatten(1).double().numpy(), None)  # noqa: E731
    extractor.name = "pixels"
    monkeypatch.setattr(evaluate.metrics, "cached_features", lambda extractor, images, key: extractor(images()))
    return real, extractor


def test_an_n_larger_than_half_the_data_gets_a_reference_of_half_and_says_so(smoke_cfg, capsys, ten_real_images):
    """The demo's 1,257 training digits hold a real-vs-real floor of 628 against 628: a larger N (the N = 2,000
    check) is compared with that reference instead of refusing, and the message says so."""
    _, extractor = ten_real_images
    reference, second, conditions = evaluate.reference_set(smoke_cfg, extractor, 3)
    assert len(reference) == len(second) == 3 and conditions.tolist() == [3, 4, 5] and capsys.readouterr().out == ""
    reference, second, conditions = evaluate.reference_set(smoke_cfg, extractor, 8)
    assert len(reference) == len(second) == 5 and conditions.tolist() == [5, 6, 7, 8, 9]
    assert "reference: 5 real training images against N = 8" in capsys.readouterr().out


def test_a_replications_reference_starts_past_the_real_images_the_main_report_used(smoke_cfg, ten_real_images):
    real, extractor = ten_real_images
    main, _, _ = evaluate.reference_set(smoke_cfg, extractor, 3)
    held, floor, conditions = evaluate.reference_set(smoke_cfg, extractor, 3, skip=3)
    assert set(main.features[:, 0]).isdisjoint(held.features[:, 0])
    assert held.features[:, 0].tolist() == evaluate.metrics.to_uint8(real[0][3:6])[:, 0, 0, 0].tolist()
    assert torch.equal(floor, real[0][6:9]) and conditions.tolist() == [6, 7, 8]
    with pytest.raises(ValueError, match="past the 8 skipped"):
        evaluate.reference_set(smoke_cfg, extractor, 3, skip=8)


def test_eval_reads_the_config_once_and_records_the_seed_that_drew_the_images(smoke_cfg, fit, monkeypatch, capsys):
    import json

    from t2i import cli, runs

    run = fit(smoke_cfg.replace(epochs=1, judge_epochs=1), paths.run_dir("mnist", "eval-seed"))
    reads = []
    load = runs.load_config
    for module in ("t2i.runs", "t2i.pipeline", "t2i.experiment"):
        monkeypatch.setattr(
            f"{module}.load_config", lambda run_dir: reads.append(run_dir) or load(run_dir), raising=False
        )
    assert (
        cli.main(
            [
                "eval",
                str(run),
                "--guidance-scales",
                "1",
                "--samples-per-prompt",
                "1",
                "--features",
                "judge",
                "--seed",
                "7",
            ]
        )
        == 0
    ), capsys.readouterr().err
    assert len(reads) == 1
    sidecar = json.loads((paths.run_reports(run) / "eval" / f"{paths.SWEEP}.provenance.json").read_text())
    assert sidecar["seed"] == 7 != smoke_cfg.seed
