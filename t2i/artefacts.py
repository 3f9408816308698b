"""What a thesis artefact is (:class:`Artefact`), where its inputs come from (:class:`Sources`: the runs of a profile),
and how each figure and table is drawn. The registry of them all, and `make figures`, are :mod:`t2i.thesis`."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoints, configs, data, figures, paths, reports, runs
from .configs import ExperimentConfig
from .errors import UserError
from .models import build_unet, count_parameters
from .pipeline import TextToImage
from .sampling import THESIS, Sampler
from .runs import CONFIG, load_config


class Sources:
    """The runs, evaluations and benchmarks a profile's artefacts are drawn from; pipelines loaded once each and
    sampled with the thesis's sampler (:data:`t2i.sampling.THESIS`, DDPM x 50), whatever a run's default is."""

    def __init__(self, profile: str, runs: dict[str, Path] | None = None, sampler: Sampler | None = THESIS):
        self.profile, self.sampler = profile, sampler
        self.runs = {e: Path(runs[e]) if runs and e in runs else paths.run_dir(e, profile) for e in configs.EXPERIMENTS}
        self._pipes: dict[Path, TextToImage] = {}

    def cfg(self, experiment: str) -> ExperimentConfig | None:
        """The run's config if it exists, else the profile's (None: the experiment has no such profile)."""
        if (self.runs[experiment] / CONFIG).exists():
            return load_config(self.runs[experiment])
        return configs.profiles(experiment).get(self.profile)

    def checkpoint(self, experiment: str) -> Path | None:
        if not (self.runs[experiment] / CONFIG).exists():
            return None
        return checkpoints.latest(self.runs[experiment])

    def pipe(self, experiment: str) -> TextToImage:
        """The experiment's run as a pipeline, loaded once per run folder."""
        run = self.runs[experiment]
        if run not in self._pipes:
            pipe = TextToImage.from_run(run)
            self._pipes[run] = pipe.with_sampler(self.sampler) if self.sampler else pipe
        return self._pipes[run]

    def sweep_table(self, experiment: str) -> Path:
        """The CSV of the `make eval` sweep of the experiment's run."""
        run = self.runs[experiment]
        if (run / CONFIG).exists():
            return paths.sweep_table(run)
        return paths.report_dir(self.profile, experiment, run.name) / paths.EVAL / f"{paths.SWEEP}.csv"


@dataclass(frozen=True)
class Artefact:
    number: str  # "Figure 2", "Table 5"
    file: str  # "fig02_cfg_w5": the name in reports/<profile>/ (.png for figures, .md/.csv/.tex for tables)
    caption: str  # the thesis's caption (ours where the thesis has none)
    section: str  # where the thesis shows it
    reads: str  # "checkpoint:mnist", "loss:celeba", "data:cifar10", "eval:cifar10", "bench:loader", "timing:wikiart",
    #             "configs"
    draw: Callable[[Sources, Path], None]  # writes the artefact (and its provenance) at the path it is given
    make: str  # the command that makes what it reads

    @property
    def is_figure(self) -> bool:
        return self.file.startswith("fig")

    @property
    def path_suffix(self) -> str:
        return ".png" if self.is_figure else ".md"


# --- drawing ----------------------------------------------------------------------------------------------------
def digits_row(w: float, title: str, empty: bool = False):
    def draw(src: Sources, path: Path) -> None:
        pipe = src.pipe("mnist")
        labels = list(pipe.cfg.class_names)
        prompts = [""] * len(labels) if empty else pipe.cfg.captions
        figures.prompt_row(pipe, prompts, w, path, labels=[""] * len(labels) if empty else labels, title=title)

    return draw


def trajectory(src: Sources, path: Path) -> None:
    """One digit's reverse process: x_t at eight evenly spaced steps of the sampler, then x0 (thesis Figure 1)."""
    pipe = src.pipe("mnist")
    states: list[torch.Tensor] = []
    pipe.images(
        [pipe.cfg.captions[3]],
        5.0,
        callback=lambda i, t, x: states.append(x.detach().float().cpu()),
        show_progress=False,
    )
    keep = sorted({round(k * (len(states) - 1) / 7) for k in range(8)})
    low, high = pipe.cfg.pixel_range
    images = ((torch.cat([states[k] for k in keep]) - low) / (high - low)).clamp(0, 1)
    steps = pipe.num_inference_steps
    reports.image_grid(
        images,
        path,
        nrow=len(keep),
        col_labels=[f"step {k + 1}/{steps}" for k in keep],
        title=f'Denoising "{pipe.cfg.captions[3]}" ({pipe.sampler}, w = 5)\n[{reports.GUIDANCE_CONVENTION}]',
    )
    reports.write_provenance(path, **pipe.provenance(guidance_scale=5.0, samples=1, steps_shown=[k + 1 for k in keep]))


