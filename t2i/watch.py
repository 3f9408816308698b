"""Watching a run while it trains (what k-diffusion's ``--demo-every`` and ``--evaluate-every`` give, and diffusers'
validation prompts): :class:`SampleGrids` and :class:`PeriodicEval`, hooks the trainer calls (:class:`t2i.train.Hook`).

Both sample from a *copy* of the UNet holding the EMA weights, with their own seeded generators, inside
``torch.random.fork_rng``: training never sees them, so a run with grids and evaluations ends with bitwise the
weights it would have without (tested), and a grid after a resume is the grid the interrupted run drew.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from . import evaluate, judges, metrics, reports, runs, tracking
from .configs import ExperimentConfig
from .files import write_atomic
from .figures import short_labels
from .pipeline import TextToImage
from .runs import EVAL_FIELDS, EVAL_LOG
from .text import TextEncoder
from .train import Hook, State
from .vae import LatentCodec


def hooks_for(cfg: ExperimentConfig, run_dir: Path, text: TextEncoder) -> tuple[Hook, ...]:
    """The watchers a config asks for (none if it asks for none)."""
    sampler = EmaSampler(cfg, text)  # one UNet copy, shared
    found: list[Hook] = []
    if cfg.sample_every_steps or cfg.sample_every_epochs:
        found.append(SampleGrids(cfg, run_dir, sampler))
    if cfg.eval_every_epochs:
        found.append(PeriodicEval(cfg, run_dir, sampler))
    return tuple(found)


class EmaSampler:
    """A pipeline over a separate UNet that gets the trainer's EMA weights (or its raw ones, without EMA) on demand."""

    def __init__(self, cfg: ExperimentConfig, text: TextEncoder):
        self.cfg, self.text, self.pipe = cfg, text, None

    def pipeline(self, state: State) -> TextToImage:
        device = state.accelerator.device
        if self.pipe is None:
            codec = LatentCodec.from_pretrained(self.cfg.vae, device=device) if self.cfg.vae is not None else None
            self.pipe = TextToImage(
                self.cfg,
                UNet2DConditionModel.from_config(state.unet.config),
                self.text,
                device=device,
                weights="raw" if state.ema is None else "ema",
                codec=codec,
            )
        target = list(self.pipe.unet.parameters())
        if state.ema is not None:
            state.ema.copy_to(target)
        else:
            for mine, theirs in zip(target, state.unet.parameters()):
                mine.data.copy_(theirs.data)
        return self.pipe


def _forked_rng(device: torch.device):
    """Every global RNG (CPU, and this CUDA device) as it was once the block ends."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


class SampleGrids:
    """A fixed grid every ``sample_every_steps`` steps and after every ``sample_every_epochs``-th epoch: the config's
    captions (rows) x ``sample_columns`` fixed seeds at ``sample_guidance_scale``, saved as
    ``samples/step-NNNNNNNN.png`` and sent to the trackers. Only training changes it from one grid to the next."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, sampler: EmaSampler):
        self.cfg, self.sampler = cfg, sampler
        self.folder = Path(run_dir) / runs.SAMPLES
        self.last_step = -1

    def after_step(self, state: State) -> None:
        every = self.cfg.sample_every_steps
        if every and state.step % every == 0:
            self.draw(state)

    def after_epoch(self, state: State) -> None:
        every = self.cfg.sample_every_epochs
        if every and state.epoch % every == 0:
            self.draw(state)

    def draw(self, state: State) -> None:
        if not state.accelerator.is_main_process or state.step == self.last_step:
            return
        cfg, columns = self.cfg, self.cfg.sample_columns
        with _forked_rng(state.accelerator.device):
            pipe = self.sampler.pipeline(state)
            prompts = [caption for caption in cfg.captions for _ in range(columns)]
            images = pipe.images(prompts, cfg.sample_guidance_scale, seed=cfg.seed, show_progress=False)
        path = self.folder / f"step-{state.step:08d}.png"
        reports.image_grid(
            images,
            path,
            nrow=columns,
            row_labels=short_labels(cfg.class_names),
            title=(
                f"{cfg.experiment}: step {state.step:,} (epoch {state.epoch + (state.step_in_epoch > 0)}), "
                f"{pipe.weights} weights, w = {cfg.sample_guidance_scale:g}, seeds "
                f"{cfg.seed}..{cfg.seed + columns - 1}\n"
                f"[{reports.GUIDANCE_CONVENTION}]"
            ),
        )
        grid = torch.stack([images[i * columns : (i + 1) * columns] for i in range(len(cfg.captions))])
        grid = grid.permute(0, 3, 1, 4, 2).flatten(0, 1).flatten(1, 2)  # rows of images -> one [H, W, C] picture
        picture = (grid.expand(-1, -1, 3) * 255).round().to(torch.uint8).numpy()
        tracking.log_image(state.accelerator, "samples", picture, state.step)
        self.last_step = state.step


class PeriodicEval:
    """Every ``eval_every_epochs`` epochs, a small guidance sweep (:func:`t2i.evaluate.sweep` at
    ``eval_guidance_scales``, ``eval_samples_per_prompt`` images per prompt) on the judge's features: adherence,
    FID and KID per w, appended to ``eval.csv`` and sent to the trackers, so a job shows whether adherence still
    rises. The judge is trained on first use (before the first evaluation)."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, sampler: EmaSampler):
        self.cfg, self.sampler = cfg, sampler
        self.path = Path(run_dir) / EVAL_LOG

    def after_step(self, state: State) -> None:
        pass

    def after_epoch(self, state: State) -> None:
        if state.epoch % self.cfg.eval_every_epochs or not state.accelerator.is_main_process:
            return
        with _forked_rng(state.accelerator.device):
            judge = judges.for_config(self.cfg).to(state.accelerator.device)
            extractor = metrics.JudgeExtractor(judge)
            rows = evaluate.sweep(
                self.sampler.pipeline(state),
                judge,
                extractor,
                self.cfg.eval_guidance_scales,
                self.cfg.eval_samples_per_prompt,
            )
        records = [
            {
                "epoch": state.epoch,
                "step": state.step,
                **{k: r[k] for k in EVAL_FIELDS[2:-1]},
                "features": extractor.name,
            }
            for r in rows
        ]
        old = [r for r in self._read() if int(r["step"]) != state.step]  # a resumed run evaluates a step again
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=EVAL_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(old + records)
        write_atomic(self.path, text.getvalue())  # a kill mid-write leaves the previous evaluations, never half a file
        for r in records[1:]:  # the first row is real-vs-real: the floor, not a measurement of the model
            w = f"{r['guidance_scale']:g}"
            state.accelerator.log(
                {f"eval/adherence_w{w}": r["adherence"], f"eval/kid_w{w}": r["kid"], f"eval/fid_w{w}": r["fid"]},
                step=state.step,
            )
        print(
            f"epoch {state.epoch} eval: "
            + ", ".join(
                f"w={r['guidance_scale']:g} adherence {r['adherence']:.3f} KID {r['kid']:.4f}" for r in records[1:]
            )
        )

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path) as f:
            return list(csv.DictReader(f))


def read_eval_log(run_dir: Path) -> list[dict]:
    """The rows of a run's ``eval.csv`` (numbers as floats, ``real`` rows kept as the string)."""
    with open(Path(run_dir) / EVAL_LOG) as f:
        rows = list(csv.DictReader(f))
    return [{k: (v if k == "features" or v == "real" else float(v)) for k, v in r.items()} for r in rows]
