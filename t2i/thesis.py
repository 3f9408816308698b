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

import hashlib
import json
from pathlib import Path


from . import checkpoints, configs, data, paths, reports, runs
from .artefacts import (
    Artefact,
    Sources,
    bench_table,
    class_grid,
    config_table,
    digits_row,
    guidance_grid,
    loss,
    pixel_vs_latent,
    table1,
    timing,
    training_samples,
    trajectory,
)
from .errors import UserError
from .runs import CONFIG, LOSS_LOG


# A registry, one entry per thesis artefact: its fields kept on as few lines as they fit.
# fmt: off
ARTEFACTS = (
    Artefact("Figure 1", "fig01_denoising", "The iterative denoising process: from noise, the model refines the image "
             "step by step.", "2.3", "checkpoint:mnist", trajectory, "make run-mnist"),
    Artefact("Figure 2", "fig02_cfg_w5", "Generated digits 0-9 with CFG, w = 5, prompts \"A handwritten digit {0-9}\".",
             "3.2.6", "checkpoint:mnist", digits_row(5.0, "w = 5: classifier-free guidance"), "make run-mnist"),
    Artefact("Figure 3", "fig03_training_samples", "Sample images from the MNIST training set with their labels.",
             "3.2.3", "data:mnist", training_samples("mnist"), "make assets EXPERIMENTS=mnist"),
    Artefact("Figure 4", "fig04_no_guidance", "Generated digits 0-9 without guidance (w = 1).", "3.2.6",
             "checkpoint:mnist", digits_row(1.0, "w = 1: conditional, no guidance"), "make run-mnist"),
    Artefact("Figure 5", "fig05_empty_prompt", "Generation with the empty prompt, w = 5.", "3.2.6", "checkpoint:mnist",
             digits_row(5.0, 'empty prompt "" (w = 5)', empty=True), "make run-mnist"),
    Artefact("Figure 6", "fig06_loss", "Training loss curve of experiment 1.", "3.2.6", "loss:mnist", loss("mnist"),
             "make run-mnist"),
    Artefact("Figure 7", "fig07_guidance_grid", "Digits (rows) across guidance scales (columns).", "3.2.6",
             "checkpoint:mnist", guidance_grid("mnist"), "make run-mnist"),
    Artefact("Figure 8", "fig08_training_samples", "Example images from the CIFAR-10 training set.", "3.3.3",
             "data:cifar10", training_samples("cifar10"), "make assets EXPERIMENTS=cifar10"),
    *[Artefact(f"Figure {n}", f"fig{n:02d}_class_grid_w{w:g}", f"Generated CIFAR-10 images, 10 per class, w = {w:g}.",
               "3.3.7", "checkpoint:cifar10", class_grid("cifar10", w), "make run-cifar10")
      for n, w in ((9, 0.0), (10, 2.0), (11, 5.0), (12, 10.0))],
    Artefact("Figure 13", "fig13_samples_w5", "Representative CIFAR-10 samples at w = 5, four per class.", "3.3.7",
             "checkpoint:cifar10", class_grid("cifar10", 5.0, columns=4), "make run-cifar10"),
    Artefact("Figure 16", "fig16_loss", "Training loss of the CelebA latent diffusion model.", "3.5.9", "loss:celeba",
             loss("celeba"), "make run-celeba"),
    Artefact("Figure 17", "fig17_samples", "Generated 256x256 faces from attribute prompts, w = 2.", "3.5.9",
             "checkpoint:celeba", class_grid("celeba", 2.0, columns=4, title="CelebA attribute prompts"),
             "make run-celeba"),
    Artefact("Figure 18", "fig18_guidance_grid", "Effect of the guidance scale on CelebA faces: prompts (rows) x w.",
             "3.5.9", "checkpoint:celeba", guidance_grid("celeba"), "make run-celeba"),
    Artefact("Table 1", "table1_cifar10_guidance", "CIFAR-10 generation metrics across guidance scales.", "3.3.7",
             "eval:cifar10", table1, "make run-cifar10 && make eval RUN=runs/cifar10/full"),
    Artefact("Table 2", "table2_loading", "Batch loading of WikiArt-like shards (batch 16).", "3.4.3", "bench:loader",
             bench_table("loader", "Loading strategies, file-sequential streaming vs random access.",
                          {"strategy": "strategy", "ms_per_batch": "ms_per_batch", "images_per_s": "images_per_s",
                           "peak_extra_rss_mb": "peak_extra_rss_mb"}), "make bench-loader"),
    Artefact("Table 3", "table3_training_stages", "Training step by stage (WikiArt).", "3.4.7", "timing:wikiart",
             timing, "make run-wikiart ARGS='-p timing_steps 50'"),
    Artefact("Table 4", "table4_step_time", "Training step time of every config and variant on a GPU.", "3.4.7",
             "bench:gpu", bench_table("gpu", "Training step per config, precision and layout.",
                                       {"experiment": "experiment", "variant": "variant", "batch": "batch",
                                        "ms_step": "ms_step",
                                        "img_s": "img_s", "util_pct": "util_pct", "vs_bare": "vs_bare",
                                        "note": "note"}), "make bench-gpu (on a GPU node)"),
    Artefact("Table 5", "table5_configs", "Configurations of MNIST, CIFAR-10 and WikiArt.", "3.4.8", "configs",
             config_table(("mnist", "cifar10", "wikiart"), "Thesis Table 5."), "-"),
    Artefact("Table 6", "table6_pixel_vs_latent", "Pixel-space vs latent-space diffusion.", "3.5.4", "bench:latent",
             pixel_vs_latent, "make bench-latent"),
    Artefact("Table 7", "table7_configs", "Configurations of all four experiments.", "3.5.10", "configs",
             config_table(("mnist", "cifar10", "wikiart", "celeba"), "Thesis Table 7."), "-"),
    Artefact("Table 8", "table8_mnist_vs_cifar10", "MNIST vs CIFAR-10.", "4.1", "configs",
             config_table(("mnist", "cifar10"), "Thesis Table 8."), "-"),
)
# fmt: on
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
        return {"configs": _sha(json.dumps({e: configs.get(e, "full").to_dict() for e in configs.EXPERIMENTS}))}
    if kind == "bench":
        return _files(paths.bench_report(experiment))
    if kind == "eval":
        return _files(src.sweep_table(experiment))
    if kind == "timing":
        return _files(runs.timing_table(run))
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
    return {
        "run": paths.portable(run),
        "checkpoint": ckpt.name,
        "manifest_sha256": checkpoints.manifest_sha256(ckpt),
        "config_sha256": _sha((run / CONFIG).read_bytes()),
    }


