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
adherence against the EMA length, one curve per way) and ``summary.md``, with provenance; a fresh report is not
redrawn.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from safetensors import safe_open

from . import checkpoints, posthoc, reports, stats
from .console import progress
from .pipeline import TextToImage, posthoc_weights
from .study import Study

LENGTHS = (0.01, 0.02, 0.035, 0.05, 0.075, 0.10, 0.15, 0.25)  # sigma_rel, EDM2 Fig. 5's range
GUIDE_LENGTHS = (0.02, 0.05, 0.10, 0.15, 0.25)  # the guide's own sweep
ADHERENCE = 0.98  # a method's best strength: where its curve first reaches this adherence
SAMPLES_PER_PROMPT = 50
BOOTSTRAP = 200
FIT_LIMIT = posthoc.FIT_LIMIT  # a reconstruction whose profile misses its target by more is flagged and not chosen
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


@dataclass
class Result:
    """What `make ema` measured: the table, each way's best length, the ways against each other, strength and length
    together, the snapshot density, and the presets it writes into the run."""

    table: list[dict]
    best: dict[str, dict]
    pairs: list[dict]
    joint: dict[str, dict]
    presets: dict[str, float]
    flagged: list[float]  # the model's lengths whose fit error exceeds FIT_LIMIT
    guide_flagged: list[float]  # the guide's
    n: int
    floor: float
    features: str
    strengths: dict[str, float]
    bootstrap: int
    density: list[dict] = field(default_factory=list)


