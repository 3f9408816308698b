"""What each command of :mod:`t2i.cli` does, once its arguments are parsed: one function per command, each returning
the exit status (:data:`COMMANDS`)."""

from __future__ import annotations

from pathlib import Path

from . import assets, configs, experiments, figures, guidance, judges, paths, pipeline, reports, thesis
from .arguments import guidance_params, parse_overrides
from .data import latents
from .errors import ConfigError
from .experiment import Run
from .files import check_writable


def do_train(args) -> int:
    cfg = configs.get(args.experiment, args.profile, **parse_overrides(args.overrides))
    assets.require(cfg, text=True, dataset=True, vae=cfg.vae is not None and not latents.is_ready(cfg))
    run = Run(cfg, paths.run_dir(cfg.experiment, args.run_name or args.profile))
    run.train(restart=args.restart)
    print(f"run: {run.dir}")
    return 0


def do_sample(args) -> int:
    run = Run.open(args.run_dir)
    assets.require(run.cfg, text=True, vae=True)
    check_writable(args.out)
    if args.no_ema and args.ema_length is not None:
        raise ConfigError("--no-ema and --ema-length ask for different weights: give one")
    params = guidance.parameters(args.guidance_method, guidance_params(args.guidance_params))
    pipe = run.pipeline(
        checkpoint=args.checkpoint,
        ema=False if args.no_ema else None,
        sampler=args.sampler,
        num_inference_steps=args.num_inference_steps,
        spacing=args.timestep_spacing,
        ema_length=args.ema_length,
    )
    guide = pipeline.load_guide(run.dir, args.guide_checkpoint, args.guide_run)
    figures.prompt_grid(
        pipe,
        args.prompt,
        args.samples_per_prompt,
        args.guidance_scale,
        args.out,
        seed=args.seed,
        method=args.guidance_method,
        params=params,
        guide=guide,
        guide_name=str(args.guide_run or args.guide_checkpoint or "") or None,
    )
    print(f"wrote {args.out}")
    return 0


def do_eval(args) -> int:
    run = Run.open(args.run_dir)
    print(
        run.evaluate(
            args.guidance_scales,
            args.samples_per_prompt,
            prompts=args.prompts,
            features=args.features,
            clip_model=args.clip_model,
            seed=args.seed,
            sampler=args.sampler,
            num_inference_steps=args.num_inference_steps,
            ema_length=args.ema_length,
        )
    )
    print(f"wrote {run.eval_dir}")
    return 0


def _report(out: Path, summary: str = "summary.md") -> int:
    print((out / summary).read_text())
    print(f"wrote {out}")
    return 0


def do_guidance(args) -> int:
    if args.across:  # the reports there are: on how many independently trained models each verdict holds
        from . import replication  # imported where it runs, as the studies are (t2i/cli.py)

        return _report(replication.write([args.run_dir, *args.across]).parent, "models_summary.md")
    run = Run.open(args.run_dir)
    if args.check:
        _repeats_every_method(run.guidance_dir, args)
    return _report(
        run.compare_guidance(
            args.samples_per_prompt,
            methods=args.methods,
            strengths=args.strengths,
            guide_checkpoint=args.guide_checkpoint,
            guide_run=args.guide_run,
            features=args.features,
            check=args.check,
            ema_length=args.ema_length,
        )
    )


def _repeats_every_method(main: Path, args) -> None:
    """A replication draws every method of the main report in ``main`` again: one that autoguided needs its guide
    named again (``python -m t2i guidance`` has no default guide; `make guidance`'s notebook names epoch-0010)."""
    made = reports.read_provenance(main / "summary.md") or {}
    guided = "autoguidance" in made.get("methods", []) and args.methods is None  # a subset is the user's choice
    if guided and not (args.guide_checkpoint or args.guide_run):
        raise ConfigError(
            f"{main} autoguided with {made.get('guide')}: name that guide again (--guide-checkpoint or --guide-run), "
            "so that the replication repeats every method"
        )


def do_samplers(args) -> int:
    return _report(
        Run.open(args.run_dir).compare_samplers(
            args.samples_per_prompt,
            samplers=args.samplers,
            steps=args.steps,
            spacings=args.spacings,
            features=args.features,
            guidance_scales=args.guidance_scales,
        )
    )


