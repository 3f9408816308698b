"""t2i.thesis: `make figures` (every thesis figure and table the runs can feed, with an index), tables that compile."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from t2i import configs, evaluate, experiment, judges, metrics, paths, reports, thesis
from t2i.models import build_unet, count_parameters
from t2i.pipeline import TextToImage
from tests.helpers import ROOT


SMOKE_FED = {
    "fig01_denoising",
    "fig02_cfg_w5",
    "fig03_training_samples",
    "fig04_no_guidance",
    "fig05_empty_prompt",
    "fig06_loss",
    "fig07_guidance_grid",
    "fig08_training_samples",
    "fig09_class_grid_w0",
    "fig10_class_grid_w2",
    "fig11_class_grid_w5",
    "fig12_class_grid_w10",
    "fig13_samples_w5",
    "table1_cifar10_guidance",
    "table5_configs",
    "table7_configs",
    "table8_mnist_vs_cifar10",
}


def artefact_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_make_figures_draws_what_the_runs_feed_lists_the_rest_and_rebuilds_only_what_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("T2I_COMMAND", raising=False)
    for name in ("mnist", "cifar10"):  # smoke runs of two experiments, and a CIFAR-10 evaluation (Table 1)
        experiment.train(configs.get(name, "smoke"), paths.run_dir(name, "smoke"))
    cifar10 = paths.run_dir("cifar10", "smoke")
    pipe = TextToImage.from_run(cifar10)
    judge = judges.for_config(pipe.cfg)
    extractor = metrics.JudgeExtractor(judge)
    evaluate.write_sweep_report(
        evaluate.sweep(pipe, judge, extractor, [0.0, 2.0], 2), pipe, extractor, paths.eval_dir(cifar10)
    )

    done = subprocess.run(
        ["make", "-C", str(ROOT), "figures", "PROFILE=smoke"], capture_output=True, text=True, env=os.environ.copy()
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = paths.report_dir("smoke")
    drawn = {a.file for a in thesis.ARTEFACTS if (out / (a.file + a.path_suffix)).exists()}
    assert drawn == SMOKE_FED
    for file in drawn:
        record = json.loads((out / f"{file}.provenance.json").read_text())
        assert record["inputs"] and "t2i/thesis.py" in record["code"] and record["thesis"], file
        assert record["command"] == "make figures PROFILE=smoke"
    with open(out / "index.csv") as f:
        index = {row["thesis"]: row for row in csv.DictReader(f)}
    assert index["Figure 2"]["status"] == "fresh" and index["Figure 2"]["source"].endswith("mnist/smoke, epoch-0002")
    assert index["Figure 16"]["status"] == "missing" and index["Figure 16"]["make"] == "make run-celeba PROFILE=smoke"
    assert index["Table 2"]["status"] == "missing" and index["Table 2"]["make"] == "make bench-loader"
    tex = (out / "figures.tex").read_text()
    assert r"\includegraphics[width=\linewidth]{fig02_cfg_w5.png}" in tex and r"\input{table5_configs.tex}" in tex
    assert "written" in done.stdout and "missing" in done.stdout

    before = artefact_files(out)
    happened = thesis.build("smoke")
    assert {happened[f] for f in SMOKE_FED} == {"up to date"}
    assert artefact_files(out) == before  # nothing rewritten, byte for byte (index included)

    (out / "fig02_cfg_w5.png").unlink()
    happened = thesis.build("smoke")
    assert [f for f, what in happened.items() if what == "written"] == ["fig02_cfg_w5"]
    assert (out / "fig02_cfg_w5.png").read_bytes() == before["fig02_cfg_w5.png"]  # seeded: the same figure again

    experiment.train(configs.get("mnist", "smoke", epochs=3), paths.run_dir("mnist", "smoke"))  # the run moved on
    states = {r["thesis"]: r["status"] for r in csv.DictReader(open(out / "index.csv"))}
    assert states["Figure 2"] == "fresh"  # the index is as of the last build...
    thesis.write_index(thesis.Sources("smoke"), out)
    states = {r["thesis"]: r["status"] for r in csv.DictReader(open(out / "index.csv"))}
    assert states["Figure 2"] == "stale" and states["Figure 8"] == "fresh"  # ...and says which the run outdated


def test_tables_5_7_and_8_are_the_configs():
    thesis.build("smoke", only=["table5_configs", "table7_configs", "table8_mnist_vs_cifar10"])
    out = paths.report_dir("smoke")
    with open(out / "table7_configs.csv") as f:
        table = {row["aspect"]: row for row in csv.DictReader(f)}
    for experiment_name in ("mnist", "cifar10", "wikiart", "celeba"):
        cfg = configs.get(experiment_name, "full")
        assert table["batch_size"][experiment_name] == str(cfg.batch_size)
        assert float(table["learning_rate"][experiment_name]) == cfg.learning_rate
        assert table["epochs"][experiment_name] == str(cfg.epochs)
        assert table["resolution"][experiment_name] == f"{cfg.resolution}x{cfg.resolution}"
        assert table["U-Net parameters"][experiment_name] == f"{count_parameters(build_unet(cfg)):,}"
    assert table["U-Net parameters"]["mnist"] == "3,140,385"  # the thesis's own count, 3.2.2
    assert table["diffusion space"]["celeba"] == "latent 4x32x32"
    with open(out / "table5_configs.csv") as f:
        assert [r["aspect"] for r in csv.DictReader(f)] == list(table)


TEX_DOCUMENT = (
    "\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n\\begin{document}\n\\input{%s}\n\\end{document}\n"
)


def test_tables_are_valid_latex(tmp_path):
    """Every character LaTeX treats specially is escaped (the old adherence table's "chance 10%" commented out the
    rest of its caption); and where pdflatex is installed (Debian: texlive-latex-base), every table compiles."""
    rows = [{"guidance_scale": 1.0, "adherence": 0.9, "note": "50% of 10 & #3 under_score {x} ~ ^ $5 a|b"}]
    reports.write_table(rows, tmp_path / "t", caption="chance 10% & w_1 \\ <= 2 (N=500, ×2, ≤ 3)")
    thesis.build("smoke", only=["table5_configs", "table7_configs"])
    tables = [tmp_path / "t.tex", *sorted(paths.report_dir("smoke").glob("table*.tex"))]
    for table in tables:  # % starts a comment, # and _ are errors outside macros and math
        assert not re.search(r"(?<!\\)[%#_]", table.read_text()), table
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base); the escaping check above ran")
    for table in tables:
        (tmp_path / "doc.tex").write_text(TEX_DOCUMENT % table.resolve().as_posix())
        done = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (table.name, done.stdout[-2000:])
