"""t2i.comparison (`make guidance`): every method on one front from the same seeds, paired intervals that contain
their estimates, verdicts along the curve, and a second call that redraws nothing that is fresh."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from t2i import cli, comparison, comparison_report, paths, reports, stats


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_make_guidance_writes_every_artefact_with_paired_intervals_and_a_second_call_redraws_nothing(
        smoke_cfg, fit, capsys):
    run = fit(smoke_cfg.replace(epochs=2, judge_epochs=2), paths.run_dir("mnist", "compared"))
    command = ["guidance", str(run), "--samples-per-prompt", "3", "--methods", "cfg", "apg", "interval",
               "autoguidance", "--strengths", "1", "2", "4", "--guide-checkpoint", "epoch-0001"]
    assert cli.main(command) == 0, capsys.readouterr().err
    out = paths.guidance_dir(run)
    rows = read(out / "guidance.csv")
    labels = ["cfg", "apg", "interval (tuned)", "interval (EDM2-S)", "autoguidance"]
    assert [(r["method"], float(r["w"])) for r in rows] == [(m, w) for m in labels for w in (1.0, 2.0, 4.0)]
    for r in rows:
        assert int(r["samples"]) == 30
        assert float(r["fd_lo"]) <= float(r["fd"]) <= float(r["fd_hi"])  # intervals contain their estimates
        assert float(r["adherence_lo"]) <= float(r["adherence"]) <= float(r["adherence_hi"])
        assert float(r["adherence_hi"]) > float(r["adherence_lo"])  # exact intervals: never zero-wide
    one = [r for r in rows if float(r["w"]) == 1.0]
    assert len({(r["fd"], r["adherence"]) for r in one}) == 1  # w = 1 is one shared point, the conditional model
    apg_2 = next(r for r in rows if r["method"] == "apg" and float(r["w"]) == 2.0)
    assert float(apg_2["d_fd_lo"]) <= float(apg_2["d_fd"]) <= float(apg_2["d_fd_hi"]) and apg_2["p_adherence"]
    assert "epoch-0001 of this run" in next(r for r in rows if r["method"] == "autoguidance")["params"]
    tuning = read(out / "tuning.csv")
    assert len(tuning) == len(comparison.INTERVAL_GRID) and sum(r["chosen"] == "yes" for r in tuning) == 1
    summary = (out / "summary.md").read_text()
    assert "apg" in summary and "Holm" in summary and "N = 30" in summary
    assert (out / "front.png").stat().st_size > 0 and reports.read_provenance(out / "front.png")["inputs"]
    if (out / "matched.csv").exists():
        for t in read(out / "matched.csv"):
            assert float(t["lo"]) <= float(t["difference"]) <= float(t["hi"])
    made = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert cli.main(command) == 0
    assert "up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == made  # nothing redrawn


def row(variant, w, hits, fd_shift, reference, rng):
    features = rng.normal(size=(len(hits), 3)) + fd_shift
    return comparison.Row(comparison.Variant(variant, "cfg" if variant == "cfg" else "apg"), w, np.asarray(hits, float),
                          {"f": stats.FeatureSet(features, reference)})


def test_a_method_with_lower_fd_at_the_same_adherence_is_better_and_one_like_cfg_is_not_resolved():
    """Hand-made rows: 'shifted' reaches CFG's adherence levels with features far closer to the reference (lower FD);
    'same' is CFG's images again. The verdicts follow, and their intervals contain their estimates."""
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 3))
    adherence = {1.0: 0.90, 2.0: 0.96, 3.0: 0.99}
    hits = {w: (rng.random(200) < a).astype(float) for w, a in adherence.items()}
    rows = []
    for variant, shift in (("cfg", 0.8), ("shifted", 0.1)):
        rows += [row(variant, w, hits[w], shift * w, reference, np.random.default_rng(int(w * 10))) for w in hits]
    rows += [comparison.Row(comparison.Variant("same", "apg"), r.w, r.hits, r.features) for r in rows[:3]]
    result = comparison.analyse(rows, ["f"], {"f": 0.05}, real_adherence=0.995, binary=True, bootstrap=100)
    assert comparison_report.verdicts(result, "f")["shifted"] == "better"
    assert comparison_report.verdicts(result, "f")["same"] == "not resolved"
    for t in result["tests"]:
        assert t["lo"] <= t["difference"] <= t["hi"]
    primary = [t for t in result["tests"] if t["primary"]]  # one declared endpoint per method: KID at 0.97
    assert sorted(t["method"] for t in primary) == ["same", "shifted"]
    assert {(t["metric"], t["at"]) for t in primary} == {("kid", "adherence 0.970")}
    assert all(t["verdict"] == "descriptive" for t in result["tests"] if not t["primary"])
    assert result["moved"]["same"]["any_excludes_zero"] is False


@pytest.mark.parametrize("method", ["cfg-rescale", "cfg-zero-star", "dynamic-thresholding"])
def test_every_variant_the_run_can_use_is_on_the_front(method, smoke_cfg):
    class Pipe:
        codec = None

    labels = [v.label for v in comparison.variants(Pipe(), None, guide=None, interval=(0.1, 5.0))]
    assert method in labels and "autoguidance" not in labels  # no guide: no autoguidance
    assert "interval (tuned)" in labels and "interval (EDM2-S)" in labels and "apg-eps" in labels