def run(pipe: TextToImage, run_dir: Path, judge, extractor, samples_per_prompt: int, out: Path, *,
        strengths: dict[str, float], guide_checkpoint: str | None, bootstrap: int = BOOTSTRAP) -> Result | None:
    """Measure every way of sampling at every EMA length and write the report (None: it was up to date)."""
    study = Study(pipe, judge, [extractor], out, samples_per_prompt, strengths=strengths, guide=guide_checkpoint,
                  lengths=list(LENGTHS), guide_lengths=list(GUIDE_LENGTHS), bootstrap=bootstrap)
    if study.up_to_date():
        return None
    cfg = pipe.cfg
    guide_default = checkpoints.load_weights(checkpoints.resolve(run_dir, guide_checkpoint))[0] if guide_checkpoint \
        else None

    step = checkpoints.load_state(pipe.checkpoint)["step"]
    guide_step = checkpoints.load_state(checkpoints.resolve(run_dir, guide_checkpoint))["step"] if guide_checkpoint \
        else None

    def fit_error(length: float | None, at_step: int | None) -> float | None:
        return None if length is None else posthoc.reconstruct(run_dir, length, at_step=at_step)[1]["profile_error"]

    def measure(mode: str, length: float | None, guide_length: float | None = None, w: float | None = None) -> dict:
        sampler = pipe if length is None else TextToImage(
            cfg, posthoc_weights(run_dir, pipe.checkpoint, length)[0], pipe.text, pipe.device,
            checkpoint=pipe.checkpoint, sampler=pipe.sampling, weights=f"post-hoc EMA {length:g}", codec=pipe.codec)
        guide = None
        if mode == "autoguidance":
            guide = guide_default if guide_length is None else posthoc_weights(
                run_dir, checkpoints.resolve(run_dir, guide_checkpoint), guide_length)[0]
        default = 1.0 if mode == "unguided" else strengths[mode]
        w = default if w is None else w
        scored = study.draw(w, pipe=sampler, method="autoguidance" if mode == "autoguidance" else "cfg", guide=guide)
        return {"mode": mode, "w": w, "retune": w != default,
                "length": length, "guide_length": guide_length, "hits": scored.hits,
                "features": scored.features[extractor.name], "fit_error": fit_error(length, step),
                "guide_fit_error": fit_error(guide_length, guide_step)}

    modes = ["unguided", "cfg"] + (["autoguidance"] if guide_checkpoint and "autoguidance" in strengths else [])
    jobs = [(m, length) for m in modes for length in (None, *LENGTHS)]
    rows = [measure(m, length) for m, length in progress(jobs, desc="EMA lengths")]
    if "autoguidance" in modes:  # the guide's own length, with the main model at its best
        main_best = _best_length([r for r in rows if r["mode"] == "autoguidance" and r["length"] is not None])
        rows += [measure("autoguidance", main_best, g) for g in progress(GUIDE_LENGTHS, desc="guide's EMA")]
    retune = [(m, _best_length([r for r in rows if r["mode"] == m and r["length"] is not None
                                and r["guide_length"] is None]), w)
              for m in modes if m != "unguided" for w in neighbours(strengths[m])]
    rows += [measure(m, length, w=w) for m, length, w in progress(retune, desc="strength at the best length")]
    floor = study.shared().floors[extractor.name]
    result = Result(**analyse(rows, floor, bootstrap), n=study.shared().n, floor=floor, features=extractor.name,
                    strengths=strengths, bootstrap=bootstrap, density=density(run_dir, step))
    write(result, study)
    if result.presets:
        posthoc.write_presets(run_dir, result.presets, pipe.checkpoint, study.inputs["checkpoint_manifest_sha256"],
                              report=str(Path(out) / "summary.md"))
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
        row = {"spacing": f"{factor:g}x" + (", this run" if factor == 1 else ""), "every_steps": every * factor,
               "snapshots": len(steps), "disk_mib": round(len(steps) * size / 2**20, 1)}
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
        table.append({"mode": r["mode"], "w": r["w"], "ema": "default" if r["length"] is None else f"{r['length']:g}",
                      "guide_ema": "" if r["mode"] != "autoguidance" else (
                          "default" if r["guide_length"] is None else f"{r['guide_length']:g}"),
                      "fd": float(fd[k]), "fd_lo": lo, "fd_hi": hi, "fd_over_floor": float(fd[k] / floor),
                      "adherence": float(r["hits"].mean()), "adherence_lo": a_lo, "adherence_hi": a_hi,
                      "fit_error": "" if r["fit_error"] is None else r["fit_error"],
                      "guide_fit_error": "" if r["guide_fit_error"] is None else r["guide_fit_error"],
                      "fits": "yes" if _fits(r) else "no", "samples": n})
    best = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        sweep = [k for k, r in enumerate(rows) if r["mode"] == mode and r["length"] is not None
                 and r["guide_length"] is None and not r["retune"] and _fits(r)]
        if not sweep:  # no length of this way fits: nothing to choose (the summary says which were left out)
            continue
        default = next(k for k, r in enumerate(rows) if r["mode"] == mode and r["length"] is None)
        lengths = np.array([rows[k]["length"] for k in sweep])
        k_best = sweep[int(np.argmin(fd[sweep]))]
        where = lengths[np.argmin(boot[sweep], axis=0)]  # the best length in every resample
        d = float(fd[k_best] - fd[default])
        best[mode] = {"length": rows[k_best]["length"], "row": k_best, "fd": float(fd[k_best]),
                      "length_lo": float(np.percentile(where, 5)), "length_hi": float(np.percentile(where, 95)),
                      "vs_default": d, "vs_default_interval": stats.interval(d, boot[k_best] - boot[default]),
                      "default_fd": float(fd[default]), "resamples": where,
                      "fit_error": rows[k_best]["fit_error"]}
    guide_rows = [k for k, r in enumerate(rows) if r["guide_length"] is not None and _fits(r)]
    if guide_rows:
        k = guide_rows[int(np.argmin(fd[guide_rows]))]
        best["guide"] = {"length": rows[k]["guide_length"], "fd": float(fd[k]),
                         "vs_main_best": float(fd[k] - fd[best["autoguidance"]["row"]])}
    pairs = []
    for a, b in (("cfg", "unguided"), ("autoguidance", "unguided"), ("autoguidance", "cfg")):
        if a in best and b in best:
            ka, kb = best[a]["row"], best[b]["row"]
            d = float(fd[ka] - fd[kb])
            shorter = float(np.mean(best[a]["resamples"] < best[b]["resamples"]))
            pairs.append({"a": a, "b": b, "d_fd": d, "interval": stats.interval(d, boot[ka] - boot[kb]),
                          "d_adherence": float(rows[ka]["hits"].mean() - rows[kb]["hits"].mean()),
                          "a_shorter_share": shorter})
    joint = {}
    for mode in (m for m in ("cfg", "autoguidance") if m in best):  # strength and length together
        mine = [k for k, r in enumerate(rows) if r["mode"] == mode and r["guide_length"] is None and r["length"]
                is not None and _fits(r)]
        reaching = [k for k in mine if rows[k]["hits"].mean() >= ADHERENCE] or mine
        k, k0 = min(reaching, key=lambda k: fd[k]), best[mode]["row"]
        d = float(fd[k] - fd[k0])
        joint[mode] = {"w": rows[k]["w"], "length": rows[k]["length"], "fd": float(fd[k]),
                       "adherence": float(rows[k]["hits"].mean()), "reached": rows[k]["hits"].mean() >= ADHERENCE,
                       "vs_separate": d, "vs_separate_interval": stats.interval(d, boot[k] - boot[k0]),
                       "retried": [{"w": rows[j]["w"], "fd": float(fd[j]), "adherence": float(rows[j]["hits"].mean())}
                                   for j in mine if rows[j]["retune"]]}

    def unfit(length: str, error: str) -> list[float]:
        return sorted({r[length] for r in rows if r[error] is not None and r[error] > FIT_LIMIT})

    presets = {mode: b["length"] for mode, b in best.items() if mode != "guide" and b["fd"] <= b["default_fd"]}
    if "guide" in best and "autoguidance" in presets:
        presets["guide"] = best["guide"]["length"]
    return {"table": table, "best": best, "pairs": pairs, "presets": presets, "joint": joint,
            "flagged": unfit("length", "fit_error"), "guide_flagged": unfit("guide_length", "guide_fit_error")}