def training_samples(experiment: str, per_class: int = 2):
    def draw(src: Sources, path: Path) -> None:
        cfg = src.cfg(experiment)
        images, labels = data.load_images(cfg, "train", limit=2000)
        chosen = [
            i for k in range(len(cfg.class_names)) for i in (labels == k).nonzero().flatten()[:per_class].tolist()
        ]
        if len(chosen) < per_class * len(cfg.class_names):
            raise UserError(f"the first 2,000 {cfg.dataset} training images lack {per_class} of some class")
        reports.image_grid(
            images[chosen].reshape(len(cfg.class_names), per_class, *images.shape[1:]).transpose(0, 1).flatten(0, 1),
            path,
            nrow=len(cfg.class_names),
            col_labels=figures.short_labels(cfg.class_names, 12),
            title=f"{cfg.dataset} training images ({cfg.resolution} px), {per_class} per class",
        )
        reports.write_provenance(path, cfg, samples=len(chosen), split="train (first images of each class)")

    return draw


def class_grid(experiment: str, w: float, columns: int = 10, title: str = ""):
    def draw(src: Sources, path: Path) -> None:
        figures.class_grid(src.pipe(experiment), w, path, samples_per_prompt=columns, title=title)

    return draw


def loss(experiment: str):
    def draw(src: Sources, path: Path) -> None:
        figures.loss(src.runs[experiment], path, title=f"{experiment} training loss")

    return draw


def guidance_grid(experiment: str):
    def draw(src: Sources, path: Path) -> None:
        pipe = src.pipe(experiment)
        figures.guidance_grid(
            pipe,
            pipe.cfg.captions,
            pipe.cfg.guidance_scales,
            path,
            row_labels=figures.short_labels(pipe.cfg.class_names),
            title=f"{experiment}: prompts x guidance scale",
        )

    return draw


def _table(rows: list[dict], path: Path, caption: str, **facts) -> None:
    reports.write_table(rows, path.with_suffix(""), caption=caption)
    reports.write_provenance(path, **facts)


# Thesis values, typed in only to be shown beside ours (tables 1-8).
THESIS_TABLE1 = {0.0: (77.05, 9.10), 2.0: (56.28, 15.40), 5.0: (63.13, 15.00), 10.0: (77.19, 16.50)}  # w: FID, acc %
THESIS_PARAMETERS = {
    "mnist": "3,140,385 (3.2.2); ~25M (Table 5); ~3M (Table 7)",
    "cifar10": "~45M",
    "wikiart": "~150M",
    "celeba": "~90M",
}
THESIS_CONFIGS = {  # Table 5 / Table 7 as printed (Table 5's MNIST batch and lr contradict 3.2.4; README)
    "mnist": {
        "resolution": "28x28",
        "batch_size": "256 (T5) / 512 (T7)",
        "learning_rate": "1e-4 (T5) / 1e-3 (T7)",
        "epochs": "20",
    },
    "cifar10": {"resolution": "32x32", "batch_size": "128", "learning_rate": "1e-4", "epochs": "50"},
    "wikiart": {"resolution": "128x128", "batch_size": "64", "learning_rate": "1e-5", "epochs": "100"},
    "celeba": {"resolution": "256x256", "batch_size": "128", "learning_rate": "1e-5", "epochs": "500"},
}


def config_rows(experiments: tuple[str, ...]) -> list[dict]:
    """Aspects (rows) x experiments (columns: ours from the ``full`` configs, and the thesis's)."""
    cfgs = {e: configs.get(e, "full") for e in experiments}
    params = {}
    for e, cfg in cfgs.items():
        with torch.device("meta"):  # shapes only
            params[e] = count_parameters(build_unet(cfg))
    aspects = {
        "resolution": lambda c: f"{c.resolution}x{c.resolution}",
        "channels": lambda c: str(c.channels),
        "diffusion space": lambda c: "latent " + "x".join(map(str, c.model_shape)) if c.vae else "pixel",
        "classes / attributes": lambda c: "40 attributes" if c.dataset == "celeba" else f"{len(c.class_names)} classes",
        "U-Net levels": lambda c: str(len(c.block_out_channels)),
        "U-Net parameters": lambda c: f"{params[c.experiment]:,}",
        "batch_size": lambda c: str(c.batch_size),
        "learning_rate": lambda c: f"{c.learning_rate:g}",
        "epochs": lambda c: str(c.epochs),
        "p_uncond": lambda c: f"{c.p_uncond:g}",
        "caption": lambda c: "attribute-based (3.5.3)" if c.dataset == "celeba" else c.caption_template.format("{}"),
    }
    thesis = {**{e: {**THESIS_CONFIGS[e], "U-Net parameters": THESIS_PARAMETERS[e]} for e in experiments}}
    return [
        {
            "aspect": name,
            **{k: v for e in experiments for k, v in ((e, value(cfgs[e])), (f"{e} (thesis)", thesis[e].get(name, "")))},
        }
        for name, value in aspects.items()
    ]


