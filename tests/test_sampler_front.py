"""t2i.sampler_front (`make samplers`): every sampler against a 1,000-step reference, evaluations counted, paired
differences, the cheapest match named, and a second call that redraws nothing that is fresh."""

from __future__ import annotations

import csv

from t2i import cli, paths, sampler_front


def test_make_samplers_writes_the_front_and_a_second_call_redraws_nothing(smoke_cfg, fit, capsys):
    run = fit(smoke_cfg.replace(epochs=1, judge_epochs=1), paths.run_dir("mnist", "samplers"))
    command = ["samplers", str(run), "--samples-per-prompt", "1", "--samplers", "ddim", "heun-karras", "--steps", "2",
               "4"]
    assert cli.main(command) == 0, capsys.readouterr().err
    out = paths.run_reports(run) / "samplers"
    with open(out / "samplers.csv") as f:
        rows = list(csv.DictReader(f))
    assert (rows[0]["sampler"], rows[0]["steps"], float(rows[0]["nfe"])) == ("ddpm", "1000", 2000.0)  # guided: 2 each
    points = {(r["sampler"], r["spacing"], int(r["steps"])): r for r in rows[1:]}
    assert set(points) == {("ddim", s, k) for s in ("leading", "trailing", "linspace") for k in (2, 4)} | {
        ("heun-karras", "karras", 2), ("heun-karras", "karras", 4)}
    assert float(points[("heun-karras", "karras", 4)]["nfe"]) == 2 * (2 * 4 - 1)  # counted: Heun's last step is one
    for r in rows[1:]:
        assert float(r["d_fd_lo"]) <= float(r["d_fd"]) <= float(r["d_fd_hi"])
        assert r["matches"] == ("yes" if float(r["d_fd_lo"]) <= 0 <= float(r["d_fd_hi"]) and
                                float(r["d_adherence_lo"]) <= 0 <= float(r["d_adherence_hi"]) else "no")
    summary = (out / "summary.md").read_text()
    assert "1,000-step reference, N = 10" in summary and ("Cheapest match" in summary or "No sampler" in summary)
    made = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert cli.main(command) == 0 and "up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == made


def test_karras_samplers_start_at_edms_sigma_max_and_the_others_keep_the_trained_schedule():
    assert sampler_front.sampler_for("heun-karras", "karras", 10).sigma_max == 80.0
    assert sampler_front.sampler_for("unipc", "trailing", 10).sigma_max is None
    assert ("euler-karras", "karras") in sampler_front.candidates() and len(sampler_front.candidates()) == 7 * 3 + 2
