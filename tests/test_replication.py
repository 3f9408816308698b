"""t2i.replication: on how many independently trained models a guidance verdict holds (issue 38, item 7)."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest

from t2i import cli, paths, replication, reports
from t2i.errors import RunError

FIELDS = ["method", "features", "difference", "lo", "hi", "p_holm", "verdict"]


def model(name: str, verdicts: dict[str, tuple[str, float]], other_space: str = "judge-penultimate"):
    """A run folder and its guidance verdict.csv: the primary space first, then another space that must be ignored."""
    run = paths.run_dir("mnist", name)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"profile": "demo", "experiment": "mnist"}))
    out = paths.run_reports(run) / paths.GUIDANCE
    out.mkdir(parents=True)
    with open(out / "verdict.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for space in ("random-cnn0", other_space):
            for method, (verdict, d) in verdicts.items():
                writer.writerow(
                    {
                        "method": method,
                        "features": space,
                        "difference": d if space == "random-cnn0" else -d,
                        "lo": d - 0.001,
                        "hi": d + 0.001,
                        "p_holm": 0.05,
                        "verdict": verdict,
                    }
                )
    return run


def test_a_verdict_holds_only_where_every_model_agrees_and_each_model_is_read_in_its_primary_space():
    runs = [
        model("demo", {"apg": ("better", -0.01), "seg": ("not resolved", 0.001), "pag": ("worse", 0.02)}),
        model("demo-seed423", {"apg": ("better", -0.02), "seg": ("not resolved", -0.001), "pag": ("worse", 0.01)}),
        model(
            "demo-seed424", {"apg": ("better", -0.01), "seg": ("not resolved", 0.002), "pag": ("not resolved", 0.001)}
        ),
    ]
    made = paths.run_reports(runs[0]) / "guidance" / "summary.provenance.json"
    made.write_text(json.dumps({"primary_level": 0.996}))  # each model's own level, from its report's sidecar
    assert cli.main(["guidance", str(runs[0]), "--across", *map(str, runs[1:])]) == 0  # reads, samples nothing
    summary = (paths.run_reports(runs[0]) / "guidance" / "models_summary.md").read_text()
    table = {r["method"]: r for r in csv.DictReader(open(paths.run_reports(runs[0]) / "guidance" / "models.csv"))}
    assert table["apg"]["holds"] == "True" and table["apg"]["better"] == "3" and table["apg"]["same_sign"] == "3"
    assert table["pag"]["holds"] == "False" and (table["pag"]["worse"], table["pag"]["not resolved"]) == ("2", "1")
    assert table["seg"]["holds"] == "False" and table["seg"]["same_sign"] == "2"
    assert "**better than CFG on all 3 models**" in summary and "not resolved on all 3 models" in summary
    assert "the models disagree (2 worse, 1 not resolved)" in summary
    assert table["apg"]["model 2"].startswith("better: -0.0200")
    assert f"Model 1 ({runs[0]}): adherence 0.996, in random-cnn0." in summary
    assert f"Model 2 ({runs[1]}): its primary level, in random-cnn0." in summary
    read = reports.read_provenance(paths.run_reports(runs[0]) / "guidance" / "models.md")["read_sha256"]
    assert len([p for p in read if p.endswith("verdict.csv")]) == 3  # what it read, so a redrawn one stales it
    assert (
        read[next(p for p in read if p.endswith("summary.provenance.json"))]
        == hashlib.sha256(made.read_bytes()).hexdigest()
    )


def test_a_model_without_verdicts_is_a_one_line_error():
    runs = [model("demo", {"apg": ("better", -0.01)}), paths.run_dir("mnist", "untrained")]
    runs[1].mkdir(parents=True)
    (runs[1] / "config.json").write_text(json.dumps({"profile": "demo", "experiment": "mnist"}))
    with pytest.raises(RunError, match="run `make guidance"):
        replication.write(runs)
    with pytest.raises(RunError, match="at least one other run"):
        replication.write(runs[:1])
