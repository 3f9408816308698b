import argparse
import sys

from . import bootstrap, gpu, latent, loader, sampling

parser = argparse.ArgumentParser(prog="python -m t2i.bench", description="benchmarks -> reports/bench/")
sub = parser.add_subparsers(dest="benchmark", required=True)
sub.add_parser("loader", help="thesis Table 2: naive / LRU / file-sequential / preprocessed loading")
sub.add_parser("latent", help="a CelebA step on the latent cache vs encoding with the VAE")
p = sub.add_parser("sampling", help="a run's default sampler vs the DDPM x 20 it replaced, N = 500 at w = 3")
p.add_argument("--run", default="runs/mnist/demo")
sub.add_parser("bootstrap", help="the guidance front's bootstrap per row: each way of FD and KID, side by side")
p = sub.add_parser("gpu", help="training step per config, precision and layout; trainer vs bare step")
p.add_argument("--experiments", nargs="+", default=list(gpu.EXPERIMENTS), choices=gpu.EXPERIMENTS)
p.add_argument("--variants", nargs="+", default=list(gpu.VARIANTS), choices=list(gpu.VARIANTS))
p.add_argument("--profile", help="config profile (default: full on a GPU; demo, else smoke, on a CPU)")
p.add_argument("--steps", type=int, help="most timed steps per cell (default: 30 on a GPU, 10 on a CPU)")
p.add_argument(
    "--cell-s",
    type=float,
    help="a cell stops timing after this long, at least 3 steps (default: 5 s on a GPU, 3 s on a CPU)",
)
p.add_argument(
    "--budget-s",
    type=float,
    default=420.0,
    help="wall-clock budget; compile cells that would not fit are reported as skipped",
)
args = parser.parse_args()
if args.benchmark == "gpu":
    gpu.run(
        experiments=args.experiments,
        variants=args.variants,
        profile=args.profile,
        steps=args.steps,
        budget_s=args.budget_s,
        cell_s=args.cell_s,
    )
elif args.benchmark == "sampling":
    sampling.run(args.run)
else:
    {"loader": loader.run, "latent": latent.run, "bootstrap": bootstrap.run}[args.benchmark]()
sys.exit(0)
