"""Command line for batch jobs (SLURM, ``accelerate launch -m t2i ...``).

    python -m t2i train --experiment mnist --profile full [--run-name NAME] [--set key=value ...] [--restart]
    python -m t2i sample RUN_DIR --prompt "A handwritten digit 3" --guidance-scale 5 --samples-per-prompt 8 \
        --out grid.png
    python -m t2i eval RUN_DIR       # FID, KID, IS, adherence and CLIP score per guidance scale (what `make eval` runs)
    python -m t2i guidance RUN_DIR   # every guidance method on one fidelity / adherence front
    python -m t2i export RUN_DIR OUT # a diffusers pipeline folder with a model card
    python -m t2i where eval --run RUN_DIR   # where a command writes (the Makefile and SLURM ask this)
    python -m t2i judge --experiment mnist --profile full   # the adherence judge of that dataset and resolution
    python -m t2i assets --experiment wikiart    # on a node with internet: data and weights into the caches
    python -m t2i figures --profile demo    # every thesis figure and table the runs can feed -> reports/demo/

A mistake the user can fix (a bad setting, a missing asset, an unusable run folder) prints one line on stderr and
exits with status 1; ``--debug`` (or ``T2I_DEBUG=1``) shows the traceback. Preemption exits with 75 (requeue).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

# The studies (comparison, sampler_front, ema_front) are not imported here: each is imported where it runs, so a
# thesis figure drawn through this command line does not depend on their code (t2i.reports.code_files).
from . import commands, configs, evaluate, guidance, paths
from .arguments import finite, non_negative, png_path, positive
from .errors import UserError
from .preemption import REQUEUE_EXIT_CODE, Preempted


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return commands.COMMANDS[args.command](args)
    except Preempted as stop:
        print(f"preempted: {stop}", file=sys.stderr)
        return REQUEUE_EXIT_CODE
    except (UserError, PermissionError) as exc:
        if args.debug or os.environ.get("T2I_DEBUG") == "1":
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.ENOSPC, errno.EDQUOT) or args.debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1


def one_line(exc: BaseException) -> str:
    """The message alone: a DataLoader worker re-raises an error with its whole traceback in the message ("Caught X
    in DataLoader worker process 0. Original Traceback ..."); its last line is what the user needs."""
    text = str(exc)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m t2i", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors too (or T2I_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (or resume) a run")
    p.add_argument("--experiment", default="mnist", choices=configs.EXPERIMENTS)
    p.add_argument("--profile", default="full")
    p.add_argument("--run-name", help="runs/<experiment>/<run-name> (default: the profile name)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set epochs=5 --set p_uncond=0.1 (repeatable)",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="start the run over: its old config, checkpoints and logs move to <run>/restarted-<time>/",
    )

    p = sub.add_parser("sample", help="sample a grid of images from a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--prompt", action="append", required=True, help="repeatable: one grid row per prompt")
    p.add_argument("--guidance-scale", type=finite, default=5.0, help="w in eps_uncond + w (eps_cond - eps_uncond)")
    p.add_argument("--samples-per-prompt", type=positive, default=4, help="images per prompt (grid columns)")
    p.add_argument("--seed", type=non_negative, help="image i uses seed + i (default: the run's seed)")
    p.add_argument("--sampler", choices=configs.SAMPLERS, help="default: the run's")
    p.add_argument("--num-inference-steps", type=positive, help="default: the run's")
    p.add_argument("--timestep-spacing", choices=configs.SPACINGS, help="default: the run's")
    p.add_argument("--checkpoint", help="e.g. epoch-0010 (default: latest)")
    p.add_argument("--no-ema", action="store_true", help="sample with the raw weights instead of the EMA weights")
    _ema_length(p)
    p.add_argument("--out", type=png_path, required=True, help="the PNG file to write")
    _guidance_arguments(p)
    p.add_argument(
        "--guidance-method",
        default="cfg",
        choices=sorted(guidance.METHODS),
        help="how to guide (t2i.guidance; default: plain CFG, the thesis's)",
    )
    p.add_argument(
        "--guidance-param",
        dest="guidance_params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the method, e.g. --guidance-param phi=0.5 (default: the paper's)",
    )

    p = sub.add_parser("eval", help="FID, KID, IS, adherence and CLIP score of a trained run per guidance scale")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--guidance-scales", nargs="+", type=finite, default=[0.0, 1.0, 2.0, 3.0, 5.0, 10.0])
    p.add_argument("--samples-per-prompt", type=positive, default=50, help="images per prompt and guidance scale")
    p.add_argument("--prompts", type=positive, help="CelebA: attribute sets of held-out faces (default: 50)")
    p.add_argument("--features", default="auto", choices=evaluate.FEATURES)
    p.add_argument("--clip-model", default="auto", help='CLIP-score model ("auto": when staged; "": none)')
    _ema_length(p)
    p.add_argument("--seed", type=non_negative, help="image i uses seed + i (default: the run's seed)")
    p.add_argument("--sampler", choices=configs.SAMPLERS, help="default: the run's")
    p.add_argument("--num-inference-steps", type=positive, help="default: the run's")

    p = sub.add_parser("guidance", help="every guidance method at several strengths on one fidelity/adherence front")
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--samples-per-prompt",
        type=positive,
        help="the verdict rows' images per prompt (default: t2i.comparison.SAMPLES_PER_PROMPT, N = 500 for ten "
        "classes); the front, which calibrates their strengths, takes at most FRONT_SAMPLES_PER_PROMPT",
    )
    p.add_argument("--methods", nargs="+", choices=sorted(guidance.METHODS), help="default: all the run can use")
    p.add_argument("--strengths", nargs="+", type=finite, help="w values (default: t2i.comparison.STRENGTHS)")
    p.add_argument(
        "--features",
        default="staged",
        choices=["staged", *evaluate.FEATURES],
        help="staged: every feature space that is on disk (the judge's and a random CNN's always)",
    )
    p.add_argument(
        "--check",
        metavar="NAME",
        help="write to guidance/NAME/ a replication of the main report: other "
        "seeds, real images past its reference, verdicts compared",
    )
    p.add_argument(
        "--across",
        nargs="+",
        type=Path,
        metavar="RUN",
        help="samples nothing: reads this run's and these "
        "runs' `make guidance` reports (one recipe, other seeds) and writes on how many models each verdict "
        "holds (guidance/models.md)",
    )
    _ema_length(p)
    _guidance_arguments(p)

    p = sub.add_parser(
        "samplers", help="every sampler and spacing against a 1,000-step reference: quality vs evaluations"
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--samples-per-prompt",
        type=positive,
        help="images per prompt and point (default: t2i.sampler_front.SAMPLES_PER_PROMPT, N = 200 for ten classes)",
    )
    p.add_argument("--samplers", nargs="+", choices=configs.SAMPLERS, help="default: all")
    p.add_argument("--steps", nargs="+", type=positive, help="default: t2i.sampler_front.STEPS")
    p.add_argument("--spacings", nargs="+", choices=configs.SPACINGS, help="default: t2i.sampler_front.SPACINGS")
    p.add_argument(
        "--guidance-scales",
        nargs="+",
        type=finite,
        help="the strengths the default must match the reference at (default: t2i.sampler_front.GUIDANCE_SCALES)",
    )
    p.add_argument("--features", default="auto", choices=evaluate.FEATURES)

    p = sub.add_parser(
        "ema", help="post-hoc EMA lengths for unguided, CFG and autoguided sampling (runs with snapshots)"
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--samples-per-prompt", type=positive, help="default: t2i.ema_front.SAMPLES_PER_PROMPT")
    p.add_argument(
        "--cfg-strength", type=finite, help="default: where CFG first reaches 98%% adherence in the guidance report"
    )
    p.add_argument("--autoguidance-strength", type=finite, help="default: likewise for autoguidance")
    p.add_argument("--guide-checkpoint", help="autoguidance's weaker model, e.g. epoch-0010 (default: none)")
    p.add_argument("--features", default="auto", choices=evaluate.FEATURES)

    p = sub.add_parser("export", help="a trained run as a diffusers pipeline folder with a model card (t2i.export)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--checkpoint", help="e.g. epoch-0010 (default: the newest)")
    p.add_argument(
        "--weights",
        choices=["ema", "raw"],
        help="default: the post-hoc EMA length `make ema` chose for CFG (ema_presets.json in the run), "
        "else ema (the fixed-decay EMA)",
    )
    _ema_length(p)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT (never anything else)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the folder to this Hub repository (user/name)")
    visibility = p.add_mutually_exclusive_group()
    visibility.add_argument(
        "--private",
        dest="private",
        action="store_true",
        default=None,
        help="with --push-to-hub: create the repository private (default: the Hub's default)",
    )
    visibility.add_argument("--public", dest="private", action="store_false", help="... or public")

    p = sub.add_parser("where", help="where a run or a report is written (for the Makefile and SLURM scripts)")
    p.add_argument(
        "what",
        choices=["experiment", "run", "reports", paths.EVAL, paths.GUIDANCE, paths.SAMPLER_FRONT, paths.EMA_FRONT],
    )
    p.add_argument("--notebook", type=Path, help="experiment, run, reports: notebooks/NN_<experiment>[_*].ipynb")
    p.add_argument("--experiment", choices=configs.EXPERIMENTS, help="run, reports: instead of --notebook")
    p.add_argument("--profile", default="full")
    p.add_argument("--run-name", help="run, reports: default the profile name")
    p.add_argument("--run", type=Path, help=f"{paths.EVAL}, {paths.GUIDANCE}: a trained run's folder")

    p = sub.add_parser("judge", help="train the adherence judge of an experiment's dataset and resolution")
    p.add_argument("--experiment", default="mnist", choices=configs.EXPERIMENTS)
    p.add_argument("--profile", default="full")
    p.add_argument("--retrain", action="store_true", help="train again even if the judge exists")

    p = sub.add_parser("assets", help="download datasets and weights into the local caches (needs internet)")
    p.add_argument("--experiment", default="mnist", choices=configs.EXPERIMENTS)

    p = sub.add_parser("figures", help="draw every thesis figure and table the runs can feed into reports/<profile>/")
    p.add_argument("--profile", default="full")
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="EXPERIMENT=RUN_DIR",
        help="draw an experiment from another run than runs/<experiment>/<profile> (repeatable)",
    )
    return parser


def _ema_length(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ema-length",
        type=finite,
        metavar="SIGMA_REL",
        help="a post-hoc EMA of this relative length (EDM2's sigma_rel, e.g. 0.05), reconstructed from the "
        "run's snapshots (t2i.posthoc; runs trained with ema_snapshot_every)",
    )


def _guidance_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--guide-checkpoint", help="autoguidance's weaker model: an earlier checkpoint, e.g. epoch-0010")
    group.add_argument("--guide-run", type=Path, help="... or another run trained on the same data (a smaller model)")


if __name__ == "__main__":
    sys.exit(main())
