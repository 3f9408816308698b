"""``make guidance RUN=...``: every guidance method of :mod:`t2i.guidance` on one fidelity / adherence front, with
paired statistics and a verdict per method that follows from the numbers.

Every row (a method at a strength w) samples the same N prompts from the same N seeds, so rows are compared image by
image (:mod:`t2i.stats`): one bootstrap resample draws the seeds and the real reference images together, for every
row at once. For each row, in every staged feature space (the judge's penultimate layer and a fixed random CNN
always, the primary one first: :func:`t2i.verdict.feature_spaces`; Inception and DINOv2 where `make assets` staged
them): FD and KID to N real training images with basic bootstrap intervals, FD over the real-vs-real floor at the
same N, and the judge's adherence with an exact interval. This front is descriptive, as are the tests along it
(each method's KID and FD where its curve first reaches an adherence level, and its adherence where it first reaches
an FD level, against CFG's).

Each method has **one declared primary endpoint**, measured by :mod:`t2i.verdict`: its KID difference to CFG, each at
the strength where its own curve reaches the primary adherence level, sampled there on fresh seeds. The level is
declared as a place on the scale, not a number (:data:`t2i.comparison_front.PRIMARY_FRACTION`): the fraction of the
way from the conditional model's adherence (the front's shared w = 1 row) to the judge's on real images, raised where
that lies within the front's noise of the conditional model (:func:`t2i.verdict.primary_adherence`). A fixed number
is one dataset's: 0.97 on the demo sat at the conditional model's own adherence, which put seven of eight methods at
w = 1, while CelebA's attribute adherence never reaches it; a level within the conditional model's noise does the
same. KID, not FD: KID is unbiased at any N, while FD's finite-N bias depends on each row's diversity, so at N below
the feature width it can favour the less diverse method (Chong & Forsyth 2020). Holm's correction runs over the
methods' primary tests. The verdict per method is "better than CFG", "worse", "not resolved at N = ..." (with the N
at which its primary effect would be resolved with 80% power, if it stayed as measured) or "not reached" (a curve
does not reach the level).
The guidance interval is tuned per model on separate seeds (EDM2-S's interval stays as a labelled row); autoguidance's
row names its guide's training length and size.

It writes ``reports/<profile>/<experiment>/<run>/guidance/`` (or a named sub-folder, for a replication):
``guidance.md/.csv/.tex`` (one row per method and w), ``matched.md/.csv/.tex`` (the tests along the curve),
``tuning.md`` (the interval grid), ``front.png`` and ``summary.md``, each with provenance; the numbers of the front
are :mod:`t2i.comparison_front`'s, the summary and figure :mod:`t2i.comparison_report`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from . import checkpoints, data, evaluate, guidance, metrics, reports, stats, verdict
from .comparison_front import FD_LEVELS, POWER, analyse
from .comparison_report import Result, check_against, front, main_report, summary
from .console import progress
from .models import count_parameters
from .pipeline import TextToImage
from .study import Study

STRENGTHS = (1.0, 1.25, 1.5, 2.0, 3.0, 5.0)  # w; w = 1 (the conditional model) is one shared row
SAMPLES_PER_PROMPT = 50  # the verdict's N = 500 for ten classes ...
FRONT_SAMPLES_PER_PROMPT = 20  # ... and the front's (which calibrates the verdict's strengths): N = 200
BOOTSTRAP = 200  # paired resamples of the seeds and the reference images
INTERVAL_GRID = [(lo, hi) for lo in (0.0, 0.28, 1.0) for hi in (2.0, 5.42, 20.0, math.inf)]  # (sigma_lo, sigma_hi]
TUNE_STRENGTH = 2.0  # the interval is tuned at this w ...
TUNE_SAMPLES_PER_PROMPT = 10  # ... on this many images per prompt ...
TUNE_SEED_OFFSET = 1_000_000  # ... from other seeds than the comparison's
CHECK_SEED_OFFSET = 2_000_000  # a check (compare_with) draws seeds disjoint from the main report's and the tuning's


@dataclass(frozen=True)
class Variant:
    """One curve of the front: a method with its parameters, under a label."""

    label: str
    method: str
    params: dict = field(default_factory=dict)

    def describe(self, guide_name: str | None) -> str:
        if guidance.method(self.method).weak == "guide":
            return f"guide={guide_name}"
        given = guidance.parameters(self.method, self.params)
        return ", ".join(f"{k}={v:g}" for k, v in given.items())


@dataclass
class Row:
    variant: Variant
    w: float
    hits: np.ndarray  # each image's adherence (0/1 for class prompts)
    features: dict[str, stats.FeatureSet]  # feature space -> this row against the reference
    evaluations: float = float("nan")  # network evaluations per image and sampling step, counted (t2i.sampling)


def variants(
    pipe: TextToImage, methods: Sequence[str] | None, guide, interval: tuple[float, float] | None
) -> list[Variant]:
    """The curves a run can have: every method it can use (autoguidance needs a guide, dynamic thresholding pixels),
    the guidance interval twice (tuned here, and EDM2-S's as published)."""
    names = list(methods) if methods else [m for m in guidance.METHODS if m != "apg-eps"] + ["apg-eps"]
    found = []
    for name in names:
        m = guidance.method(name)
        if (m.weak == "guide" and guide is None) or (m.pixel_only and pipe.codec is not None):
            continue
        if name == "interval":
            if interval is not None:
                found.append(Variant("interval (tuned)", name, {"sigma_lo": interval[0], "sigma_hi": interval[1]}))
            found.append(Variant("interval (EDM2-S)", name, {}))
        else:
            found.append(Variant(name, name, {}))
    return found


def run(
    pipe: TextToImage,
    judge,
    extractors: list,
    samples_per_prompt: int,
    out: Path,
    *,
    methods: Sequence[str] | None = None,
    strengths: Sequence[float] = STRENGTHS,
    guide=None,
    guide_name: str | None = None,
    seed: int | None = None,
    bootstrap: int = BOOTSTRAP,
    tune: bool = True,
    compare_with: Path | None = None,
) -> Result | None:
    """Measure every variant at every strength, compare each with CFG along the curve, write the report. Returns
    what was measured (rows, tests, verdicts), or None when the report in ``out`` was made from the same checkpoint,
    settings and code (nothing is redrawn). ``compare_with``: the main report's folder, whose verdicts this one (a
    replication on seeds disjoint from the main report's, judged against held-out real images) confirms or
    contradicts (``check.md``)."""
    strengths = sorted({float(w) for w in strengths})  # a curve is read in order of strength
    if compare_with is not None:  # a replication, not a re-read: none of the main report's images again
        seed = pipe.seed_for(seed) + CHECK_SEED_OFFSET
    main = main_report(compare_with)
    study = Study(
        pipe,
        judge,
        extractors,
        out,
        samples_per_prompt,
        **main["study"],  # a replication's: the real images it skips, the interval and level it keeps
        methods=list(methods) if methods else None,
        strengths=[float(w) for w in strengths],
        guide=guide_name,
        seed=pipe.seed_for(seed),
        bootstrap=bootstrap,
        tune=tune,
    )
    if study.up_to_date():
        return None
    damage, study.extractors = verdict.feature_spaces(pipe.cfg, study.extractors)  # the primary space first
    shared, final = study.shared(min(FRONT_SAMPLES_PER_PROMPT, samples_per_prompt)), study.shared()
    spaces, n = [e.name for e in study.extractors], shared.n
    real, real_n = evaluate.real_adherence(pipe.cfg, judge, limit=final.n)

    def measure(variant: Variant, w: float, on: evaluate.PairedRows = shared, seed: int | None = seed) -> Row:
        scored = study.draw(w, shared=on, seed=seed, method=variant.method, params=variant.params, guide=guide)
        return Row(variant, float(w), scored.hits, scored.features, scored.evaluations / pipe.steps_at(w))

    interval, tuning = main["interval"], []  # a replication keeps the main report's tuned interval
    wanted = list(methods or guidance.METHODS)
    if "interval" in wanted and tune and compare_with is None:
        interval, tuning = tune_interval(pipe, judge, study.extractors[0], samples_per_prompt, seed)  # primary space
    curves = variants(pipe, methods, guide, interval)
    if not any(v.method == "cfg" for v in curves):
        curves.insert(0, Variant("cfg", "cfg", {}))
    rows: list[Row] = []
    shared_one: Row | None = None
    jobs = [(v, float(w)) for v in curves for w in strengths]
    for variant, w in progress(jobs, desc="guidance methods"):
        if w == 1.0 and guidance.method(variant.method).at_one_is_conditional:
            shared_one = shared_one or measure(Variant("conditional", "cfg", {}), 1.0)
            rows.append(Row(variant, 1.0, shared_one.hits, shared_one.features, shared_one.evaluations))
            continue
        rows.append(measure(variant, w))
    result = analyse(rows, spaces, shared.floors, real, shared.spec.binary_adherence, bootstrap, main["level"])
    level = result.primary_level
    resamples = verdict.resamples_for(len(curves) - 1, at_least=bootstrap)  # Holm over the methods needs p this small
    calibrations = verdict.calibrate(rows, level, spaces, stats.resamples(n, shared.reference_n, resamples)[0])
    final_rows = {}
    if math.isfinite(calibrations["cfg"].w):  # each curve at its own w*, on fresh seeds
        reached = [v for v in curves if math.isfinite(calibrations[v.label].w)]
        for v in progress(reached, desc=f"verdict rows at adherence {level:g}"):
            final_rows[v.label] = measure(
                v, calibrations[v.label].w, final, pipe.seed_for(seed) + verdict.VERDICT_SEED_OFFSET
            )
        primary = verdict.primary_tests(
            final_rows, calibrations, spaces, level, resamples, shared.spec.binary_adherence
        )
        result.tests += primary
        result.needed = verdict.needed(final_rows, calibrations, primary, spaces[0], POWER)
    result.n, result.reference_n, result.real_n, result.spaces = n, shared.reference_n, real_n, spaces
    result.tuning, result.interval, result.guide_name = tuning, interval, guide_name
    result.verdict_n, result.verdict_reference_n, result.verdict_floors = final.n, final.reference_n, final.floors
    result.calibrations, result.damage, result.verdict_bootstrap = calibrations, damage, resamples
    write(result, study)
    if compare_with is not None:
        print(check_against(result, Path(compare_with), study.out))
        reports.write_provenance(
            study.out / "check.md", **pipe.provenance(inputs=study.inputs, main_report=Path(compare_with))
        )
    return result


def tune_interval(
    pipe: TextToImage, judge, extractor, samples_per_prompt: int, seed: int | None
) -> tuple[tuple[float, float], list[dict]]:
    """The guidance interval for this model, tuned as Kynkaanniemi et al. tune theirs, on seeds the comparison does
    not use: at w = :data:`TUNE_STRENGTH`, the grid point with the lowest FD among those whose adherence is at least
    plain CFG's there (a narrower interval always lowers FD by guiding less; the question is what keeps the adherence).
    Returns the chosen (sigma_lo, sigma_hi) and the grid's rows."""
    cfg, spec = pipe.cfg, data.spec(pipe.cfg)
    per_prompt = min(TUNE_SAMPLES_PER_PROMPT, samples_per_prompt)
    conditions = spec.sweep_conditions(cfg, per_prompt, None)
    prompts, n = spec.prompts(cfg, conditions), len(conditions)
    reference, _, _ = evaluate.reference_set(cfg, extractor, n)
    tune_seed = pipe.seed_for(seed) + TUNE_SEED_OFFSET
    found = []
    for lo, hi in progress(INTERVAL_GRID, desc="tuning the guidance interval"):
        images = pipe.images(
            prompts,
            TUNE_STRENGTH,
            seed=tune_seed,
            method="interval",
            params={"sigma_lo": lo, "sigma_hi": hi},
            show_progress=False,
        )
        uint8 = metrics.to_uint8(images)
        hits = spec.image_adherence(judge.predict(uint8.float() / 255), conditions)
        fd = stats.FeatureSet(extractor(uint8).features, reference.features).fd()  # (defined below D images too)
        found.append(
            {
                "sigma_lo": lo,
                "sigma_hi": hi,
                "w": TUNE_STRENGTH,
                "features": extractor.name,
                "fd": fd,
                "adherence": float(hits.float().mean()),
                "samples": n,
            }
        )
    plain = next(r for r in found if r["sigma_lo"] == 0.0 and r["sigma_hi"] == math.inf)  # the whole range: CFG
    feasible = [r for r in found if r["adherence"] >= plain["adherence"]] or [max(found, key=lambda r: r["adherence"])]
    best = min(feasible, key=lambda r: r["fd"])
    for r in found:
        r["chosen"] = "yes" if r is best else ""
    return (best["sigma_lo"], best["sigma_hi"]), found


# --- the report ---------------------------------------------------------------------------------------------------
def write(result: Result, study: Study) -> None:
    pipe = study.pipe
    n, m, spaces = result.n, result.reference_n, result.spaces
    primary = spaces[0]
    guided = {r.variant.label: r.variant for r in result.rows if guidance.method(r.variant.method).weak == "guide"}
    for e in result.table:
        if e["method"] in guided:
            e["params"] = guided[e["method"]].describe(result.guide_name)
    caption = (
        f"Guidance methods on {pipe.cfg.experiment} ({pipe.checkpoint.name}, {pipe.weights} weights, "
        f"{pipe.sampling.describe()}): N = {n} images per row from the same prompts and "
        "seeds. evaluations_per_step: network calls per image and sampling step, counted (an SWG crop is one "
        f"call on a part of the image). fd: Frechet distance in {primary} features to {m} real training images "
        "(real-vs-real floor "
        f"{result.floors[primary]:.2f}, {m} against {m}; fd_over_floor = fd / floor); kid: unbiased KID; "
        f"adherence: the judge's ({result.real_adherence:.3f} on {result.real_n} held-out real images); "
        f"_lo/_hi: {stats.LEVEL:.0%} intervals (adherence: exact Clopper-Pearson; FD, KID: basic paired "
        f"bootstrap over {result.bootstrap} joint resamples of the seeds and the reference, which corrects "
        "the bias a resample sees, so a row's interval can sit below its estimate). The front calibrates the "
        "verdict's strengths (verdict.md) and is descriptive. d_*: the paired difference to CFG at the same w "
        "(adherence: Newcombe's score interval, p_adherence McNemar's exact test). Other feature spaces carry "
        "their name as a suffix. "
        f"w: every method's strength on the thesis's scale ({reports.GUIDANCE_CONVENTION})."
    )
    tables = {"guidance": (result.table, caption)}
    primary_tests = [t for t in result.tests if t["primary"]]
    if primary_tests:
        cal = result.calibrations
        shown = [
            {
                "method": t["method"],
                "features": t["features"],
                "w": t["w"],
                "w_lo": cal[t["method"]].interval()[0],
                "w_hi": cal[t["method"]].interval()[1],
                "w_cfg": t["w_cfg"],
                **{
                    k: t[k]
                    for k in (
                        "adherence",
                        "adherence_lo",
                        "adherence_hi",
                        "adherence_cfg",
                        "value",
                        "cfg",
                        "difference",
                        "lo",
                        "hi",
                        "p",
                        "p_holm",
                        "verdict",
                    )
                },
            }
            for t in primary_tests
        ]
        tables["verdict"] = (
            shown,
            (
                f"The primary endpoint of every method: each curve at the strength w where it reaches adherence "
                f"{result.primary_level:g} on the front (w_lo/w_hi: {stats.LEVEL:.0%} of the front's resamples), "
                f"sampled at that w on N = {result.verdict_n} fresh seeds, the same in every row; adherence: reached "
                "there (exact interval); value/cfg: KID of the method / of CFG at its own w; difference = method - "
                "CFG "
                f"(lower is better) with a {stats.LEVEL:.0%} basic paired bootstrap interval over "
                f"{result.verdict_bootstrap} "
                "joint resamples of the seeds and the reference, which also carries the calibration's error, and p "
                "from "
                f"the same bootstrap; p_holm: Holm over the methods, per feature space (verdict at family-wise "
                f"{1 - stats.LEVEL:.0%}). The first feature space is the primary one; the others are descriptive."
            ),
        )
    described = [t for t in result.tests if not t["primary"]]
    if described:
        shown = [
            {
                k: t[k]
                for k in (
                    "method",
                    "features",
                    "metric",
                    "at",
                    "cfg",
                    "value",
                    "difference",
                    "lo",
                    "hi",
                    "p",
                    "verdict",
                )
            }
            for t in described
        ]
        tables["matched"] = (
            shown,
            (
                f"Descriptive, on the front (N = {n}): each method against CFG along the curve: at an adherence "
                "level, KID "
                "and FD where each curve first reaches it, read between the sampled strengths (lower is better); at "
                "an FD "
                f"level, adherence there (higher is better). difference = method - CFG, {stats.LEVEL:.0%} basic paired "
                "bootstrap interval and p from the same bootstrap, uncorrected: these rows decide nothing."
            ),
        )
    tables["feature_spaces"] = (
        [{"features": space, **row} for space, check in result.damage.items() for row in check["rows"]],
        (
            "Each feature space on this dataset's real images before it judges anything: KID and FD of real images, "
            "damaged as named, against other real images (n = "
            f"{next(iter(result.damage.values()))['n']} each). A space orders the damage when KID grows with every "
            "level of every damage: "
            + "; ".join(f"{space}: {'yes' if check['orders'] else 'NO'}" for space, check in result.damage.items())
            + "."
        ),
    )
    if result.tuning:
        tables["tuning"] = (
            result.tuning,
            (
                f"The guidance interval tuned for this model at w = {TUNE_STRENGTH:g} on {result.tuning[0]['samples']} "
                f"images from other seeds than the comparison's: the lowest FD ({primary}) among the intervals whose "
                "adherence is at least plain CFG's (sigma_lo 0, sigma_hi inf); sigma is the EDM noise level."
            ),
        )
    study.publish(
        tables=tables,
        figures={"front.png": lambda path: front(result, path)},
        texts={"summary.md": summary(result, pipe, FD_LEVELS)},
        samples=n,
        reference_images=m,
        verdict_reference_images=result.verdict_reference_n,
        primary_level=result.primary_level,
        floors=result.floors,
        real_adherence=result.real_adherence,
        features=spaces,
        bootstrap=result.bootstrap,
        guide=result.guide_name,
        interval=result.interval,
        methods=sorted({r.variant.label for r in result.rows}),
    )


def guide_description(
    guide_run: Path | None, guide_checkpoint: str | None, unet: torch.nn.Module | None, run_cfg
) -> str | None:
    """What autoguidance's guide is, for its row: the checkpoint or run, its training length and its size."""
    if unet is None:
        return None
    size = f"{count_parameters(unet, trainable_only=False) / 1e6:.1f}M parameters"
    if guide_checkpoint:
        return f"{guide_checkpoint} of this run (of {run_cfg.epochs} epochs), {size}"
    latest = checkpoints.latest(Path(guide_run))
    state = checkpoints.load_state(latest)
    return f"{guide_run} ({latest.name}, {state['epoch']} epochs), {size}"
