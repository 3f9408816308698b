"""Command line for batch jobs (SLURM, ``accelerate launch -m t2i ...``).

    python -m t2i train --experiment mnist --profile full [--run-name NAME] [--set key=value ...]
    python -m t2i sample RUN_DIR --prompt "A handwritten digit 3" --guidance 5 --n 16 --out grid.png
    python -m t2i judge --experiment mnist --profile full   # the adherence judge of that dataset and resolution
    python -m t2i assets --experiment wikiart    # on a node with internet: data and weights into the caches
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from . import configs, paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2i", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (or resume) a run")
    p.add_argument("--experiment", default="mnist", choices=sorted(configs.PROFILES))
    p.add_argument("--profile", default="full")
    p.add_argument("--run-name", help="runs/<experiment>/<run-name> (default: the profile name)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set epochs=5 --set p_uncond=0.1 (repeatable)")

    p = sub.add_parser("sample", help="sample a grid of images from a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--prompt", action="append", required=True, help="repeatable; the prompts are cycled to fill --n")
    p.add_argument("--guidance", type=float, default=5.0, help="w in eps_uncond + w (eps_cond - eps_uncond)")
    p.add_argument("--n", type=int, default=16, help="number of images")
    p.add_argument("--seed", type=int, help="image i uses seed + i (default: the run's seed)")
    p.add_argument("--sampler", choices=configs.SAMPLERS)
    p.add_argument("--steps", type=int, help="inference steps (default: the run's)")
    p.add_argument("--checkpoint", help="e.g. epoch-0010 (default: latest)")
    p.add_argument("--no-ema", action="store_true", help="sample with the raw weights instead of the EMA weights")
    p.add_argument("--out", type=Path, required=True, help="PNG path")

    p = sub.add_parser("judge", help="train the adherence judge of an experiment's dataset and resolution")
    p.add_argument("--experiment", default="mnist", choices=sorted(configs.PROFILES))
    p.add_argument("--profile", default="full")
    p.add_argument("--retrain", action="store_true", help="train again even if the judge exists")

    p = sub.add_parser("assets", help="download datasets and weights into the local caches (needs internet)")
    p.add_argument("--experiment", default="mnist", choices=sorted(configs.PROFILES))

    args = parser.parse_args(argv)
    return {"train": _train, "sample": _sample, "judge": _judge, "assets": _assets}[args.command](args)


def _train(args) -> int:
    from .preemption import REQUEUE_EXIT_CODE, Preempted
    from .train import train_experiment

    cfg = configs.get(args.experiment, args.profile, **configs.parse_overrides(args.overrides))
    try:
        run_dir = train_experiment(cfg, paths.run_dir(cfg.experiment, args.run_name or args.profile))
    except Preempted as stop:
        print(f"preempted: {stop}", file=sys.stderr)
        return REQUEUE_EXIT_CODE
    print(f"run: {run_dir}")
    return 0


def _sample(args) -> int:
    from . import reports
    from .pipeline import TextToImage

    if args.n <= 0:
        raise SystemExit("--n must be positive")
    pipe = TextToImage.from_run(args.run_dir, checkpoint=args.checkpoint, ema=False if args.no_ema else None)
    prompts = [args.prompt[i % len(args.prompt)] for i in range(args.n)]
    seed = pipe.cfg.seed if args.seed is None else args.seed
    images = pipe.images(prompts, args.guidance, seed=seed, sampler=args.sampler, num_inference_steps=args.steps)
    title = f"{' | '.join(args.prompt)}  (w={args.guidance:g})"
    reports.image_grid(images, args.out, nrow=math.ceil(math.sqrt(args.n)), title=title)
    reports.write_provenance(args.out, pipe.cfg, seed=seed, checkpoint=pipe.checkpoint, weights=pipe.weights, samples=args.n,
                             guidance_scale=args.guidance, prompts=args.prompt)
    print(f"wrote {args.out}")
    return 0


def _judge(args) -> int:
    from . import judges

    cfg = configs.get(args.experiment, args.profile)
    judge = judges.for_config(cfg, retrain=args.retrain)
    print(f"judge {judges.judge_dir(cfg)}: {judge.test_accuracy:.2%} on held-out real images")
    return 0


def _assets(args) -> int:
    """Fill the caches a compute node without internet reads: datasets under data/ (torchvision, or the parquet
    shards of a Hugging Face dataset repo), the text encoder (and VAE) in the Hugging Face cache (HF_HOME), pytorch-fid's
    Inception weights under TORCH_HOME, the CLIP-score model."""
    import torch

    from . import metrics
    from .text import TextEncoder

    cfg = configs.get(args.experiment, "full")
    root = paths.data_dir()
    if cfg.dataset == "mnist":
        from torchvision.datasets import MNIST

        for train in (True, False):
            MNIST(root, train=train, download=True)
    elif cfg.dataset == "cifar10":
        from torchvision.datasets import CIFAR10

        for train in (True, False):
            CIFAR10(root, train=train, download=True)
    for pattern in filter(None, (cfg.shards, cfg.judge_shards)):
        _download_shards(pattern)
    print(f"{cfg.dataset} in {root}")
    TextEncoder.from_pretrained(cfg.text_encoder, cfg.max_tokens)
    print(f"{cfg.text_encoder} in the Hugging Face cache")
    if cfg.vae is not None:
        from .vae import LatentCodec

        LatentCodec.from_pretrained(cfg.vae)
        print(f"{cfg.vae} in the Hugging Face cache")
    torch.hub.load_state_dict_from_url(metrics.FID_WEIGHTS_URL, progress=True)  # pytorch-fid's Inception
    print(f"FID Inception weights in {metrics.inception_weights_path()}")
    metrics.ClipScorer("openai/clip-vit-base-patch16")  # the CLIP-score model (not the conditioning one)
    print("openai/clip-vit-base-patch16 in the Hugging Face cache")
    return 0


# data/<folder>/... <- the Hugging Face dataset repo the shards come from
SHARD_REPOS = {"wikiart": "huggan/wikiart", "celeba": "flwrlabs/celeba"}


def _download_shards(pattern: str) -> None:
    """``wikiart/data/train-*.parquet`` -> the matching files of huggan/wikiart into data/wikiart/."""
    from huggingface_hub import snapshot_download

    folder, _, inside = pattern.partition("/")
    if folder not in SHARD_REPOS:
        raise SystemExit(f"no download source for {pattern!r}; known folders: {sorted(SHARD_REPOS)}")
    snapshot_download(SHARD_REPOS[folder], repo_type="dataset", allow_patterns=[inside],
                      local_dir=paths.data_dir() / folder)


if __name__ == "__main__":
    sys.exit(main())
