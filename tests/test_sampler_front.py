"""t2i.sampler_front (`make samplers`): every sampler against a 1,000-step reference, evaluations counted, paired
differences, the cheapest match named, and a second call that redraws nothing that is fresh."""

from __future__ import annotations

import csv

from t2i import cli, paths, sampler_front
from t2i.sampling import Sampler


def test_make_samplers_writes_the_front_and_a_second_call_redraws_nothing(smoke_cfg, fit, capsys):
    run = fit(smoke_cfg.replace(epochs=1, judge_epochs=1), paths.run_dir("mnist", "samplers"))
    command = [
        "samplers",
        str(run),
        "--samples-per-prompt",
        "1",
        "--samplers",
        "ddim",
        "heun-karras",
        "--steps",
        "2",
        "4",
        "--spacings",
        "leading",
        "trailing",
        "linspace",
        "--guidance-scales",
        "1",
        "3",
    ]
    assert cli.main(command) == 0, capsys.readouterr().err
    out = paths.run_reports(run) / "samplers"
    with open(out / "samplers.csv") as f:
        rows = list(csv.DictReader(f))
    references = {float(r["w"]): float(r["nfe"]) for r in rows if r["matches"] == "reference"}
    assert references == {1.0: 1000.0, 3.0: 2000.0}  # w = 1: the conditional model alone; guided: 2 each
    points = {
        (float(r["w"]), r["sampler"], r["spacing"], int(r["steps"])): r for r in rows if r["matches"] != "reference"
    }
    assert set(points) == {
        (w, *p)
        for w in (1.0, 3.0)
        for p in [  # DDIM's refused linspace is left out
            ("ddim", s, k) for s in ("leading", "trailing") for k in (2, 4)
        ]
        + [("heun-karras", "karras", 2), ("heun-karras", "karras", 4)]
    }
    assert float(points[(3.0, "heun-karras", "karras", 4)]["nfe"]) == 2 * (2 * 4 - 1)  # Heun's last step is one
    for r in points.values():
        assert float(r["d_fd_lo"]) <= float(r["d_fd"]) <= float(r["d_fd_hi"])
        assert r["matches"] == (
            "yes"
            if float(r["d_fd_lo"]) <= 0 <= float(r["d_fd_hi"])
            and float(r["d_adherence_lo"]) <= 0 <= float(r["d_adherence_hi"])
            else "no"
        )
    summary = (out / "summary.md").read_text()
    assert "1,000-step reference, N = 10, at w = 1, 3" in summary
    assert "Cheapest match at every strength" in summary or "No sampler" in summary
    made = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert cli.main(command) == 0 and "up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == made


def test_karras_samplers_start_at_edms_sigma_max_and_the_others_keep_the_trained_schedule():
    assert sampler_front.sampler_for("heun-karras", "karras", 10).sigma_max == 80.0
    assert sampler_front.sampler_for("unipc", "trailing", 10).sigma_max is None
    assert ("euler-karras", "karras") in sampler_front.candidates() and len(sampler_front.candidates()) == 7 * 2 + 2
    assert len(sampler_front.candidates(spacings=("leading", "trailing", "linspace"))) == 7 * 3 - 1 + 2


def row(w, sampler, steps, matches, nfe=10.0):
    return {"w": w, "sampler": sampler, "spacing": "leading", "steps": steps, "nfe": nfe, "matches": matches}


def test_the_default_is_the_cheapest_point_that_matches_at_every_strength():
    rows = [
        row(1.0, "ddpm", 1000, "reference"),
        row(10.0, "ddpm", 1000, "reference"),
        row(1.0, "ddim", 6, "yes"),
        row(10.0, "ddim", 6, "no"),  # lost at strong guidance
        row(1.0, "ddim", 10, "yes"),
        row(10.0, "ddim", 10, "yes", nfe=20.0),
        row(1.0, "unipc", 10, "yes"),
        row(10.0, "unipc", 10, "yes", nfe=18.0),
    ]
    best = sampler_front.cheapest(rows)
    assert (best["sampler"], best["steps"], best["w"]) == ("unipc", 10, 10.0)
    partial = [r for r in rows if r["sampler"] != "unipc" and r["steps"] != 10]
    assert sampler_front.cheapest(partial) is None
    near = sampler_front.closest(partial + [row(1.0, "deis", 20, "yes"), row(10.0, "deis", 20, "no")])
    assert [(r["sampler"], r["steps"], r["w"]) for r in near] == [("ddim", 6, 1.0)]  # one strength each: fewer steps
    assert [r["sampler"] for r in sampler_front.closest(rows)] == ["unipc"] * 2  # two strengths, then fewer evaluations
    assert sampler_front.closest([r for r in rows if r["matches"] != "yes"]) == []


def test_the_summary_reads_the_runs_default_at_each_strength_with_its_steps_there():
    """A default with more steps above w = 10 is read from its 20-step row at w = 20 and its 6-step rows below; a
    step count the study did not try is said to be unmeasured, never borrowed from a neighbour."""

    def measured(w, steps, d_adherence, lo, hi):
        return {
            **row(w, "ddim", steps, "no", nfe=2.0 * steps),
            "adherence": 1.0 + d_adherence,
            "d_adherence": d_adherence,
            "d_adherence_lo": lo,
            "d_adherence_hi": hi,
            "d_fd": 5.0,
            "d_fd_lo": 1.0,
            "d_fd_hi": 9.0,
        }

    points = [measured(3.0, 6, 0.0, -0.01, 0.01), measured(20.0, 6, -0.06, -0.09, -0.03)]
    points.append(measured(20.0, 20, -0.01, -0.03, 0.005))
    lines = sampler_front.default_lines(points, Sampler("ddim", 6, "leading", None, 10.0, 20), [3.0, 20.0, 30.0])
    assert lines[0].startswith("The run's default, ddim x 6 steps, 20 above w = 10 (leading spacing)")
    assert lines[2].startswith("- w = 3: x 6 steps (12 evaluations), adherence 1.000 (difference +0.000")
    assert "inside the reference's interval" in lines[2] and lines[2].endswith("(outside)")
    assert lines[3].startswith("- w = 20: x 20 steps (40 evaluations), adherence 0.990")  # not the 6-step row
    assert "inside the reference's interval" in lines[3]
    assert lines[4] == "- w = 30: x 20 steps, not measured here"
