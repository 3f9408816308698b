"""t2i.comparison and t2i.verdict (`make guidance`): every method on one front from the same seeds, verdicts at
calibrated strengths on fresh seeds, and a second call that redraws nothing that is fresh."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from scipy import stats as scipy_stats

from t2i import cli, comparison, comparison_report, paths, reports, stats, verdict


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_make_guidance_writes_every_artefact_with_paired_intervals_and_a_second_call_redraws_nothing(
    smoke_cfg, fit, capsys
):
    run = fit(smoke_cfg.replace(epochs=2, judge_epochs=2), paths.run_dir("mnist", "compared"))
    command = [
        "guidance",
        str(run),
        "--samples-per-prompt",
        "3",
        "--methods",
        "cfg",
        "apg",
        "interval",
        "autoguidance",
        "--strengths",
        "1",
        "2",
        "4",
        "--guide-checkpoint",
        "epoch-0001",
    ]
    assert cli.main(command) == 0, capsys.readouterr().err
    out = paths.guidance_dir(run)
    rows = read(out / "guidance.csv")
    labels = ["cfg", "apg", "interval (tuned)", "interval (EDM2-S)", "autoguidance"]
    assert [(r["method"], float(r["w"])) for r in rows] == [(m, w) for m in labels for w in (1.0, 2.0, 4.0)]
    for r in rows:
        assert int(r["samples"]) == 30
        assert float(r["fd_lo"]) <= float(r["fd_hi"]) and float(r["kid_lo"]) <= float(r["kid_hi"])
        assert float(r["adherence_lo"]) <= float(r["adherence"]) <= float(r["adherence_hi"])
        assert float(r["adherence_hi"]) > float(r["adherence_lo"])  # exact intervals: never zero-wide
    one = [r for r in rows if float(r["w"]) == 1.0]
    assert len({(r["fd"], r["adherence"]) for r in one}) == 1  # w = 1 is one shared point, the conditional model
    apg_2 = next(r for r in rows if r["method"] == "apg" and float(r["w"]) == 2.0)
    assert float(apg_2["d_fd_lo"]) <= float(apg_2["d_fd_hi"]) and apg_2["p_adherence"]
    assert "epoch-0001 of this run" in next(r for r in rows if r["method"] == "autoguidance")["params"]
    tuning = read(out / "tuning.csv")
    assert len(tuning) == len(comparison.INTERVAL_GRID) and sum(r["chosen"] == "yes" for r in tuning) == 1
    summary = (out / "summary.md").read_text()
    primary = re.search(r"Primary feature space: (\S+) ", summary)[1]
    assert {r["features"] for r in tuning} == {primary}  # the interval is tuned in the space that judges
    assert "apg" in summary and "Holm" in summary and "N = 30" in summary
    assert (out / "front.png").stat().st_size > 0 and reports.read_provenance(out / "front.png")["inputs"]
    if (out / "matched.csv").exists():
        for t in read(out / "matched.csv"):
            assert float(t["lo"]) <= float(t["hi"]) and t["verdict"] == "descriptive"
    spaces = read(out / "feature_spaces.csv")  # every space checked on known damage before it judges
    assert {r["features"] for r in spaces} == {"judge-penultimate", "random-cnn0"}
    assert "Primary feature space: random-cnn0" in summary or "does NOT order" in summary
    if (out / "verdict.csv").exists():  # the curves that reach the level, each at its own w on fresh seeds
        for t in read(out / "verdict.csv"):
            assert int(float(t["w_lo"]) <= float(t["w"]) <= float(t["w_hi"])) or t["w_lo"] == "nan"
            assert t["verdict"] in ("better", "worse", "not resolved")
    made = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert cli.main(command) == 0
    assert "up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == made  # nothing redrawn
    # a replication: other seeds, a reference past every real image the main report judged against, its interval
    assert cli.main(command[:5] + ["cfg", "apg", "interval"] + command[9:13] + ["--check", "again"]) == 0
    again = reports.read_provenance(out / "again" / "summary.md")
    used = reports.read_provenance(out / "summary.md")
    assert again["inputs"]["reference_skips"] == max(used["reference_images"], used["verdict_reference_images"]) > 0
    assert again["inputs"]["seed"] == used["inputs"]["seed"] + comparison.CHECK_SEED_OFFSET
    assert again["interval"] == used["interval"] and not (out / "again" / "tuning.md").exists()
    assert again["primary_level"] == used["primary_level"]  # the same endpoints, not a level placed on other seeds
    kept = {"kept_level": used["primary_level"], "kept_interval": used["interval"]}
    assert {k: again["inputs"][k] for k in kept} == kept  # a main report redrawn at another level stales its check
    assert "kept so that this replication measures the same endpoints" in (out / "again" / "summary.md").read_text()
    assert (out / "again" / "check.md").exists()
    # every method again, by default: one that autoguided needs its guide named, or the replication would drop it
    assert cli.main(command[:2] + ["--check", "unguided"]) == 1 and not (out / "unguided").exists()
    assert "repeats every method" in capsys.readouterr().err


def row(variant, w, hits, fd_shift, reference, rng):
    features = rng.normal(size=(len(hits), 3)) + fd_shift
    return comparison.Row(
        comparison.Variant(variant, "cfg" if variant == "cfg" else "apg"),
        w,
        np.asarray(hits, float),
        {"f": stats.FeatureSet(features, reference)},
    )


def test_calibrated_verdicts_follow_the_kid_at_each_curves_own_strength():
    """Hand-made rows: on the front every curve reaches adherence 0.97 at w* = 2 + 1/3; at that w on fresh seeds,
    'shifted' lies far closer to the reference (lower KID) than CFG, 'same' is CFG's images again. The verdicts
    follow; the front's tests along the curve are descriptive. Where KID changes fast with w on the front, the
    calibration's error widens the verdict's interval (here until it no longer resolves)."""
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 3))
    adherence = {1.0: 0.90, 2.0: 0.96, 3.0: 0.99}
    hits = {w: np.r_[np.ones(int(a * 200)), np.zeros(200 - int(a * 200))] for w, a in adherence.items()}
    front = []
    for variant, shift in (("cfg", 0.8), ("shifted", 0.1)):  # KID flat in w: the calibration costs nothing
        front += [row(variant, w, hits[w], shift, reference, np.random.default_rng(int(w * 10))) for w in hits]
    front += [comparison.Row(comparison.Variant("same", "apg"), r.w, r.hits, r.features) for r in front[:3]]
    result = comparison.analyse(front, ["f"], {"f": 0.05}, real_adherence=0.995, binary=True, bootstrap=100)
    assert all(t["verdict"] == "descriptive" and not t["primary"] for t in result.tests)
    draws, _ = stats.resamples(200, 200, 100)
    calibrations = verdict.calibrate(front, 0.97, ["f"], draws)
    assert calibrations["cfg"].w == pytest.approx(2 + 1 / 3) and calibrations["shifted"].w == calibrations["cfg"].w
    fresh = np.r_[np.ones(194), np.zeros(6)]
    final = {
        "cfg": row("cfg", 2.33, fresh, 0.8 * 2.33, reference, np.random.default_rng(7)),
        "shifted": row("shifted", 2.33, fresh, 0.1 * 2.33, reference, np.random.default_rng(8)),
    }
    final["same"] = comparison.Row(comparison.Variant("same", "apg"), 2.33, final["cfg"].hits, final["cfg"].features)
    tests = verdict.primary_tests(final, calibrations, ["f"], 0.97, 100, binary=True)
    found = {t["method"]: t for t in tests}
    assert found["shifted"]["verdict"] == "better" and found["same"]["verdict"] == "not resolved"
    assert found["same"]["difference"] == 0 and found["same"]["p"] == 1.0
    assert found["shifted"]["adherence"] == 0.97 and found["shifted"]["adherence_lo"] < 0.97
    result.tests += tests
    assert comparison_report.verdicts(result, "f") == {"shifted": "better", "same": "not resolved"}
    steep = [
        row(r.variant.label, r.w, r.hits, 0.8 * r.w, reference, np.random.default_rng(int(r.w * 10)))
        if r.variant.label == "cfg"
        else r
        for r in front
    ]  # CFG's KID grows fast with w on the front
    wide = verdict.primary_tests(final, verdict.calibrate(steep, 0.97, ["f"], draws), ["f"], 0.97, 100, binary=True)
    wide = next(t for t in wide if t["method"] == "shifted")
    assert wide["hi"] - wide["lo"] > 2 * (found["shifted"]["hi"] - found["shifted"]["lo"])
    assert wide["verdict"] == "not resolved"


def test_the_verdicts_bootstrap_can_resolve_a_family_of_fourteen_methods():
    """A bootstrap p is at least 2 / (B + 1) and Holm multiplies the smallest by the family's size: at the front's
    B = 200 fourteen methods that each lie far closer to the reference than CFG are all 'not resolved' (no p_holm can
    go below 0.139), a null by construction; at verdict.resamples_for(14) every one is resolved."""
    rng = np.random.default_rng(3)
    n = 80
    reference = rng.normal(size=(n, 3))
    hits = {w: np.r_[np.ones(int(a * n)), np.zeros(n - int(a * n))] for w, a in ((1.0, 0.9), (3.0, 1.0))}
    labels = ["cfg"] + [f"m{k}" for k in range(14)]
    front = [
        row(label, w, hits[w], 1.0 if label == "cfg" else 0.0, reference, np.random.default_rng(int(w)))
        for label in labels
        for w in hits
    ]
    fresh = np.ones(n)
    final = {
        label: row(label, 2.0, fresh, 1.0 if label == "cfg" else 0.0, reference, np.random.default_rng(k))
        for k, label in enumerate(labels)
    }
    resamples = verdict.resamples_for(14, at_least=200)
    assert 14 * 2 / (resamples + 1) <= (1 - stats.LEVEL) / 10 < 14 * 2 / 201
    for b, expected in ((200, {"not resolved"}), (resamples, {"better"})):
        calibrations = verdict.calibrate(front, 0.97, ["f"], stats.resamples(n, n, b)[0])
        tests = verdict.primary_tests(final, calibrations, ["f"], 0.97, b, binary=True)
        assert len(tests) == 14 and {t["verdict"] for t in tests} == expected, b
        assert min(t["p_holm"] for t in tests) >= (14 * 2 / (b + 1) if b == 200 else 0)


def test_a_replication_reports_sign_interval_and_verdict_agreement_with_the_main_reports_endpoints(tmp_path):
    main = tmp_path / "main"
    main.mkdir()
    reports.write_table(
        [
            {"method": m, "features": "random-cnn0", "difference": d, "lo": lo, "hi": hi, "verdict": v}
            for m, d, lo, hi, v in (
                ("a", -0.002, -0.003, -0.001, "better"),
                ("b", 0.001, -0.001, 0.003, "not resolved"),
                ("c", -0.004, -0.005, -0.003, "better"),
                ("gone", 0.0, -1.0, 1.0, "not resolved"),
            )
        ],
        main / "verdict",
    )
    here = [
        {"method": m, "features": "random-cnn0", "primary": True, "difference": d, "lo": lo, "hi": hi, "verdict": v}
        for m, d, lo, hi, v in (
            ("a", -0.0015, -0.0025, -0.0005, "better"),
            ("b", -0.001, -0.002, 0.0005, "not resolved"),
            ("c", 0.003, 0.002, 0.004, "worse"),
        )
    ]
    here.append(
        {
            "method": "a",
            "features": "random-cnn0",
            "primary": False,
            "difference": 9.0,
            "lo": 8.0,
            "hi": 10.0,
            "verdict": "descriptive",
        }
    )  # a test along the curve is not an endpoint
    level = verdict.Level(0.9, 0.95, 0.97, 0.01, 200).kept(0.99)  # the main report's level, kept
    result = comparison_report.Result([], [], here, {}, 1.0, [], level, {}, True, 10, 0.5, 0.8, n=200, verdict_n=500)
    out = tmp_path / "check"
    out.mkdir()
    caption = comparison_report.check_against(result, main, out)
    rows = {r["method"]: r for r in read(out / "check.csv")}
    assert set(rows) == {"a", "b", "c"}
    assert [rows[m]["same_sign"] for m in "abc"] == ["yes", "no", "no"]
    assert [rows[m]["overlap"] for m in "abc"] == ["yes", "yes", "no"]
    assert [rows[m]["same_verdict"] for m in "abc"] == ["yes", "yes", "no"]
    assert [rows[m]["contradicted"] for m in "abc"] == ["no", "no", "yes"]
    assert "Same sign: 1 of 3" in caption and "contradicted (resolved, opposite signs): 1 of 3" in caption
    assert "calibrated to adherence 0.99) against this report's at the same level" in caption
    assert (level.value, level.own, level.raised) == (0.99, 0.9, False)


def test_the_primary_level_stands_above_the_conditional_models_noise():
    """Halfway to the judge's real adherence, unless that is within the front's noise of the conditional model (the
    demo: 0.985 of 0.989 at N = 200), where every curve would be calibrated to w = 1 and equal CFG by construction:
    then the least rise the front resolves, one-sided at stats.LEVEL. Never above what N images can tell from 1."""

    def front(conditional: float, n: int = 200) -> list:
        hits = np.r_[np.ones(round(conditional * n)), np.zeros(n - round(conditional * n))]
        return [comparison.Row(comparison.Variant("cfg", "cfg"), w, hits, {}) for w in (1.0, 2.0)]

    wide = verdict.primary_adherence(front(0.80), real_adherence=0.99, fraction=0.5)
    assert wide.value == pytest.approx(0.895) and not wide.raised
    near = verdict.primary_adherence(front(0.985), real_adherence=0.989, fraction=0.5)
    se = np.std(front(0.985)[0].hits, ddof=1) / np.sqrt(200)
    assert near.halfway == pytest.approx(0.987) and near.raised
    assert near.value == pytest.approx(0.985 + scipy_stats.norm.ppf(stats.LEVEL) * se, abs=1e-4) and near.value > 0.995
    assert verdict.primary_adherence(front(0.99), real_adherence=0.995, fraction=0.5).value == 1 - 1 / 400
    line = comparison_report._raised(near)
    assert "0.987 there, raised" in line and "N = 200" in line and comparison_report._raised(wide) == ""


@pytest.mark.parametrize("method", ["cfg-rescale", "cfg-zero-star", "dynamic-thresholding"])
def test_every_variant_the_run_can_use_is_on_the_front(method, smoke_cfg):
    class Pipe:
        codec = None

    labels = [v.label for v in comparison.variants(Pipe(), None, guide=None, interval=(0.1, 5.0))]
    assert method in labels and "autoguidance" not in labels  # no guide: no autoguidance
    assert "interval (tuned)" in labels and "interval (EDM2-S)" in labels and "apg-eps" in labels