def _files(path: Path) -> dict | None:
    return {"file": paths.portable(path), "sha256": _sha(path.read_bytes())} if path.exists() else None


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
            reports.write_provenance(
                path,
                **{
                    k: v
                    for k, v in record.items()
                    if k not in ("artefact", "git_commit", "created", "command", "packages", "code", "code_hash")
                },
                thesis=artefact.number,
                section=artefact.section,
                inputs=found,
            )
            happened[artefact.file] = "written"
    write_index(src, out)
    return happened


def how_to_make(artefact: Artefact, src: Sources) -> str:
    """The command that makes what an artefact reads, for this profile (or why this profile cannot have it)."""
    kind, _, experiment = artefact.reads.partition(":")
    if kind in ("checkpoint", "loss", "eval", "timing", "data") and src.profile not in configs.profiles(experiment):
        return f"{experiment} has no {src.profile} profile; the thesis run: {artefact.make}, then make figures"
    if kind in ("checkpoint", "loss", "eval", "timing") and src.profile != "full":
        run = f"make run-{experiment} PROFILE={src.profile}" if src.profile != "demo" else "make demo"
        return run + (f" && make eval RUN={paths.portable(src.runs[experiment])}" if kind == "eval" else "")
    return artefact.make


def write_index(src: Sources, out: Path) -> None:
    """``index.md`` (one row per artefact) and ``figures.tex`` (the present ones, with their captions)."""
    rows, tex = [], []  # figures.tex: what to \input into the thesis; index.md says how it was made
    for artefact in ARTEFACTS:
        state, _ = status(artefact, src, out)
        file = artefact.file + artefact.path_suffix
        record = reports.read_provenance(out / file) if state != "missing" else None
        source = ", ".join(
            f"{v}" for k, v in (record or {}).get("inputs", {}).items() if k in ("run", "checkpoint", "file")
        )
        rows.append(
            {
                "thesis": artefact.number,
                "file": file if state != "missing" else "",
                "status": state,
                "source": source or "",
                "commit": (record or {}).get("git_commit", "")[:12],
                "make": how_to_make(artefact, src) if state != "fresh" else "",
            }
        )
        if state == "missing":
            continue
        caption = reports.latex_escape(
            f"{artefact.caption} ({artefact.number} of the thesis, section {artefact.section}.)"
        )
        if artefact.is_figure:
            tex += [
                r"\begin{figure}[h]",
                r"\centering",
                rf"\includegraphics[width=\linewidth]{{{file}}}",
                rf"\caption{{{caption}}}",
                rf"\label{{fig:{artefact.file}}}",
                r"\end{figure}",
            ]
        else:
            tex.append(rf"\input{{{artefact.file}.tex}}")
    reports.write_table(
        rows,
        out / "index",
        caption=(
            f"Thesis artefacts of the {src.profile} profile (`make figures PROFILE={src.profile}`): fresh = drawn from "
            "the runs and code as they are now; stale = the run or the code changed since; missing = `make` names what "
            "makes its inputs."
        ),
    )
    (out / "figures.tex").write_text("\n".join(tex) + "\n")