def write(result: Result, study: Study) -> None:
    caption = (
        f"EMA lengths (post-hoc, EDM2's sigma_rel; 'default': the run's fixed-decay EMA) for unguided sampling "
        f"(w = 1), CFG and autoguidance at their best strengths ({result.strengths}), N = {result.n} images per "
        f"row from the same prompts and seeds. fd: Frechet distance in {result.features} features (floor "
        f"{result.floor:.2f}); _lo/_hi: {stats.LEVEL:.0%} basic paired bootstrap intervals "
        f"({result.bootstrap} joint resamples). guide_ema: autoguidance's guide's own length. fit_error: how far "
        f"the snapshots' combined profile is from the length's (relative L2; fits: at most {FIT_LIMIT:.0%}, else never "
        "chosen).")
    tables = {"ema": (result.table, caption)}
    if result.density:
        tables["snapshots"] = (result.density, (
            f"How densely the run must keep post-hoc EMA snapshots: each length's fit error (relative L2; at most "
            f"{FIT_LIMIT:.0%} to be chosen) with snapshots at each spacing (multiples of the run's own, every "
            "every_steps training steps, ending at the checkpoint's last), and the disk they take at this run's "
            "measured size per snapshot (both tracked profiles, half precision). Only the run's own spacing was "
            "trained; the others are computed from the snapshots' times alone."))
    study.publish(tables=tables, figures={"ema.png": lambda path: figure(result, path)},
                  texts={"summary.md": summary(result)}, samples=result.n, floor=result.floor,
                  features=result.features, strengths=result.strengths)


def summary(result: Result) -> str:
    best, n = result.best, result.n
    lines = [f"# EMA length against the way of sampling, N = {n}", "",
             f"Post-hoc EMA lengths {', '.join(f'{x:g}' for x in LENGTHS)} (EDM2's sigma_rel) for each way of "
             "sampling, on the same prompts and seeds; the best length is the lowest FD, its interval where the best "
             f"length falls in {result.bootstrap} joint resamples (5th-95th percentile), among the lengths whose "
             f"reconstruction fits its profile within {FIT_LIMIT:.0%}.", ""]
    for flagged, whose in ((result.flagged, "the model's"), (result.guide_flagged, "the guide's")):
        if flagged:
            lines += [f"Left out: {whose} sigma_rel {', '.join(f'{x:g}' for x in flagged)}, whose snapshots fit "
                      f"the profile with more than {FIT_LIMIT:.0%} error (too few snapshots for so short an EMA: take "
                      "them more often).", ""]
    for mode in ("unguided", "cfg", "autoguidance"):
        if mode not in best:
            continue
        b = best[mode]
        lo, hi = b["vs_default_interval"]
        verdict = ("better than" if hi < 0 else "worse than" if lo > 0 else "not resolved against")
        lines.append(f"- **{mode}**: best sigma_rel {b['length']:g} [{b['length_lo']:g}, {b['length_hi']:g}] (fit "
                     f"error {b['fit_error']:.1%}), FD {b['fd']:.2f}; {verdict} the default EMA (FD "
                     f"{b['default_fd']:.2f}, difference {b['vs_default']:+.2f} [{lo:.2f}, {hi:.2f}]).")
    if "guide" in best:
        lines.append(f"- autoguidance's guide prefers sigma_rel {best['guide']['length']:g} (FD "
                     f"{best['guide']['fd']:.2f}, {best['guide']['vs_main_best']:+.2f} against the guide's default "
                     "EMA).")
    lines.append("")
    for p in result.pairs:
        lo, hi = p["interval"]
        lines.append(f"- {p['a']} at its best length against {p['b']} at its: FD difference {p['d_fd']:+.2f} "
                     f"[{lo:.2f}, {hi:.2f}], adherence difference {p['d_adherence']:+.3f}; {p['a']}'s best length is "
                     f"the shorter in {p['a_shorter_share']:.0%} of the resamples.")
    if "cfg" in best and "unguided" in best:
        pair = next(p for p in result.pairs if (p["a"], p["b"]) == ("cfg", "unguided"))
        share = pair["a_shorter_share"]
        answer = ("yes" if share >= 0.9 else "no: it prefers a longer one" if share <= 0.1 else
                  f"not resolved at N = {n} (shorter in {share:.0%} of the resamples)")
        lines += ["", "Does guided sampling (CFG) prefer a shorter EMA than unguided sampling, as EDM2 found? "
                  f"{answer}."]
    lines += _joint_lines(result.joint, result.best, result.strengths)
    lines += _density_lines(result.density)
    presets = result.presets
    lines += ["", "**Presets** (each way's best length where its FD is at or below the default EMA's), written to the "
              f"run's `{posthoc.PRESETS}`: " + (", ".join(f"{k} {v:g}" for k, v in presets.items()) or "none") + ". "
              + ("`sample`, `eval`, `guidance` and `export` now sample this checkpoint with the CFG preset unless "
                 "--ema-length, --no-ema or --weights says otherwise." if "cfg" in presets else
                 "CFG keeps the fixed-decay EMA.")]
    return "\n".join(lines) + "\n"


