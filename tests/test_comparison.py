"""t2i.comparison (`make guidance`): every method on one front, paired seeds, bootstrap intervals, a summary."""

from __future__ import annotations

import csv

from t2i import cli, comparison, paths, reports


def test_make_guidance_compares_methods_on_the_same_seeds_with_intervals(smoke_cfg, fit, capsys):
    run = fit(smoke_cfg.replace(epochs=2, judge_epochs=2), paths.run_dir("mnist", "compared"))
    code = cli.main(["guidance", str(run), "--samples-per-prompt", "3", "--methods", "cfg", "apg", "autoguidance",
                     "--strengths", "2", "4", "--guide-checkpoint", "epoch-0001"])
    assert code == 0, capsys.readouterr().err
    out = paths.eval_dir(run).parent / "guidance"
    with open(out / "guidance.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], float(r["w"])) for r in rows] == [(m, w) for m in ("cfg", "apg", "autoguidance")
                                                           for w in (2.0, 4.0)]
    for r in rows:
        assert float(r["fd_lo"]) <= float(r["fd"]) * 1.5 and float(r["adherence_lo"]) <= float(r["adherence_hi"])
        assert int(r["samples"]) == 30
    assert rows[4]["params"] == "guide=epoch-0001" and "momentum=-0.5" in rows[2]["params"]
    summary = (out / "summary.md").read_text()
    assert "**apg**" in summary and "**autoguidance**" in summary
    record = reports.read_provenance(out / "guidance.md")
    assert record["methods"] == ["apg", "autoguidance", "cfg"] and record["floor"] > 0
    assert (out / "front.png").stat().st_size > 0


def test_a_point_beats_cfg_only_when_both_intervals_clear_it():
    cfg = {"method": "cfg", "w": 2.0, "fd": 10, "fd_lo": 9, "fd_hi": 11, "adherence": 0.9, "adherence_lo": 0.88,
           "adherence_hi": 0.92}
    better = {"method": "apg", "fd": 7, "fd_lo": 6, "fd_hi": 8, "adherence": 0.95, "adherence_lo": 0.93,
              "adherence_hi": 0.97}
    overlapping = {**better, "adherence_lo": 0.91}
    assert comparison.dominated([cfg], better) == [cfg] and comparison.dominated([cfg], overlapping) == []
