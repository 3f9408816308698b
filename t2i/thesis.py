"""Every figure and table of the thesis that data can make, in one registry, and `make figures`, which rebuilds them.

An :class:`Artefact` is a thesis number and caption, its section, what it reads (a run's checkpoint or loss log, a
dataset, an evaluation, a benchmark, the configs) and the function that draws it. :func:`build` draws every
artefact of a profile into ``reports/<profile>/`` as ``fig<NN>_<slug>.png`` or ``table<N>_<slug>.md/.tex/.csv``,
each with a provenance sidecar that records the hash of everything it was drawn from (inputs and code). A second
build skips what is up to date, byte for byte; an artefact whose inputs are not there is listed as missing with the
command that makes them; nothing is ever trained here. :func:`build` also writes ``index.md`` (number, file, status
fresh / stale / missing, source, commit) and ``figures.tex`` (``\\includegraphics`` / ``\\input`` with the captions).

Runs are ``runs/<experiment>/<profile>`` unless :class:`Sources` is told otherwise. Tables 5, 7 and 8 compare the
thesis's configurations with ours (the ``full`` profiles, parameters counted, never typed in) whatever the profile.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoints, configs, data, figures, paths, reports
from .configs import ExperimentConfig
from .errors import UserError
from .models import build_unet, count_parameters
from .pipeline import TextToImage
from .runs import CONFIG, LOSS_LOG, load_config


class Sources:
    """The runs, evaluations and benchmarks a profile's artefacts are drawn from; pipelines loaded once each."""

    def __init__(self, profile: str, runs: dict[str, Path] | None = None):
        self.profile = profile
        self.runs = {e: Path(runs[e]) if runs and e in runs else paths.run_dir(e, profile) for e in configs.PROFILES}
        self._pipes: dict[str, TextToImage] = {}

    def cfg(self, experiment: str) -> ExperimentConfig | None:
        """The run's config if it exists, else the profile's (None: the experiment has no such profile)."""
        if (self.runs[experiment] / CONFIG).exists():
            return load_config(self.runs[experiment])
        return configs.PROFILES[experiment].get(self.profile)

    def checkpoint(self, experiment: str) -> Path | None:
        if not (self.runs[experiment] / CONFIG).exists():
            return None
        return checkpoints.latest(self.runs[experiment])

    def pipe(self, experiment: str) -> TextToImage:
        if experiment not in self._pipes:
            self._pipes[experiment] = TextToImage.from_run(self.runs[experiment])
        return self._pipes[experiment]

    def eval_dir(self, experiment: str) -> Path:
        """Where `make eval` of the experiment's run wrote its sweep."""
        run = self.runs[experiment]
        return paths.eval_dir(run) if (run / CONFIG).exists() else paths.report_dir(self.profile, experiment, run.name) / "eval"


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
def _digits_row(w: float, title: str, empty: bool = False):
    def draw(src: Sources, path: Path) -> None:
        pipe = src.pipe("mnist")
        labels = list(pipe.cfg.class_names)
        prompts = [""] * len(labels) if empty else pipe.cfg.captions
        figures.prompt_row(pipe, prompts, w, path, labels=[""] * len(labels) if empty else labels, title=title)
    return draw


def _trajectory(src: Sources, path: Path) -> None:
    """One digit's reverse process: x_t at eight evenly spaced steps of the sampler, then x0 (thesis Figure 1)."""
    pipe = src.pipe("mnist")
    states: list[torch.Tensor] = []
    pipe.images([pipe.cfg.captions[3]], 5.0, callback=lambda i, t, x: states.append(x.detach().float().cpu()),
                show_progress=False)
    keep = sorted({round(k * (len(states) - 1) / 7) for k in range(8)})
    low, high = pipe.cfg.pixel_range
    images = ((torch.cat([states[k] for k in keep]) - low) / (high - low)).clamp(0, 1)
    steps = pipe.num_inference_steps
    reports.image_grid(images, path, nrow=len(keep), col_labels=[f"step {k + 1}/{steps}" for k in keep],
                       title=f'Denoising "{pipe.cfg.captions[3]}" ({pipe.sampler}, w = 5)\n[{reports.GUIDANCE_CONVENTION}]')
    reports.write_provenance(path, **pipe.provenance(guidance_scale=5.0, samples=1, steps_shown=[k + 1 for k in keep]))