def _joint_lines(joint: dict, best: dict, strengths: dict) -> list[str]:
    """Strength and length tuned together: each guided way at its best length retried with its guidance term halved
    and doubled, and the lowest FD among all its rows that reach the adherence target."""
    if not joint:
        return []
    lines = ["", f"**Strength and length together** (each guided way at its best length, retried with w - 1 halved "
             f"and doubled; the lowest FD among its rows reaching adherence {ADHERENCE:g}):"]
    for mode, j in joint.items():
        tried = "; ".join(f"w = {t['w']:g}: adherence {t['adherence']:.3f}, FD {t['fd']:.2f}" for t in j["retried"])
        lo, hi = j["vs_separate_interval"]
        same = j["w"] == strengths[mode] and j["length"] == best[mode]["length"]
        lines.append(f"- **{mode}** at sigma_rel {best[mode]['length']:g}: {tried}. Together: w = {j['w']:g}, "
                     f"sigma_rel {j['length']:g} (FD {j['fd']:.2f}, adherence {j['adherence']:.3f}"
                     + ("" if j["reached"] else f", no row reached {ADHERENCE:g}") + ")"
                     + (", the pair chosen one at a time." if same else
                        f"; against the pair chosen one at a time (w = {strengths[mode]:g}, sigma_rel "
                        f"{best[mode]['length']:g}) FD {j['vs_separate']:+.2f} [{lo:.2f}, {hi:.2f}]."))
    return lines


def _density_lines(rows: list[dict]) -> list[str]:
    """What the density table says: at each spacing, its snapshots, their disk and the lengths that fit."""
    if not rows:
        return []
    lines = ["", "**Snapshot density** (`snapshots.md`):"]
    for row in rows:
        fitting = [k.split()[1] for k, v in row.items() if k.startswith("fit ") and v <= FIT_LIMIT]
        fit = f"sigma_rel {', '.join(fitting)} fit" if fitting else "no length fits"
        lines.append(f"- every {row['every_steps']:g} steps ({row['spacing']}): {row['snapshots']} snapshots, "
                     f"{row['disk_mib']:,.1f} MiB; {fit} within {FIT_LIMIT:.0%}.")
    return lines


def figure(result: Result, path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for mode in ("unguided", "cfg", "autoguidance"):
        w = 1.0 if mode == "unguided" else result.strengths.get(mode)
        mine = sorted((r for r in result.table if r["mode"] == mode and r["ema"] != "default" and r["w"] == w
                       and r["guide_ema"] in ("", "default")), key=lambda r: float(r["ema"]))
        if not mine:
            continue
        x = [float(r["ema"]) for r in mine]
        line, = left.plot(x, [r["fd_over_floor"] for r in mine], "o-", label=mode)
        left.fill_between(x, [r["fd_lo"] / result.floor for r in mine], [r["fd_hi"] / result.floor for r in mine],
                          color=line.get_color(), alpha=0.15)
        right.plot(x, [r["adherence"] for r in mine], "o-", color=line.get_color(), label=mode)
        default = next(r for r in result.table if r["mode"] == mode and r["ema"] == "default")
        left.axhline(default["fd_over_floor"], ls=":", color=line.get_color(), lw=1)
        unfit = [r for r in mine if r["fits"] == "no"]
        left.scatter([float(r["ema"]) for r in unfit], [r["fd_over_floor"] for r in unfit], marker="x", s=60,
                     color="black", zorder=3, label=f"fit error > {FIT_LIMIT:.0%}" if mode == "unguided" else None)
        if mode in result.best:
            b = result.best[mode]
            left.axvspan(b["length_lo"], b["length_hi"], color=line.get_color(), alpha=0.08)
    for ax, label in ((left, "FD / real-vs-real floor (dotted: the default EMA)"), (right, "adherence")):
        ax.set_xscale("log")
        ax.set_xlabel("EMA length sigma_rel (post-hoc)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"The EMA axis, N = {result.n} (shaded: where the best length falls in the resamples)", fontsize=10)
    return reports.save(fig, path)
