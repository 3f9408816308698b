"""``make ema RUN=...``: the EMA axis of the guidance front (EDM2 section 3, Fig. 5): how long an EMA each way of
sampling prefers, from post-hoc reconstructions (:mod:`t2i.posthoc`) of one run.

For three ways of sampling, each on the same N prompts and seeds: unguided (w = 1, the conditional model), CFG and
autoguidance at their best strengths (the first w at which the guidance report's curve reaches
:data:`ADHERENCE`), it measures every EMA length of :data:`LENGTHS`, and the run's own fixed-decay EMA (diffusers'
``EMAModel``, the default) beside them. Autoguidance's guide gets its own length, as in EDM2: the main model's length
is swept with the guide's default EMA, then the guide's with the main model at its best. Statistics are paired
(:mod:`t2i.stats`): the best length of each way is the one with the lowest FD, and its interval is where the best
length falls across joint resamples of the seeds and the reference images; the best post-hoc EMA is compared with
the default EMA, and the three ways with each other at their own best lengths. The length is chosen at one strength,
so each guided way is then retried at its best length with its guidance term (w - 1) halved and doubled, and the
summary names the lowest-FD pair of strength and length among its rows that reach the adherence target (one
coordinate step of EDM2's joint tuning).

A reconstruction is only as good as the snapshots' fit to the profile it asks for (:func:`t2i.posthoc.profile_error`):
every row states its fit error, and a length whose error exceeds :data:`FIT_LIMIT` (the grid's short end, where the
snapshots are too sparse for a narrow profile) is flagged and never chosen as a best length.

It writes ``reports/<profile>/<experiment>/<run>/ema/``: ``ema.md/.csv/.tex``, ``snapshots.md/.csv/.tex`` (each
length's fit error had the run kept snapshots more or less often, and the disk that takes), ``ema.png`` (FD and
adherence against the EMA length, one curve per way) and ``summary.md``, with provenance (:mod:`t2i.ema_report`); a
fresh report is not redrawn.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from safetensors import safe_open

from . import checkpoints, posthoc, stats
from .console import progress
from .ema_report import ADHERENCE, FIT_LIMIT, LENGTHS, Result, write
from .pipeline import TextToImage, posthoc_weights
from .study import Study

GUIDE_LENGTHS = (0.02, 0.05, 0.10, 0.15, 0.25)  # the guide's own sweep
SAMPLES_PER_PROMPT = 50
BOOTSTRAP = 200
SPACINGS = (0.25, 0.5, 1, 2, 4)  # snapshot spacings, as multiples of the run's own, in the density table


def best_strengths(guidance_csv: Path, methods=("cfg", "autoguidance"), target: float = ADHERENCE) -> dict[str, float]:
    """Each method's best strength from the guidance report: the first guided w (w > 1: at w = 1 every method is the
    conditional model, the unguided way) whose adherence reaches ``target`` (else the w of its highest adherence)."""
    with open(guidance_csv) as f:
        rows = [r for r in csv.DictReader(f) if r["method"] in methods and float(r["w"]) > 1]
    found = {}
    for m in methods:
        mine = sorted((float(r["w"]), float(r["adherence"])) for r in rows if r["method"] == m)
        if mine:
            found[m] = next((w for w, a in mine if a >= target), max(mine, key=lambda wa: wa[1])[0])
    return found


def run(
    pipe: TextToImage,
    run_dir: Path,
    judge,
    extractor,
    samples_per_prompt: int,
    out: Path,
    *,
    strengths: dict[str, float],
    guide_checkpoint: str | None,
    bootstrap: int = BOOTSTRAP,
) -> Result | None:
    """Measure every way of sampling at every EMA length and write the report (None: it was up to date)."""
    study = Study(
        pipe,
        judge,
        [extractor],
        out,
        samples_per_prompt,
        strengths=strengths,
        guide=guide_checkpoint,
        lengths=list(LENGTHS),
        guide_lengths=list(GUIDE_LENGTHS),
        bootstrap=bootstrap,
    )
    if study.up_to_date():
        return None
    cfg = pipe.cfg
    guide_default = (
        checkpoints.load_weights(checkpoints.resolve(run_dir, guide_checkpoint))[0] if guide_checkpoint else None
    )

    step = checkpoints.load_state(pipe.checkpoint)["step"]
    guide_step = (
        checkpoints.load_state(checkpoints.resolve(run_dir, guide_checkpoint))["step"] if guide_checkpoint else None
    )

    def fit_error(length: float | None, at_step: int | None) -> float | None:
        return None if length is None else posthoc.reconstruct(run_dir, length, at_step=at_step)[1]["profile_error"]

    def measure(mode: str, length: float | None, guide_length: float | None = None, w: float | None = None) -> dict:
        sampler = (
            pipe
            if length is None
            else TextToImage(
                cfg,
                posthoc_weights(run_dir, pipe.checkpoint, length)[0],
                pipe.text,
                pipe.device,
                checkpoint=pipe.checkpoint,
                sampler=pipe.sampling,
                weights=f"post-hoc EMA {length:g}",
                codec=pipe.codec,
            )
        )
        guide = None
        if mode == "autoguidance":
            guide = (
                guide_default
                if guide_length is None
                else posthoc_weights(run_dir, checkpoints.resolve(run_dir, guide_checkpoint), guide_length)[0]
            )
        default = 1.0 if mode == "unguided" else strengths[mode]
        w = default if w is None else w
        scored = study.draw(w, pipe=sampler, method="autoguidance" if mode == "autoguidance" else "cfg", guide=guide)
        return {
            "mode": mode,
            "w": w,
            "retune": w != default,
            "length": length,
            "guide_length": guide_length,
            "hits": scored.hits,
            "features": scored.features[extractor.name],
            "fit_error": fit_error(length, step),
            "guide_fit_error": fit_error(guide_length, guide_step),
        }

    modes = ["unguided", "cfg"] + (["autoguidance"] if guide_checkpoint and "autoguidance" in strengths else [])
    jobs = [(m, length) for m in modes for length in (None, *LENGTHS)]
    rows = [measure(m, length) for m, length in progress(jobs, desc="EMA lengths")]
    if "autoguidance" in modes:  # the guide's own length, with the main model at its best
        main_best = _best_length([r for r in rows if r["mode"] == "autoguidance" and r["length"] is not None])
        rows += [measure("autoguidance", main_best, g) for g in progress(GUIDE_LENGTHS, desc="guide's EMA")]
    retune = [
        (
            m,
            _best_length([r for r in rows if r["mode"] == m and r["length"] is not None and r["guide_length"] is None]),
            w,
        )
        for m in modes
        if m != "unguided"
        for w in neighbours(strengths[m])
    ]
    rows += [measure(m, length, w=w) for m, length, w in progress(retune, desc="strength at the best length")]
    floor = study.shared().floors[extractor.name]
    result = Result(
        **analyse(rows, floor, bootstrap),
        n=study.shared().n,
        floor=floor,
        features=extractor.name,
        strengths=strengths,
        bootstrap=bootstrap,
        density=density(run_dir, step),
    )
    write(result, study)
    if result.presets:
        posthoc.write_presets(
            run_dir,
            result.presets,
            pipe.checkpoint,
            study.inputs["checkpoint_manifest_sha256"],
            report=str(Path(out) / "summary.md"),
        )
    return result


def density(run_dir: Path, step: int, spacings=SPACINGS, lengths=LENGTHS) -> list[dict]:
    """How densely the run must keep snapshots for each length: the fit error every length of ``lengths`` would have
    with snapshots taken at each spacing of ``spacings`` (multiples of the run's own) up to the checkpoint's last
    one, and the disk they would take at the run's measured bytes per snapshot. The fit depends only on when the
    snapshots were taken (EDM2's profiles are relative), so no spacing but the run's own needs its files."""
    found = posthoc.snapshots(run_dir, step)
    if len(found) < 2:
        return []
    taken = np.array([s for s, _ in found], np.float64)
    every, last = float(np.median(np.diff(taken))), float(taken[-1])
    size = float(np.mean([p.stat().st_size for _, p in found]))
    with safe_open(found[-1][1], "pt") as f:  # the lengths the run tracked (its config's, in every snapshot)
        tracked = json.loads(f.metadata()["sigma_rels"])
    rows = []
    for factor in spacings:
        steps = np.arange(last, 0, -every * factor)[::-1]  # the same last snapshot, spaced back from it
        if len(steps) < 2:
            continue
        times, profiles = np.repeat(steps, len(tracked)), np.tile(tracked, len(steps))
        row = {
            "spacing": f"{factor:g}x" + (", this run" if factor == 1 else ""),
            "every_steps": every * factor,
            "snapshots": len(steps),
            "disk_mib": round(len(steps) * size / 2**20, 1),
        }
        for length in lengths:
            weights = posthoc.coefficients(times, profiles, last, length)
            row[f"fit {length:g}"] = round(posthoc.profile_error(times, profiles, weights, last, length), 4)
        rows.append(row)
    return rows


def neighbours(w: float) -> tuple[float, float]:
    """The strengths a guided way is retried at with its best length: the guidance term (w - 1) halved and doubled.
    The length is chosen at one strength; whether that length moves the strength is what tuning the two together
    asks (EDM2 tunes them jointly; this is one coordinate step of it)."""
    return 1 + (w - 1) / 2, 1 + 2 * (w - 1)


def _fits(row: dict) -> bool:
    """The row's reconstructions (its own and its guide's) fit their profiles within FIT_LIMIT."""
    return all(e is None or e <= FIT_LIMIT for e in (row["fit_error"], row["guide_fit_error"]))


def _best_length(rows: list[dict]) -> float:
    fitting = [r for r in rows if _fits(r)] or rows  # none fits: the best of all (the summary flags them)
    return min(fitting, key=lambda r: r["features"].fd())["length"]


def analyse(rows: list[dict], floor: float, bootstrap: int) -> dict:
    """FD and adherence of every row with intervals; per way, the best length and where it falls across joint
    resamples; the best post-hoc EMA against the default EMA, and the ways against each other at their best."""
    n, m = len(rows[0]["hits"]), len(rows[0]["features"].y)
    draws, refs = stats.resamples(n, m, bootstrap)
    fd = np.array([r["features"].fd() for r in rows])
    boot = np.array([[r["features"].fd(d, q) for d, q in zip(draws, refs)] for r in rows])
    adh_boot = np.array([[r["hits"][d].mean() for d in draws] for r in rows])
    table = []
    for k, r in enumerate(rows):
        lo, hi = stats.interval(fd[k], boot[k])
        a_lo, a_hi = stats.interval(r["hits"].mean(), adh_boot[k])
        table.append(
            {
                "mode": r["mode"],
                "w": r["w"],
                "ema": "default" if r["length"] is None else f"{r['length']:g}",
                "guide_ema": ""
                if r["mode"] != "autoguidance"
                else ("default" if r["guide_length"] is None else f"{r['guide_length']:g}"),
                "fd": float(fd[k]),
                "fd_lo": lo,
                "fd_hi": hi,
                "fd_over_floor": float(fd[k] / floor),
                "adherence": float(r["hits"].mean()),
                "adherence_lo": a_lo,
                "adherence_hi": a_hi,
                "fit_error": "" if r["fit_error"] is None else r["fit_error"],
                "guide_fit_error": "" if r["guide_fit_error"] is None else r["guide_fit_error"],
                "fits": "yes" if _fits(r) else "no",
                "samples": n,
            }
        )
    best = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        sweep = [
            k
            for k, r in enumerate(rows)
            if r["mode"] == mode
            and r["length"] is not None
            and r["guide_length"] is None
            and not r["retune"]
            and _fits(r)
        ]
        if not sweep:  # no length of this way fits: nothing to choose (the summary says which were left out)
            continue
        default = next(k for k, r in enumerate(rows) if r["mode"] == mode and r["length"] is None)
        lengths = np.array([rows[k]["length"] for k in sweep])
        k_best = sweep[int(np.argmin(fd[sweep]))]
        where = lengths[np.argmin(boot[sweep], axis=0)]  # the best length in every resample
        d = float(fd[k_best] - fd[default])
        best[mode] = {
            "length": rows[k_best]["length"],
            "row": k_best,
            "fd": float(fd[k_best]),
            "length_lo": float(np.percentile(where, 5)),
            "length_hi": float(np.percentile(where, 95)),
            "vs_default": d,
            "vs_default_interval": stats.interval(d, boot[k_best] - boot[default]),
            "default_fd": float(fd[default]),
            "resamples": where,
            "fit_error": rows[k_best]["fit_error"],
        }
    guide_rows = [k for k, r in enumerate(rows) if r["guide_length"] is not None and _fits(r)]
    if guide_rows:
        k = guide_rows[int(np.argmin(fd[guide_rows]))]
        best["guide"] = {
            "length": rows[k]["guide_length"],
            "fd": float(fd[k]),
            "vs_main_best": float(fd[k] - fd[best["autoguidance"]["row"]]),
        }
    pairs = []
    for a, b in (("cfg", "unguided"), ("autoguidance", "unguided"), ("autoguidance", "cfg")):
        if a in best and b in best:
            ka, kb = best[a]["row"], best[b]["row"]
            d = float(fd[ka] - fd[kb])
            shorter = float(np.mean(best[a]["resamples"] < best[b]["resamples"]))
            pairs.append(
                {
                    "a": a,
                    "b": b,
                    "d_fd": d,
                    "interval": stats.interval(d, boot[ka] - boot[kb]),
                    "d_adherence": float(rows[ka]["hits"].mean() - rows[kb]["hits"].mean()),
                    "a_shorter_share": shorter,
                }
            )
    joint = {}
    for mode in (m for m in ("cfg", "autoguidance") if m in best):  # strength and length together
        mine = [
            k
            for k, r in enumerate(rows)
            if r["mode"] == mode and r["guide_length"] is None and r["length"] is not None and _fits(r)
        ]
        reaching = [k for k in mine if rows[k]["hits"].mean() >= ADHERENCE] or mine
        k, k0 = min(reaching, key=lambda k: fd[k]), best[mode]["row"]
        d = float(fd[k] - fd[k0])
        joint[mode] = {
            "w": rows[k]["w"],
            "length": rows[k]["length"],
            "fd": float(fd[k]),
            "adherence": float(rows[k]["hits"].mean()),
            "reached": rows[k]["hits"].mean() >= ADHERENCE,
            "vs_separate": d,
            "vs_separate_interval": stats.interval(d, boot[k] - boot[k0]),
            "retried": [
                {"w": rows[j]["w"], "fd": float(fd[j]), "adherence": float(rows[j]["hits"].mean())}
                for j in mine
                if rows[j]["retune"]
            ],
        }

    def unfit(length: str, error: str) -> list[float]:
        return sorted({r[length] for r in rows if r[error] is not None and r[error] > FIT_LIMIT})

    presets = {mode: b["length"] for mode, b in best.items() if mode != "guide" and b["fd"] <= b["default_fd"]}
    if "guide" in best and "autoguidance" in presets:
        presets["guide"] = best["guide"]["length"]
    return {
        "table": table,
        "best": best,
        "pairs": pairs,
        "presets": presets,
        "joint": joint,
        "flagged": unfit("length", "fit_error"),
        "guide_flagged": unfit("guide_length", "guide_fit_error"),
    }