def _training_samples(experiment: str, per_class: int = 2):
    def draw(src: Sources, path: Path) -> None:
        cfg = src.cfg(experiment)
        images, labels = data.load_images(cfg, "train", limit=2000)
        chosen = [i for k in range(len(cfg.class_names)) for i in (labels == k).nonzero().flatten()[:per_class].tolist()]
        if len(chosen) < per_class * len(cfg.class_names):
            raise UserError(f"the first 2,000 {cfg.dataset} training images lack {per_class} of some class")
        reports.image_grid(images[chosen].reshape(len(cfg.class_names), per_class, *images.shape[1:]).transpose(0, 1)
                           .flatten(0, 1), path, nrow=len(cfg.class_names),
                           col_labels=figures.short_labels(cfg.class_names, 12),
                           title=f"{cfg.dataset} training images ({cfg.resolution} px), {per_class} per class")
        reports.write_provenance(path, cfg, samples=len(chosen), split="train (first images of each class)")
    return draw


def _class_grid(experiment: str, w: float, columns: int = 10, title: str = ""):
    def draw(src: Sources, path: Path) -> None:
        figures.class_grid(src.pipe(experiment), w, path, samples_per_prompt=columns, title=title)
    return draw


def _loss(experiment: str):
    def draw(src: Sources, path: Path) -> None:
        figures.loss(src.runs[experiment], path, title=f"{experiment} training loss")
    return draw


def _guidance_grid(experiment: str):
    def draw(src: Sources, path: Path) -> None:
        pipe = src.pipe(experiment)
        figures.guidance_grid(pipe, pipe.cfg.captions, pipe.cfg.guidance_scales, path,
                              row_labels=figures.short_labels(pipe.cfg.class_names),
                              title=f"{experiment}: prompts x guidance scale")
    return draw


def _table(rows: list[dict], path: Path, caption: str, **facts) -> None:
    reports.write_table(rows, path.with_suffix(""), caption=caption)
    reports.write_provenance(path, **facts)


# Thesis values, typed in only to be shown beside ours (tables 1-8).
THESIS_TABLE1 = {0.0: (77.05, 9.10), 2.0: (56.28, 15.40), 5.0: (63.13, 15.00), 10.0: (77.19, 16.50)}  # w: FID, acc %
THESIS_PARAMETERS = {"mnist": "3,140,385 (3.2.2); ~25M (Table 5); ~3M (Table 7)", "cifar10": "~45M",
                     "wikiart": "~150M", "celeba": "~90M"}
