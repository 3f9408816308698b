"""t2i.ema_front (`make ema`): post-hoc EMA lengths for each way of sampling, paired, and fresh reports not redrawn."""

from __future__ import annotations

import csv
import json

from t2i import cli, ema_front, paths, posthoc, reports


def test_make_ema_measures_every_length_for_every_way_of_sampling_and_a_second_call_redraws_nothing(
    smoke_cfg, fit, capsys
):
    run = fit(smoke_cfg.replace(epochs=2, judge_epochs=1, ema_snapshot_every=2), paths.run_dir("mnist", "ema"))
    command = [
        "ema",
        str(run),
        "--samples-per-prompt",
        "1",
        "--cfg-strength",
        "3",
        "--autoguidance-strength",
        "2",
        "--guide-checkpoint",
        "epoch-0001",
    ]
    assert cli.main(command) == 0, capsys.readouterr().err
    out = paths.run_reports(run) / "ema"
    with open(out / "ema.csv") as f:
        rows = list(csv.DictReader(f))
    lengths = ["default"] + [f"{x:g}" for x in ema_front.LENGTHS]
    for mode, w in (("unguided", 1.0), ("cfg", 3.0), ("autoguidance", 2.0)):
        mine = [r for r in rows if r["mode"] == mode and r["guide_ema"] in ("", "default") and float(r["w"]) == w]
        assert [r["ema"] for r in mine] == lengths
        retried = [r for r in rows if r["mode"] == mode and float(r["w"]) != w]  # the strength at the best length
        assert sorted(float(r["w"]) for r in retried) == ([] if mode == "unguided" else list(ema_front.neighbours(w)))
        assert len({r["ema"] for r in retried}) <= 1 and all(r["guide_ema"] in ("", "default") for r in retried)
    assert [r["guide_ema"] for r in rows if r["guide_ema"] not in ("", "default")] == [
        f"{x:g}" for x in ema_front.GUIDE_LENGTHS
    ]
    for r in rows:
        assert float(r["fd_lo"]) <= float(r["fd"]) <= float(r["fd_hi"])
        errors = [float(r[k]) for k in ("fit_error", "guide_fit_error") if r[k]]
        assert r["fits"] == ("yes" if all(e <= ema_front.FIT_LIMIT for e in errors) else "no")
    summary = (out / "summary.md").read_text()
    assert "prefer a shorter EMA" in summary or "**cfg**" not in summary
    if "**cfg**: best sigma_rel" in summary:  # strength and length tuned together, and the density table
        assert "**Strength and length together**" in summary and "- **cfg** at sigma_rel" in summary
    assert "**Snapshot density**" in summary and (out / "snapshots.csv").exists()

    def unfit(length: str, error: str) -> list[str]:  # the model's lengths and the guide's, each by its own fit
        return sorted({r[length] for r in rows if r[error] and float(r[error]) > ema_front.FIT_LIMIT}, key=float)

    for key, whose in (("ema", "the model's"), ("guide_ema", "the guide's")):
        flagged = unfit(key, "fit_error" if key == "ema" else "guide_fit_error")
        line = next((x for x in summary.splitlines() if x.startswith(f"Left out: {whose} sigma_rel")), None)
        assert (line is not None) == bool(flagged), summary
        if flagged:
            assert f"{whose} sigma_rel {', '.join(flagged)}, whose" in line
    for mode in ("unguided", "cfg"):  # a best length is chosen among those that fit, and its fit error is stated
        fitting = [
            r
            for r in rows
            if r["mode"] == mode and r["fits"] == "yes" and r["ema"] != "default" and r["guide_ema"] in ("", "default")
        ]
        assert (f"**{mode}**: best sigma_rel" in summary) == bool(fitting)
    presets = run / posthoc.PRESETS  # the chosen lengths become the run's default weights, and say so
    if "cfg" in json.loads(presets.read_text())["lengths"] if presets.exists() else False:
        chosen = json.loads(presets.read_text())["lengths"]["cfg"]
        assert cli.main(["sample", str(run), "--prompt", "A handwritten digit 3", "--out", str(out / "p.png")]) == 0
        weights = reports.read_provenance(out / "p.png")["weights"]
        assert weights.startswith(f"post-hoc EMA sigma_rel={chosen:g}") and "preset" in weights
        assert (
            cli.main(
                [
                    "sample",
                    str(run),
                    "--prompt",
                    "A handwritten digit 3",
                    "--out",
                    str(out / "p.png"),
                    "--ema-length",
                    "0.2",
                ]
            )
            == 0
        )
        assert reports.read_provenance(out / "p.png")["weights"].startswith("post-hoc EMA sigma_rel=0.2 ")
        for name in ("p.png", "p.provenance.json"):
            (out / name).unlink()
    else:
        assert "CFG keeps the fixed-decay EMA" in summary
    made = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert cli.main(command) == 0 and "up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == made


def test_the_best_strength_is_where_a_methods_curve_first_reaches_the_target_above_w_1(tmp_path):
    """w = 1 is the conditional model (unguided) for every method, so a guided way's strength is above it, even where
    the conditional model already reaches the target."""
    table = tmp_path / "guidance.csv"
    table.write_text(
        "method,w,adherence\ncfg,1,0.93\ncfg,2,0.975\ncfg,3,0.985\nautoguidance,1,0.98\n"
        "autoguidance,1.25,0.99\nother,1,1\n"
    )
    assert ema_front.best_strengths(table) == {"cfg": 3.0, "autoguidance": 1.25}
