"""Does a guidance verdict hold on more than one model? ``python -m t2i guidance RUN --across RUN2 RUN3 ...`` reads the
primary verdicts of `make guidance` on independently trained models of one recipe (other seeds; each autoguided by its
own earlier checkpoint) and says, per method, on how many of them each verdict holds.

A verdict of one model says what guidance does to that model; the variance between training runs is not in its
interval. So each method's line counts the models on which it was better than CFG, worse, or not resolved (each
model's own Holm-corrected primary test, in its own primary feature space), and on how many the estimate had the same
sign. A method "holds" only where every model agrees. It writes ``models.md/.csv/.tex`` beside the first run's
guidance report, with provenance naming every report it read.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

from . import paths, reports
from .errors import RunError

VERDICTS = ("better", "worse", "not resolved")


def primary_verdicts(report: Path) -> dict[str, dict]:
    """Method -> its primary test in ``report``'s verdict.csv (the primary feature space is the table's first)."""
    table = Path(report) / "verdict.csv"
    if not table.exists():
        raise RunError(f"no guidance verdicts at {table}: run `make guidance RUN=...` on that run first")
    with open(table) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise RunError(f"{table} holds no verdict (no curve reached the primary level)")
    space = rows[0]["features"]
    return {r["method"]: r for r in rows if r["features"] == space}


def across(found: dict[str, dict[str, dict]]) -> list[dict]:
    """One row per method: its verdict on each model (run -> primary test), counted, and whether it holds on all."""
    runs = list(found)
    methods = list(dict.fromkeys(m for tests in found.values() for m in tests))
    table = []
    for method in methods:
        tests = {run: found[run].get(method) for run in runs}
        seen = [t for t in tests.values() if t is not None]
        counts = Counter(t["verdict"] for t in seen)
        signs = Counter((float(t["difference"]) > 0) - (float(t["difference"]) < 0) for t in seen)
        same_sign = max(signs.values()) if signs else 0
        verdict, agree = counts.most_common(1)[0] if counts else ("not reached", 0)
        row = {
            "method": method,
            "models": len(seen),
            **{v: counts.get(v, 0) for v in VERDICTS},
            "same_sign": same_sign,
            "holds": verdict != "not resolved" and agree == len(runs),
            "verdict": verdict,
        }
        for k, run in enumerate(runs, 1):
            t = tests[run]
            row[f"model {k}"] = (
                "not reached"
                if t is None
                else (f"{t['verdict']}: {float(t['difference']):+.4f} [{float(t['lo']):+.4f}, {float(t['hi']):+.4f}]")
            )
        table.append(row)
    return table


def endpoint(report: Path, tests: dict[str, dict]) -> str:
    """Where one model's primary endpoints sit: its own primary adherence level (placed on its own front, as its
    report says) and the strength CFG was calibrated to, in its primary feature space."""
    made = reports.read_provenance(Path(report) / "summary.md") or {}
    level = f"adherence {made['primary_level']:g}" if "primary_level" in made else "its primary level"
    cfg = next((t["w_cfg"] for t in tests.values() if t.get("w_cfg")), None)
    space = next(iter(tests.values()))["features"] if tests else "?"
    return f"{level}, CFG at w = {float(cfg):.3g}, in {space}" if cfg else f"{level}, in {space}"


def summary(table: list[dict], runs: list[str], endpoints: list[str] | None = None) -> str:
    n = len(runs)
    lines = [
        f"# Guidance verdicts on {n} independently trained models",
        "",
        "Each model's primary verdict (KID against CFG at calibrated strengths, Holm over its methods; its own "
        f"`make guidance` report): {', '.join(runs)}. A verdict holds when all {n} agree.",
        "",
    ]
    if endpoints:  # each model's level is placed on its own front, so the endpoints differ in place, not in kind
        lines += [f"Model {k} ({run}): {where}." for k, (run, where) in enumerate(zip(runs, endpoints), 1)] + [""]
    for row in table:
        tally = ", ".join(f"{row[v]} {v}" for v in VERDICTS if row[v]) or "not reached"
        agreed = row[row["verdict"]] == n if row["verdict"] in VERDICTS else False
        state = (
            f"**{row['verdict']} than CFG on all {n} models**"
            if row["holds"]
            else f"not resolved on all {n} models"
            if agreed
            else f"the models disagree ({tally})"
        )
        lines.append(
            f"- **{row['method']}**: {state}; the difference has one sign on {row['same_sign']} of {row['models']}."
        )
    return "\n".join(lines) + "\n"


def read_sha256(guidance_reports) -> dict[str, str]:
    """What this report is made from, byte for byte: each guidance report's verdicts and the sidecar that names its
    primary level (relative to the project root where they lie under it)."""
    found = {}
    for report in guidance_reports:
        for name in ("verdict.csv", "summary.provenance.json"):
            path = Path(report) / name
            if path.exists():
                where = path.resolve()
                key = where.relative_to(paths.ROOT.resolve()) if where.is_relative_to(paths.ROOT.resolve()) else where
                found[str(key)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def write(runs: list[Path]) -> Path:
    """Read every run's guidance verdicts and write ``models.md`` into the first run's guidance report."""
    if len(runs) < 2:
        raise RunError("--across needs at least one other run")
    reports_of = {str(r): paths.run_reports(r) / paths.GUIDANCE for r in runs}
    found = {run: primary_verdicts(report) for run, report in reports_of.items()}
    table = across(found)
    endpoints = [endpoint(reports_of[run], found[run]) for run in found]
    out = reports_of[str(runs[0])]
    caption = (
        "Each method's primary verdict on each model (model k: the k-th run given, in its own primary feature "
        "space): verdict, KID difference to CFG and its 90% interval; better/worse/not resolved: how many "
        "models; same_sign: on how many the estimate has the majority's sign; holds: all models agree on a "
        "resolved verdict."
    )
    facts = {
        "runs": list(reports_of),
        "reports": [str(p) for p in reports_of.values()],
        # what it read: a report redrawn since stales this one (tests/test_reports.py)
        "read_sha256": read_sha256(reports_of.values()),
    }
    reports.publish(
        out,
        facts,
        tables={"models": (table, caption)},
        texts={"models_summary.md": summary(table, list(reports_of), endpoints)},
    )
    return out / "models_summary.md"