def config_table(experiments: tuple[str, ...], caption: str):
    def draw(src: Sources, path: Path) -> None:
        _table(
            config_rows(experiments),
            path,
            caption + " Ours: the `full` profiles of t2i.configs, "
            "parameters counted from the built UNet; '(thesis)': as the thesis prints them.",
            configs={e: configs.get(e, "full").to_dict() for e in experiments},
        )

    return draw


def table1(src: Sources, path: Path) -> None:
    sweep = src.sweep_table("cifar10")
    with open(sweep) as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        w = None if r["guidance_scale"] == "real" else float(r["guidance_scale"])
        fid, acc = THESIS_TABLE1.get(w, ("", ""))
        out.append(
            {
                "guidance_scale": r["guidance_scale"],
                "fid": float(r["fid"]),
                "kid": float(r["kid"]),
                "adherence": float(r["adherence"]),
                "samples": int(r["samples"]),
                "thesis_fid": fid,
                "thesis_accuracy_pct": acc,
            }
        )
    _table(
        out,
        path,
        f"CIFAR-10 generation metrics across guidance scales, N = {out[0]['samples']} images per "
        "row; 'real' compares two disjoint real sets (the floor at this N). Adherence: our CIFAR-10 judge's "
        "accuracy on the prompted class (the thesis's 'accuracy' came from an ImageNet ResNet-18 never "
        f"trained on CIFAR-10). Source: {paths.portable(sweep)}. Guidance: {reports.GUIDANCE_CONVENTION}.",
        source=sweep,
    )


def bench_table(name: str, caption: str, columns: dict[str, str]):
    def draw(src: Sources, path: Path) -> None:
        source = paths.bench_report(name)
        with open(source) as f:
            rows = [{new: _number(r[old]) for old, new in columns.items()} for r in csv.DictReader(f)]
        bench = reports.read_provenance(source.with_suffix(".md")) or {}
        _table(
            rows,
            path,
            f"{caption} Measured by `make bench-{name}` at {bench.get('git_commit', '?')[:7]} "
            f"({paths.portable(source)}).",
            source=source,
        )

    return draw


def timing(src: Sources, path: Path) -> None:
    source = runs.timing_table(src.runs["wikiart"])
    with open(source) as f:
        rows = [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]
    _table(
        rows,
        path,
        "WikiArt training step by stage (timing_steps of the run; thesis: data loading 70.4%, "
        f"forward 10.3%, backward 15.4% at batch 16). Source: {paths.portable(source)}.",
        source=source,
    )


def pixel_vs_latent(src: Sources, path: Path) -> None:
    latent, pixel = configs.get("celeba", "full"), configs.get("wikiart", "full")
    rows = [
        {
            "aspect": "training resolution",
            "pixel (WikiArt)": f"{pixel.resolution}x{pixel.resolution}",
            "latent (CelebA)": "x".join(map(str, latent.model_shape)),
        },
        {
            "aspect": "output resolution",
            "pixel (WikiArt)": f"{pixel.resolution}x{pixel.resolution}",
            "latent (CelebA)": f"{latent.resolution}x{latent.resolution}",
        },
        {
            "aspect": "UNet input channels",
            "pixel (WikiArt)": str(pixel.channels),
            "latent (CelebA)": str(latent.latent_channels),
        },
        {"aspect": "additional models", "pixel (WikiArt)": "none", "latent (CelebA)": f"{latent.vae} (frozen)"},
    ]
    source = paths.reports_dir() / "bench" / "latent.csv"
    with open(source) as f:
        bench = list(csv.DictReader(f))
    rows.append(
        {
            "aspect": "training step, cache vs VAE every step",
            "pixel (WikiArt)": "",
            "latent (CelebA)": f"{float(bench[0]['speedup']):.1f}x faster from the cache",
        }
    )
    _table(
        rows,
        path,
        "Pixel-space vs latent-space diffusion, from the full configs; the speed-up of reading the "
        f"latent cache is `make bench-latent` ({paths.portable(source)}).",
        source=source,
    )


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text