def do_ema(args) -> int:
    return _report(
        Run.open(args.run_dir).compare_ema(
            args.samples_per_prompt,
            cfg_strength=args.cfg_strength,
            autoguidance_strength=args.autoguidance_strength,
            guide_checkpoint=args.guide_checkpoint,
            features=args.features,
        )
    )


def do_export(args) -> int:
    from . import export  # diffusers' StableDiffusionPipeline: imported only when exporting

    if args.ema_length is not None and args.weights is not None:
        raise ConfigError(f"--weights {args.weights} and --ema-length ask for different weights: give one")
    if args.push_to_hub is not None and not args.push_to_hub.strip():
        raise ConfigError("--push-to-hub needs a repository id (user/name)")
    if args.private is not None and args.push_to_hub is None:
        raise ConfigError("--private and --public choose a pushed repository's visibility: add --push-to-hub REPO_ID")
    export.check_out(args.out)  # every path problem before the run and its pipeline load
    run = Run.open(args.run_dir)
    if args.push_to_hub:
        export.check_push(args.push_to_hub)  # the repo id, the login and the network: before any export work
    folder = export.export(
        run,
        args.out,
        args.checkpoint,
        args.weights,
        overwrite=args.overwrite,
        repo_id=args.push_to_hub,
        ema_length=args.ema_length,
    )
    if args.push_to_hub:
        print(f"pushed: {export.push(folder, args.push_to_hub, args.private)}")
    return 0


def do_where(args) -> int:
    """One line: the folder asked for, computed by the code that writes there, never by a copy of its rules."""
    if args.what in (paths.EVAL, paths.GUIDANCE, paths.SAMPLER_FRONT, paths.EMA_FRONT):
        if args.run is None:
            raise ConfigError(f"where {args.what} needs --run RUN_DIR")
        print(Run.open(args.run).reports / args.what)
        return 0
    if args.notebook is None and (args.experiment is None or args.what == "experiment"):
        raise ConfigError(
            f"where {args.what} needs --notebook notebooks/NN_<experiment>.ipynb"
            + ("" if args.what == "experiment" else " or --experiment NAME")
        )
    experiment = experiments.from_notebook(args.notebook) if args.notebook else args.experiment
    run_name = args.run_name or args.profile
    print(
        {
            "experiment": experiment,
            "run": paths.run_dir(experiment, run_name),
            "reports": paths.report_dir(args.profile, experiment, run_name),
        }[args.what]
    )
    return 0


def do_judge(args) -> int:
    cfg = configs.get(args.experiment, args.profile)
    assets.require(cfg, dataset=True)
    judge = judges.for_config(cfg, retrain=args.retrain)
    print(f"judge {judges.judge_dir(cfg)}: {judge.test_accuracy:.2%} on held-out real images")
    return 0


def do_figures(args) -> int:
    known = sorted({p for e in configs.EXPERIMENTS for p in configs.profiles(e)})
    if args.profile not in known:
        raise ConfigError(f"unknown profile {args.profile!r}; known: {known}")
    runs = {}
    for pair in args.run:
        experiment, sep, run_dir = pair.partition("=")
        if not sep or experiment not in configs.EXPERIMENTS:
            raise ConfigError(
                f"--run expects EXPERIMENT=RUN_DIR with EXPERIMENT one of {configs.EXPERIMENTS}, got {pair!r}"
            )
        runs[experiment] = Path(run_dir)
    check_writable(paths.report_dir(args.profile), folder=True)
    happened = thesis.build(args.profile, runs)
    width = max(map(len, happened))
    for file, what in happened.items():
        print(f"{file:<{width}}  {what}")
    counts = {w: sum(v.startswith(w) for v in happened.values()) for w in ("written", "up to date", "missing")}
    print(
        f"{counts['written']} written, {counts['up to date']} up to date (nothing rewritten), {counts['missing']} "
        f"missing; index: {paths.report_dir(args.profile) / 'index.md'}"
    )
    return 0


COMMANDS = {
    "train": do_train,
    "sample": do_sample,
    "judge": do_judge,
    "figures": do_figures,
    "assets": lambda args: assets.fetch(args.experiment) or 0,
    "eval": do_eval,
    "guidance": do_guidance,
    "samplers": do_samplers,
    "ema": do_ema,
    "export": do_export,
    "where": do_where,
}