THESIS_CONFIGS = {  # Table 5 / Table 7 as printed (Table 5's MNIST batch and lr contradict 3.2.4; README)
    "mnist": {"resolution": "28x28", "batch_size": "256 (T5) / 512 (T7)", "learning_rate": "1e-4 (T5) / 1e-3 (T7)",
              "epochs": "20"},
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
    return [{"aspect": name, **{k: v for e in experiments for k, v in
                                ((e, value(cfgs[e])), (f"{e} (thesis)", thesis[e].get(name, "")))}}
            for name, value in aspects.items()]


def _config_table(experiments: tuple[str, ...], caption: str):
    def draw(src: Sources, path: Path) -> None:
        _table(config_rows(experiments), path, caption + " Ours: the `full` profiles of t2i.configs, "
                      "parameters counted from the built UNet; '(thesis)': as the thesis prints them.",
                      configs={e: configs.get(e, "full").to_dict() for e in experiments})
    return draw


def _table1(src: Sources, path: Path) -> None:
    sweep = src.eval_dir("cifar10") / "sweep.csv"
    with open(sweep) as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        w = None if r["guidance_scale"] == "real" else float(r["guidance_scale"])
        fid, acc = THESIS_TABLE1.get(w, ("", ""))
        out.append({"guidance_scale": r["guidance_scale"], "fid": float(r["fid"]), "kid": float(r["kid"]),
                    "adherence": float(r["adherence"]), "samples": int(r["samples"]), "thesis_fid": fid,
                    "thesis_accuracy_pct": acc})
    _table(out, path, f"CIFAR-10 generation metrics across guidance scales, N = {out[0]['samples']} images per "
                  "row; 'real' compares two disjoint real sets (the floor at this N). Adherence: our CIFAR-10 judge's "
                  "accuracy on the prompted class (the thesis's 'accuracy' came from an ImageNet ResNet-18 never "
                  f"trained on CIFAR-10). Source: {reports._portable(sweep)}. Guidance: {reports.GUIDANCE_CONVENTION}.",
                  source=sweep)


def _bench_table(name: str, caption: str, columns: dict[str, str]):
    def draw(src: Sources, path: Path) -> None:
        source = paths.bench_report(name)
        with open(source) as f:
            rows = [{new: _number(r[old]) for old, new in columns.items()} for r in csv.DictReader(f)]
        bench = reports.read_provenance(source.with_suffix(".md")) or {}
        _table(rows, path, f"{caption} Measured by `make bench-{name}` at {bench.get('git_commit', '?')[:7]} "
                      f"({reports._portable(source)}).", source=source)
    return draw


def _timing(src: Sources, path: Path) -> None:
    source = src.runs["wikiart"] / "timing.csv"
    with open(source) as f:
        rows = [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]
    _table(rows, path, "WikiArt training step by stage (timing_steps of the run; thesis: data loading 70.4%, "
                  f"forward 10.3%, backward 15.4% at batch 16). Source: {reports._portable(source)}.", source=source)


def _pixel_vs_latent(src: Sources, path: Path) -> None:
    latent, pixel = configs.get("celeba", "full"), configs.get("wikiart", "full")
    rows = [{"aspect": "training resolution", "pixel (WikiArt)": f"{pixel.resolution}x{pixel.resolution}",
             "latent (CelebA)": "x".join(map(str, latent.model_shape))},
            {"aspect": "output resolution", "pixel (WikiArt)": f"{pixel.resolution}x{pixel.resolution}",
             "latent (CelebA)": f"{latent.resolution}x{latent.resolution}"},
            {"aspect": "UNet input channels", "pixel (WikiArt)": str(pixel.channels),
             "latent (CelebA)": str(latent.latent_channels)},
            {"aspect": "additional models", "pixel (WikiArt)": "none", "latent (CelebA)": f"{latent.vae} (frozen)"}]
    source = paths.reports_dir() / "bench" / "latent.csv"
    with open(source) as f:
        bench = list(csv.DictReader(f))
    rows.append({"aspect": "training step, cache vs VAE every step", "pixel (WikiArt)": "",
                 "latent (CelebA)": f"{float(bench[0]['speedup']):.1f}x faster from the cache"})
    _table(rows, path, "Pixel-space vs latent-space diffusion, from the full configs; the speed-up of reading the "
                  f"latent cache is `make bench-latent` ({reports._portable(source)}).", source=source)


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


ARTEFACTS = (
    Artefact("Figure 1", "fig01_denoising", "The iterative denoising process: from noise, the model refines the image "
             "step by step.", "2.3", "checkpoint:mnist", _trajectory, "make run-mnist"),
    Artefact("Figure 2", "fig02_cfg_w5", "Generated digits 0-9 with CFG, w = 5, prompts \"A handwritten digit {0-9}\".",
             "3.2.6", "checkpoint:mnist", _digits_row(5.0, "w = 5: classifier-free guidance"), "make run-mnist"),
    Artefact("Figure 3", "fig03_training_samples", "Sample images from the MNIST training set with their labels.",
             "3.2.3", "data:mnist", _training_samples("mnist"), "make assets EXPERIMENTS=mnist"),
    Artefact("Figure 4", "fig04_no_guidance", "Generated digits 0-9 without guidance (w = 1).", "3.2.6",
             "checkpoint:mnist", _digits_row(1.0, "w = 1: conditional, no guidance"), "make run-mnist"),
    Artefact("Figure 5", "fig05_empty_prompt", "Generation with the empty prompt, w = 5.", "3.2.6", "checkpoint:mnist",
             _digits_row(5.0, 'empty prompt "" (w = 5)', empty=True), "make run-mnist"),
    Artefact("Figure 6", "fig06_loss", "Training loss curve of experiment 1.", "3.2.6", "loss:mnist", _loss("mnist"),
             "make run-mnist"),
    Artefact("Figure 7", "fig07_guidance_grid", "Digits (rows) across guidance scales (columns).", "3.2.6",
             "checkpoint:mnist", _guidance_grid("mnist"), "make run-mnist"),
    Artefact("Figure 8", "fig08_training_samples", "Example images from the CIFAR-10 training set.", "3.3.3",
             "data:cifar10", _training_samples("cifar10"), "make assets EXPERIMENTS=cifar10"),
    *[Artefact(f"Figure {n}", f"fig{n:02d}_class_grid_w{w:g}", f"Generated CIFAR-10 images, 10 per class, w = {w:g}.",
               "3.3.7", "checkpoint:cifar10", _class_grid("cifar10", w), "make run-cifar10")
      for n, w in ((9, 0.0), (10, 2.0), (11, 5.0), (12, 10.0))],
    Artefact("Figure 13", "fig13_samples_w5", "Representative CIFAR-10 samples at w = 5, four per class.", "3.3.7",
             "checkpoint:cifar10", _class_grid("cifar10", 5.0, columns=4), "make run-cifar10"),
    Artefact("Figure 16", "fig16_loss", "Training loss of the CelebA latent diffusion model.", "3.5.9", "loss:celeba",
             _loss("celeba"), "make run-celeba"),
    Artefact("Figure 17", "fig17_samples", "Generated 256x256 faces from attribute prompts, w = 2.", "3.5.9",
             "checkpoint:celeba", _class_grid("celeba", 2.0, columns=4, title="CelebA attribute prompts"),
             "make run-celeba"),
    Artefact("Figure 18", "fig18_guidance_grid", "Effect of the guidance scale on CelebA faces: prompts (rows) x w.",
             "3.5.9", "checkpoint:celeba", _guidance_grid("celeba"), "make run-celeba"),
    Artefact("Table 1", "table1_cifar10_guidance", "CIFAR-10 generation metrics across guidance scales.", "3.3.7",
             "eval:cifar10", _table1, "make run-cifar10 && make eval RUN=runs/cifar10/full"),
    Artefact("Table 2", "table2_loading", "Batch loading of WikiArt-like shards (batch 16).", "3.4.3", "bench:loader",
             _bench_table("loader", "Loading strategies, file-sequential streaming vs random access.",
                          {"strategy": "strategy", "ms_per_batch": "ms_per_batch", "images_per_s": "images_per_s",
                           "peak_extra_rss_mb": "peak_extra_rss_mb"}), "make bench-loader"),
    Artefact("Table 3", "table3_training_stages", "Training step by stage (WikiArt).", "3.4.7", "timing:wikiart",
             _timing, "make run-wikiart ARGS='-p timing_steps 50'"),
    Artefact("Table 4", "table4_step_time", "Training step time of every config and variant on a GPU.", "3.4.7",
             "bench:gpu", _bench_table("gpu", "Training step per config, precision and layout.",
                                       {"experiment": "experiment", "variant": "variant", "batch": "batch", "ms_step": "ms_step",
                                        "img_s": "img_s", "util_pct": "util_pct", "vs_bare": "vs_bare",
                                        "note": "note"}), "make bench-gpu (on a GPU node)"),
    Artefact("Table 5", "table5_configs", "Configurations of MNIST, CIFAR-10 and WikiArt.", "3.4.8", "configs",
             _config_table(("mnist", "cifar10", "wikiart"), "Thesis Table 5."), "-"),
    Artefact("Table 6", "table6_pixel_vs_latent", "Pixel-space vs latent-space diffusion.", "3.5.4", "bench:latent",
             _pixel_vs_latent, "make bench-latent"),
    Artefact("Table 7", "table7_configs", "Configurations of all four experiments.", "3.5.10", "configs",
             _config_table(("mnist", "cifar10", "wikiart", "celeba"), "Thesis Table 7."), "-"),
    Artefact("Table 8", "table8_mnist_vs_cifar10", "MNIST vs CIFAR-10.", "4.1", "configs",
             _config_table(("mnist", "cifar10"), "Thesis Table 8."), "-"),
)
BY_FILE = {a.file: a for a in ARTEFACTS}


def draw(file: str, src: Sources, out: Path) -> Path:
    """Draw one artefact into ``out`` (a notebook's report folder), with its provenance; returns the figure or the
    table's markdown."""
    artefact = BY_FILE[file]
    path = Path(out) / (artefact.file + artefact.path_suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    artefact.draw(src, path)
    return path


# --- building ---------------------------------------------------------------------------------------------------
def inputs(artefact: Artefact, src: Sources) -> dict | None:
    """What the artefact is drawn from, with content hashes (None: not there yet). With the code's hash, this is what
    makes an artefact fresh or stale."""
    kind, _, experiment = artefact.reads.partition(":")
    run = src.runs.get(experiment)
    if kind == "configs":
        return {"configs": _sha(json.dumps({e: configs.get(e, "full").to_dict() for e in configs.PROFILES}))}
    if kind == "bench":
        return _files(paths.bench_report(experiment))
    if kind == "eval":
        return _files(src.eval_dir(experiment) / "sweep.csv")
    if kind == "timing":
        return _files(run / "timing.csv")
    if kind == "loss":
        return _files(run / LOSS_LOG)
    if kind == "data":
        cfg = src.cfg(experiment)
        if cfg is None or data.spec(cfg).missing(cfg):
            return None
        return {"data": f"{cfg.dataset} train split at {cfg.resolution} px", "config": _sha(cfg.to_json())}
    ckpt = src.checkpoint(experiment)
    if ckpt is None:
        return None
    return {"run": reports._portable(run), "checkpoint": ckpt.name,
            "manifest_sha256": _sha((ckpt / checkpoints.MANIFEST).read_bytes()),
            "config_sha256": _sha((run / CONFIG).read_bytes())}


def _files(path: Path) -> dict | None:
    return {"file": reports._portable(path), "sha256": _sha(path.read_bytes())} if path.exists() else None


def _sha(content: bytes | str) -> str:
    return hashlib.sha256(content if isinstance(content, bytes) else content.encode()).hexdigest()


def status(artefact: Artefact, src: Sources, out: Path) -> tuple[str, dict | None]:
    """``fresh``, ``stale`` (drawn from other inputs or code than there are now), ``missing`` (not drawn, or its
    inputs are not there), and the current inputs."""
    found = inputs(artefact, src)
    target = out / (artefact.file + artefact.path_suffix)
    recorded = reports.read_provenance(target) if target.exists() else None
    if recorded is None:
        return "missing", found
    if found is None or recorded.get("inputs") != found or reports.changed_code(recorded):
        return "stale", found
    return "fresh", found


def build(profile: str = "full", runs: dict[str, Path] | None = None, only: list[str] | None = None) -> dict[str, str]:
    """Draw every artefact whose inputs exist and that is not fresh; write the index. Returns {file: what happened}."""
    src, out = Sources(profile, runs), paths.report_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    happened = {}
    for artefact in ARTEFACTS:
        if only and artefact.file not in only:
            continue
        state, found = status(artefact, src, out)
        if state == "fresh":
            happened[artefact.file] = "up to date"
        elif found is None:
            happened[artefact.file] = f"missing: {how_to_make(artefact, src)}"
        else:
            path = out / (artefact.file + artefact.path_suffix)
            try:
                artefact.draw(src, path)
            except (UserError, FileNotFoundError) as exc:  # a run that cannot be loaded: say why, draw the rest
                happened[artefact.file] = f"missing: {' '.join(str(exc).split())[:160]}"
                continue
            record = reports.read_provenance(path) or {}
            reports.write_provenance(path, **{k: v for k, v in record.items() if k not in (
                "artefact", "git_commit", "created", "command", "packages", "code")},
                thesis=artefact.number, section=artefact.section, inputs=found)
            happened[artefact.file] = "written"
    write_index(src, out)
    return happened


def how_to_make(artefact: Artefact, src: Sources) -> str:
    """The command that makes what an artefact reads, for this profile (or why this profile cannot have it)."""
    kind, _, experiment = artefact.reads.partition(":")
    if kind in ("checkpoint", "loss", "eval", "timing", "data") and src.profile not in configs.PROFILES[experiment]:
        return f"{experiment} has no {src.profile} profile; the thesis run: {artefact.make}, then make figures"
    if kind in ("checkpoint", "loss", "eval", "timing") and src.profile != "full":
        run = f"make run-{experiment} PROFILE={src.profile}" if src.profile != "demo" else "make demo"
        return run + (f" && make eval RUN={reports._portable(src.runs[experiment])}" if kind == "eval" else "")
    return artefact.make


def write_index(src: Sources, out: Path) -> None:
    """``index.md`` (one row per artefact) and ``figures.tex`` (the present ones, with their captions)."""
    rows, tex = [], []  # figures.tex: what to \input into the thesis; index.md says how it was made
    for artefact in ARTEFACTS:
        state, _ = status(artefact, src, out)
        file = artefact.file + artefact.path_suffix
        record = reports.read_provenance(out / file) if state != "missing" else None
        source = ", ".join(f"{v}" for k, v in (record or {}).get("inputs", {}).items() if k in ("run", "checkpoint", "file"))
        rows.append({"thesis": artefact.number, "file": file if state != "missing" else "", "status": state,
                     "source": source or "", "commit": (record or {}).get("git_commit", "")[:12],
                     "make": how_to_make(artefact, src) if state != "fresh" else ""})
        if state == "missing":
            continue
        caption = reports.latex_escape(f"{artefact.caption} ({artefact.number} of the thesis, section {artefact.section}.)")
        if artefact.is_figure:
            tex += [r"\begin{figure}[h]", r"\centering", rf"\includegraphics[width=\linewidth]{{{file}}}",
                    rf"\caption{{{caption}}}", rf"\label{{fig:{artefact.file}}}", r"\end{figure}"]
        else:
            tex.append(rf"\input{{{artefact.file}.tex}}")
    reports.write_table(rows, out / "index", caption=(
        f"Thesis artefacts of the {src.profile} profile (`make figures PROFILE={src.profile}`): fresh = drawn from the "
        "runs and code as they are now; stale = the run or the code changed since; missing = `make` names what "
        "makes its inputs."))
    (out / "figures.tex").write_text("\n".join(tex) + "\n")
