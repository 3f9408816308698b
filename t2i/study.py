"""The skeleton the three paired studies share: `make guidance` (:mod:`t2i.comparison`), `make samplers`
(:mod:`t2i.sampler_front`) and `make ema` (:mod:`t2i.ema_front`). Each one

1. names its settings, which with the checkpoint, its weights, the sampler and the feature spaces decide whether the
   report already in its folder is up to date (then nothing is drawn: :meth:`Study.up_to_date`);
2. shares N prompts, one seed per image and a real reference among all its rows (:class:`t2i.evaluate.PairedRows`),
   so that rows are compared image by image (:mod:`t2i.stats`);
3. draws each row and scores it (:meth:`Study.draw`: each image's adherence, the features against the reference in
   every space, the network evaluations counted and the seconds taken);
4. analyses its rows in its own module, and publishes tables, figures and a summary with provenance
   (:meth:`Study.publish`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import evaluate, reports, stats
from .pipeline import TextToImage
from .sampling import Evaluations


@dataclass(frozen=True)
class Scored:
    """One row of images, scored."""

    hits: np.ndarray  # each image's adherence (0/1 for class prompts)
    features: dict[str, stats.FeatureSet]  # feature space -> this row against the reference
    evaluations: float  # network calls per image, counted (t2i.sampling.Evaluations)
    seconds: float  # wall time per image on this machine (a ratio between rows, not a benchmark)


class Study:
    """One study of one run: its settings and folder, the rows it shares, and how it draws and publishes."""

    def __init__(
        self,
        pipe: TextToImage,
        judge,
        extractors: list,
        out: Path,
        samples_per_prompt: int,
        *,
        skip_real: int = 0,
        **settings,
    ):
        self.pipe, self.judge, self.extractors, self.out = pipe, judge, list(extractors), Path(out)
        self.samples_per_prompt, self.skip_real = samples_per_prompt, skip_real
        self.inputs = {
            "checkpoint_manifest_sha256": pipe.provenance()["checkpoint_manifest_sha256"],
            "weights": pipe.weights,
            "sampler": pipe.sampling.describe(),
            "samples_per_prompt": samples_per_prompt,
            "features": [e.name for e in self.extractors],
            **({"reference_skips": skip_real} if skip_real else {}),
            **settings,
        }
        self._shared: dict[int, evaluate.PairedRows] = {}

    def up_to_date(self) -> bool:
        """Whether the report in :attr:`out` was made from these inputs by this code (then nothing is drawn)."""
        return reports.skip_if_fresh(self.out, self.inputs)

    def shared(self, samples_per_prompt: int | None = None) -> evaluate.PairedRows:
        """The prompts, seeds and reference that rows of ``samples_per_prompt`` per prompt share (made once; a
        replication's real images start past :attr:`skip_real`: :class:`t2i.evaluate.PairedRows`)."""
        k = samples_per_prompt or self.samples_per_prompt
        if k not in self._shared:
            self._shared[k] = evaluate.PairedRows(self.pipe.cfg, self.judge, self.extractors, k, self.skip_real)
        return self._shared[k]

    def draw(
        self, w: float, *, shared: evaluate.PairedRows | None = None, pipe: TextToImage | None = None, **sampling
    ) -> Scored:
        """One row: the shared prompts at strength ``w`` (``sampling``: what :meth:`TextToImage.images` takes, such
        as ``method``, ``sampler`` or ``seed``), drawn by ``pipe`` (default: the study's) and scored."""
        shared = shared or self.shared()
        counted = Evaluations()
        start = time.perf_counter()
        images = (pipe or self.pipe).images(shared.prompts, w, evaluations=counted, show_progress=False, **sampling)
        seconds = time.perf_counter() - start
        hits, features = shared.row(images)
        return Scored(hits, features, counted.per_image(shared.n), seconds / shared.n)

    def publish(self, *, tables: dict, figures: dict, texts: dict, **facts) -> None:
        """Every table, figure and text into :attr:`out`, each with the run's provenance and ``facts``."""
        reports.publish(
            self.out, self.pipe.provenance(inputs=self.inputs, **facts), tables=tables, figures=figures, texts=texts
        )
