"""One run from setup to report: :class:`Run`, which the notebooks, the command line, ``eval``, ``guidance`` and
``export`` all take, so a run is named once and every folder follows from it.

``setup(name, profile, run_name, **overrides)`` makes the run a notebook trains; ``Run.open(run_dir)`` is a trained
run, as its folder records it. A run knows its config, its folder (``runs/<experiment>/<run>/``, :mod:`t2i.runs`) and
its report folder (``reports/<profile>/<experiment>/<run>/``, :mod:`t2i.paths`); its methods are the steps every
experiment shares: train, draw a thesis figure, measure adherence, evaluate, compare guidance methods.

:meth:`Run.train` is where a run is assembled: the dataset's module (:func:`t2i.data.spec`) gives the training
examples and the conditioner, :mod:`t2i.objectives` the loss, :mod:`t2i.watch` what watches it, :mod:`t2i.train` the
loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from . import configs, data, evaluate, judges, objectives, paths, runs, thesis, watch
from .configs import ExperimentConfig
from .errors import ConfigError
from .files import check_writable
from .models import check_text_width, count_parameters
from .pipeline import TextToImage, load_guide
from .text import TextEncoder
from .train import fit


def setup(experiment: str, profile: str, run_name: str = "", **overrides) -> "Run":
    """The run a notebook trains: ``experiment``'s config in ``profile`` with ``overrides`` (``None`` = the profile's
    value), in ``runs/<experiment>/<run_name or profile>``."""
    cfg = configs.get(experiment, profile, **overrides)
    run = Run(cfg, paths.run_dir(cfg.experiment, run_name or profile))
    print(f"run: {run.dir}\nreports: {run.reports}")
    print(cfg.to_json())
    return run


def train(cfg: ExperimentConfig, run_dir: Path, restart: bool = False) -> Path:
    """Train (or resume) ``cfg`` in ``run_dir`` (:meth:`Run.train`); returns the run folder."""
    return Run(cfg, run_dir).train(restart=restart)


class Run:
    """A run: its config, its folder and its report folder, and the steps every experiment shares."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path):
        self.cfg, self.dir = cfg, Path(run_dir)
        self.reports = paths.report_dir(cfg.profile, cfg.experiment, self.dir.name)

    @classmethod
    def open(cls, run_dir: Path) -> "Run":
        """A run that exists, under the config it was trained with (its ``config.json``)."""
        run_dir = paths.ROOT / run_dir  # relative folders are taken from the project root (notebooks, SLURM)
        return cls(runs.load_config(run_dir), run_dir)

    def __repr__(self) -> str:
        return f"Run({self.cfg.experiment}/{self.dir.name}, profile {self.cfg.profile})"

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def eval_dir(self) -> Path:
        return self.reports / paths.EVAL

    @property
    def guidance_dir(self) -> Path:
        return self.reports / paths.GUIDANCE

    @property
    def samplers_dir(self) -> Path:
        return self.reports / paths.SAMPLER_FRONT

    @property
    def ema_dir(self) -> Path:
        return self.reports / paths.EMA_FRONT

    # --- training -----------------------------------------------------------------------------------------------
    def train(self, restart: bool = False) -> Path:
        """Train (or resume) the run: the frozen text encoder, the dataset's conditioner and training examples, the
        objective, what watches the run (:mod:`t2i.watch`), then :func:`t2i.train.fit`. Class captions are encoded
        once; CelebA's data workers draw and tokenise a fresh caption per image and epoch, and its conditioner keeps
        the encoder to embed them in the step."""
        cfg, spec = self.cfg, data.spec(self.cfg)
        check_periodic_eval(cfg)
        text = TextEncoder.from_pretrained(cfg.text_encoder, cfg.max_tokens)
        check_text_width(cfg, text.hidden_size)
        conditioner = spec.conditioner(cfg, text)
        objective = objectives.for_config(cfg, conditioner)
        hooks = watch.hooks_for(cfg, self.dir, text)  # sample grids and evaluations while training, if asked for
        del text  # only the conditioner's and the hooks' references remain, if they need one
        dataset = spec.training_set(
            cfg,
            log_dir=self.dir / runs.BAD_SAMPLE_LOGS,  # builds the latent cache first
            transform=conditioner.example_transform,
        )
        return fit(cfg, self.dir, dataset, objective, restart=restart, hooks=hooks)

    def timed(self) -> bool:
        """Did the run time the stages of its first steps (``timing_steps``; thesis Table 3)?"""
        return runs.timing_table(self.dir).exists()

    def bad_samples(self) -> str:
        """The rows its data streams skipped (``bad_samples.csv``), or a line saying there were none."""
        path = self.dir / runs.BAD_SAMPLES
        return path.read_text() if path.exists() else "no rows were skipped"

    # --- sampling and figures -------------------------------------------------------------------------------------
    @cached_property
    def sources(self) -> thesis.Sources:
        """Every thesis artefact drawn by this run comes from this run, whichever experiment the thesis drew it for
        (a new experiment's notebook draws Figure 6 from its own loss log, not MNIST's), sampled as the thesis did."""
        return thesis.Sources(self.cfg.profile, {e: self.dir for e in configs.EXPERIMENTS})

    @cached_property
    def pipe(self) -> TextToImage:
        """The run's newest checkpoint as prompts -> images with the run's sampler, loaded once: the post-hoc EMA length
        `make ema` chose for CFG on it, else its EMA weights when it has them (the thesis figures use the thesis's
        sampler: :attr:`sources`)."""
        return TextToImage.from_run(self.dir, cfg=self.cfg)  # the config read once, by Run.open

    def pipeline(
        self,
        checkpoint: str | None = None,
        ema: bool | None = None,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        device=None,
        spacing: str | None = None,
        ema_length: float | None = None,
        preset: bool = True,
    ) -> TextToImage:
        """A pipeline with other settings than :attr:`pipe`'s: a checkpoint, the raw weights or a post-hoc EMA length
        (:mod:`t2i.posthoc`), a sampler, steps, a timestep spacing or a device; ``preset=False``: the fixed-decay EMA
        where :attr:`pipe` would use the length `make ema` chose."""
        if (checkpoint, ema, sampler, num_inference_steps, device, spacing, ema_length) == (None,) * 7 and preset:
            return self.pipe
        return TextToImage.from_run(
            self.dir,
            checkpoint=checkpoint,
            ema=ema,
            sampler=sampler,
            spacing=spacing,
            num_inference_steps=num_inference_steps,
            device=device,
            cfg=self.cfg,
            ema_length=ema_length,
            preset=preset,
        )

    def draw(self, artefact: str) -> Path:
        """Draw a thesis artefact (:data:`t2i.thesis.ARTEFACTS`, e.g. ``fig06_loss``) from this run into its report
        folder; returns the figure, or the table's markdown."""
        return thesis.draw(artefact, self.sources, self.reports)

    def describe(self) -> str:
        """One line for the notebook: the model that made the figures, and how each kind of figure samples it."""
        pipe, figures = self.pipe, self.sources.sampler
        return (
            f"UNet parameters: {count_parameters(pipe.unet, trainable_only=False):,}; checkpoint "
            f"{pipe.checkpoint.name} ({pipe.weights} weights); thesis figures: {figures.describe()}; "
            f"measurements: {pipe.sampling.describe()}; seed {pipe.cfg.seed}"
        )

    # --- measuring ----------------------------------------------------------------------------------------------
    @cached_property
    def judge(self) -> judges.Judge:
        """The dataset's adherence judge (trained on first use, shared by every run of the dataset and resolution)."""
        return judges.for_config(self.cfg)

    def adherence(self, samples_per_prompt: int, prompts: int | None = None, name: str = "extra_adherence") -> str:
        """The judge's score on real held-out images, and the adherence sweep over the config's guidance scales with
        ``samples_per_prompt`` images of each prompt (every class, or ``prompts`` CelebA attribute sets), written to
        ``<reports>/<name>.md/.csv/.tex/.png``; returns the markdown table."""
        pipe, judge = self.pipe, self.judge
        real, n = evaluate.real_adherence(self.cfg, judge)
        print(f"judge ({judge.cfg.arch}): {real:.1%} adherence on {n} real held-out images")
        conditions = data.spec(self.cfg).sweep_conditions(self.cfg, samples_per_prompt, prompts)
        rows = evaluate.adherence_sweep(pipe, judge, conditions, self.cfg.guidance_scales)
        return evaluate.write_adherence_report(
            rows, pipe, judge, self.reports / name, samples_per_prompt=samples_per_prompt, real=real
        )

    def evaluate(
        self,
        guidance_scales: Sequence[float],
        samples_per_prompt: int,
        *,
        prompts: int | None = None,
        features: str = "auto",
        clip_model: str = "auto",
        seed: int | None = None,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        ema_length: float | None = None,
    ) -> str:
        """`make eval`: FID, KID, IS, adherence and CLIP score per guidance scale (:func:`t2i.evaluate.sweep`),
        written to :attr:`eval_dir`; returns the markdown table."""
        check_writable(self.eval_dir, folder=True)
        pipe = self.pipeline(sampler=sampler, num_inference_steps=num_inference_steps, ema_length=ema_length)
        extractor = evaluate.make_extractor(features, self.judge, pipe.device)
        clip = evaluate.make_clip_scorer(clip_model, pipe.device)
        print(
            f"{self}: {pipe.checkpoint.name} ({pipe.weights} weights), {pipe.sampling.describe()}, features "
            f"{extractor.name}, judge accuracy {self.judge.test_accuracy:.1%}; reports: {self.eval_dir}"
        )
        rows = evaluate.sweep(
            pipe, self.judge, extractor, guidance_scales, samples_per_prompt, prompts=prompts, clip=clip, seed=seed
        )
        return evaluate.write_sweep_report(rows, pipe, extractor, self.eval_dir, seed=seed)

    # The three studies are imported where they run, so that a report depends on its own study's code only (an edit to
    # t2i/ema_front.py stales no sampler or MNIST report: reports record the modules their process imported).

    def compare_guidance(
        self,
        samples_per_prompt: int | None = None,
        *,
        methods: Sequence[str] | None = None,
        strengths: Sequence[float] | None = None,
        guide_checkpoint: str | None = None,
        guide_run: Path | None = None,
        features: str = "staged",
        check: str | None = None,
        ema_length: float | None = None,
    ) -> Path:
        """`make guidance`: every guidance method on one fidelity / adherence front with paired verdicts
        (:mod:`t2i.comparison`), written to :attr:`guidance_dir`. ``features``: ``staged`` measures in every staged
        feature space, or name one. ``check``: write to ``guidance/<check>/`` instead a replication of the main
        report (other seeds, real images past its reference) and compare the verdicts. Returns the folder of the
        report (remade, or up to date)."""
        from . import comparison

        out = self.guidance_dir / check if check else self.guidance_dir
        check_writable(out, folder=True)
        pipe = self.pipeline(ema_length=ema_length)
        extractors = (
            evaluate.staged_extractors(self.judge, pipe.device)
            if features == "staged"
            else [evaluate.make_extractor(features, self.judge, pipe.device)]
        )
        guide = load_guide(self.dir, guide_checkpoint, guide_run)
        comparison.run(
            pipe,
            self.judge,
            extractors,
            samples_per_prompt or comparison.SAMPLES_PER_PROMPT,
            out,
            methods=methods,
            strengths=strengths or comparison.STRENGTHS,
            guide=guide,
            tune=check is None,
            compare_with=self.guidance_dir if check else None,
            guide_name=comparison.guide_description(guide_run, guide_checkpoint, guide, self.cfg),
        )
        return out

    def compare_samplers(
        self,
        samples_per_prompt: int | None = None,
        *,
        samplers: Sequence[str] | None = None,
        steps: Sequence[int] | None = None,
        spacings: Sequence[str] | None = None,
        features: str = "auto",
        guidance_scales: Sequence[float] | None = None,
    ) -> Path:
        """`make samplers`: every sampler and spacing against a 1,000-step DDPM reference at each strength
        (:mod:`t2i.sampler_front`; what is not given, its defaults), written to :attr:`samplers_dir`; returns it."""
        from . import sampler_front

        check_writable(self.samplers_dir, folder=True)
        pipe = self.pipe
        sampler_front.run(
            pipe,
            self.judge,
            evaluate.make_extractor(features, self.judge, pipe.device),
            samples_per_prompt or sampler_front.SAMPLES_PER_PROMPT,
            self.samplers_dir,
            samplers=samplers,
            steps=steps or sampler_front.STEPS,
            spacings=spacings or sampler_front.SPACINGS,
            guidance_scales=guidance_scales or sampler_front.GUIDANCE_SCALES,
        )
        return self.samplers_dir

    def compare_ema(
        self,
        samples_per_prompt: int | None = None,
        *,
        cfg_strength: float | None = None,
        autoguidance_strength: float | None = None,
        guide_checkpoint: str | None = None,
        features: str = "auto",
    ) -> Path:
        """`make ema`: post-hoc EMA lengths for unguided, CFG and autoguided sampling (:mod:`t2i.ema_front`), written
        to :attr:`ema_dir`, and the lengths it chose into the run (:func:`t2i.posthoc.write_presets`): the run's
        default weights from then on. Strengths not given are read from the guidance report (`make guidance` first).
        It measures against the fixed-decay EMA, whatever an earlier `make ema` chose."""
        from . import ema_front

        check_writable(self.ema_dir, folder=True)
        strengths = {}
        if cfg_strength is None or (guide_checkpoint and autoguidance_strength is None):
            table = self.guidance_dir / f"{paths.GUIDANCE}.csv"
            if not table.exists():
                raise ConfigError(
                    f"no guidance report at {table}: run `make guidance RUN={self.dir}` first, or give "
                    "the strengths (--cfg-strength, --autoguidance-strength)"
                )
            strengths = ema_front.best_strengths(table)
        strengths.update(
            {k: v for k, v in (("cfg", cfg_strength), ("autoguidance", autoguidance_strength)) if v is not None}
        )
        pipe = self.pipeline(preset=False)
        ema_front.run(
            pipe,
            self.dir,
            self.judge,
            evaluate.make_extractor(features, self.judge, pipe.device),
            samples_per_prompt or ema_front.SAMPLES_PER_PROMPT,
            self.ema_dir,
            strengths=strengths,
            guide_checkpoint=guide_checkpoint,
        )
        return self.ema_dir


def check_periodic_eval(cfg: ExperimentConfig) -> None:
    """``eval_every_epochs`` compares N generated images with 2 N real ones (the real-vs-real floor): check there are
    enough before the first epoch, not after it."""
    if not cfg.eval_every_epochs:
        return
    n = len(data.spec(cfg).sweep_conditions(cfg, cfg.eval_samples_per_prompt, None))
    have = len(data.load_images(cfg, "train", limit=2 * n)[0])
    if have < 2 * n:
        raise ConfigError(
            f"eval_every_epochs needs 2 x {n} real training images (eval_samples_per_prompt="
            f"{cfg.eval_samples_per_prompt} per prompt), the training set has {have}: lower "
            "eval_samples_per_prompt, or raise train_subset"
        )
