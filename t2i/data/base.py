"""What a dataset module defines: one :class:`DatasetSpec` named ``DATASET`` in ``t2i/data/<name>.py``.

A spec is everything the project knows about one dataset, in one place:

- **loading**: :meth:`~DatasetSpec.local_images` for data read whole (torchvision, scikit-learn), or, when the
  config names parquet ``shards``, the shared streaming machinery with the dataset's :meth:`~DatasetSpec.row_decoder`;
  :meth:`~DatasetSpec.write_synthetic` writes smoke-test shards in the dataset's real layout;
- **assets**: :meth:`~DatasetSpec.fetch` downloads it on a node with internet, :meth:`~DatasetSpec.missing` says
  offline what is not there yet;
- **conditioning**: :meth:`~DatasetSpec.conditioner` turns a training example's condition (a class index, CelebA's 40
  attributes) into text embeddings;
- **evaluation**: :meth:`~DatasetSpec.judge_recipe` (the classifier that checks adherence), and the prompts of a
  guidance sweep with the scorer that says how well generated images follow them.

The defaults describe class-labelled images, captioned ``cfg.caption_template.format(class_name)``; CelebA overrides
what differs. Conditions are tensors: class indices [N], or one row per image ([N, 40] attributes).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from .. import hub, paths
from ..configs import ExperimentConfig
from ..distributed import local_device
from ..files import build_lock
from ..text import CaptionTable, TextEncoder
from . import derived, latents, shards, synthetic

SPLITS = ("train", "judge_train", "judge_test")
JUDGE_TEST_EVERY = 5  # parquet datasets: every 5th held-out row measures the judge, the rest train it
JUDGE_MAX_ROWS = 20_000  # the judge reads at most this many rows of a parquet dataset (memory)

# Judge recipes (t2i.judges.JudgeConfig fields); each dataset module picks one and fills in the sizes.
SMALL_CNN = dict(arch="small")  # two conv blocks: enough for grayscale digits (>= 99% on MNIST)
RESNET18 = dict(arch="resnet18", batch_size=256, optimizer="sgd", learning_rate=0.1, weight_decay=5e-4, flip=True)


class DatasetSpec:
    name = ""
    hub_repo: str | None = None  # parquet datasets: the Hugging Face dataset repository their shards come from
    # What an export's model card says of the data, looked up at its publisher: the dataset id the card's metadata
    # names, and its terms as (license id for the card, or "other"; the terms in words; where they are stated).
    card_id: str | None = None
    terms: tuple[str, str, str] | None = None

    # --- loading ------------------------------------------------------------------------------------------------
    def local_images(self, cfg: ExperimentConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [N, C, R, R] in [0, 1] at ``cfg.resolution`` and conditions, for data that is read whole."""
        raise ValueError(f"dataset {self.name!r} is read from parquet shards: set `shards` in its config")

    def load_images(
        self, cfg: ExperimentConfig, split: str, limit: int | None = None, resolution: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [N, C, R, R] float32 in [0, 1] and their conditions (the first ``limit`` if given).
        ``resolution`` overrides the config's (the CelebA judge reads 64 px faces, not 256 px ones)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {SPLITS}")
        cfg = cfg.replace(resolution=resolution or cfg.resolution)
        if cfg.shards is not None:
            return _shard_images(self, cfg, split, limit)
        images, conditions = self.local_images(cfg, split)
        if split == "train" and cfg.train_subset is not None:
            images, conditions = images[: cfg.train_subset], conditions[: cfg.train_subset]
        return (images[:limit], conditions[:limit]) if limit is not None else (images, conditions)

    def training_set(
        self, cfg: ExperimentConfig, log_dir: Path | None = None, transform: shards.ExampleTransform | None = None
    ) -> Dataset:
        """``(x0, condition)`` examples, x0 in ``cfg.pixel_range`` (``(mean, std, condition)`` from the latent cache
        for latent diffusion). Parquet datasets stream (:class:`~t2i.data.shards.ShardStream`), list skipped rows in
        ``log_dir`` and apply the conditioner's ``transform`` to each example; the rest are tensors in memory."""
        if cfg.shards is None:
            if transform is not None:
                raise ValueError(
                    f"{self.name}: a per-example transform needs a streamed (parquet) dataset; "
                    "in-memory datasets are indexed on the device as they are"
                )
            images, conditions = self.load_images(cfg, "train")
            low, high = cfg.pixel_range
            return TensorDataset(low + (high - low) * images, conditions)
        files = self.shard_files(cfg, cfg.shards)
        if cfg.vae is not None:
            return latents.stream(cfg, self._latent_cache(cfg, files), log_dir=log_dir, transform=transform)
        decoder = self.row_decoder(cfg)
        if cfg.preprocess:
            out = paths.data_dir() / "preprocessed" / f"{cfg.dataset}-{cfg.resolution}px"
            files = derived.preprocess(files, out, decoder, data=hub.downloaded(cfg.shards, paths.data_dir()))
            decoder = shards.Pixels(cfg.resolution, cfg.pixel_range, len(cfg.class_names), cfg.label_column)
        return shards.ShardStream(
            files, decoder, seed=cfg.seed, max_bad_fraction=cfg.max_bad_fraction, log_dir=log_dir, transform=transform
        )

    def row_decoder(self, cfg: ExperimentConfig) -> shards.ImageLabel:
        """A parquet row -> (x0 in pixel_range, class index); its ``parse`` gives the uint8 image instead."""
        return shards.ImageLabel(
            cfg.resolution,
            cfg.pixel_range,
            len(cfg.class_names),
            image_column=cfg.image_column,
            label_column=cfg.label_column,
        )

    def file_label_names(self, cfg: ExperimentConfig) -> tuple[str, ...]:
        """The label names the published files record for ``label_column`` (synthetic shards carry them too)."""
        return cfg.class_names

    def shard_files(self, cfg: ExperimentConfig, pattern: str) -> list[Path]:
        """The shards matching ``pattern`` under the data dir. Patterns under ``synthetic/`` (the smoke profiles) are
        written on first use; the rest come from `make assets`. The first shard is checked (:meth:`check_shards`)."""
        if pattern.startswith("synthetic/"):
            out = paths.data_dir() / "synthetic" / cfg.dataset
            with build_lock(out):  # ranks that start together: one writes them, the others wait
                if not synthetic.is_current(out):
                    print(f"writing synthetic {cfg.dataset} shards to {out} (smoke profile)")
                    synthetic.clear(out)
                    self.write_synthetic(cfg, out)
                    synthetic.mark_current(out)
        files = shards.find_shards(pattern, paths.data_dir())
        self.check_shards(files[0], cfg)
        return files

    def check_shards(self, file: Path, cfg: ExperimentConfig) -> None:
        """Refuse shards whose labels mean something other than the captions say (label k is ``class_names[k]``)."""
        shards.check_class_names(file, cfg.label_column, cfg.class_names)

    def write_synthetic(self, cfg: ExperimentConfig, out_dir: Path) -> None:
        """Smoke-test shards in the dataset's layout: 3 train shards of 40 rows (+2 test shards if the config has
        judge shards), images wider than tall so resizing and centre-cropping are exercised."""
        common = dict(
            num_classes=len(cfg.class_names),
            image_size=(cfg.resolution * 3, cfg.resolution * 5 // 2),
            image_column=cfg.image_column,
            label_column=cfg.label_column,
            label_names=self.file_label_names(cfg),
            row_group_size=16,
        )
        synthetic.write_class_shards(out_dir, num_shards=3, rows_per_shard=40, prefix="train", seed=0, **common)
        if cfg.judge_shards:
            synthetic.write_class_shards(out_dir, num_shards=2, rows_per_shard=40, prefix="test", seed=1, **common)

    def _latent_cache(self, cfg: ExperimentConfig, files: list[Path]) -> list[Path]:
        """The VAE latent cache of the training shards, built first if it is missing or stale (the only time the VAE
        runs: on the GPU if there is one)."""
        if not latents.is_built(cfg, files):
            from ..vae import LatentCodec  # diffusers' VAE: loaded only when the cache must be built

            latents.build(
                cfg, files, self.row_decoder(cfg), LatentCodec.from_pretrained(cfg.vae, device=local_device())
            )
        return [latents.cache_dir(cfg) / f.name for f in files]

    # --- assets -------------------------------------------------------------------------------------------------
    def fetch(self, cfg: ExperimentConfig) -> None:
        """Download the data into the data dir (a node with internet; `make assets`)."""
        if self.hub_repo is None:
            raise NotImplementedError(f"dataset {self.name!r} has no download source")
        from huggingface_hub import snapshot_download

        for pattern in filter(None, (cfg.shards, cfg.judge_shards)):
            folder, _, inside = pattern.partition("/")
            snapshot_download(
                self.hub_repo,
                repo_type="dataset",
                allow_patterns=[inside],
                revision=hub.revision(self.hub_repo),
                local_dir=paths.data_dir() / folder,
            )
            hub.record_download(paths.data_dir() / folder, self.hub_repo)

    def missing(self, cfg: ExperimentConfig) -> list[str]:
        """What :meth:`fetch` would bring that is not on disk (nothing for synthetic smoke data)."""
        return [
            f"{self.name} shards {p} under {paths.data_dir()}"
            for p in filter(None, (cfg.shards, cfg.judge_shards))
            if not p.startswith("synthetic/") and not list(paths.data_dir().glob(p))
        ]

    # --- conditioning -------------------------------------------------------------------------------------------
    def conditioner(self, cfg: ExperimentConfig, text: TextEncoder):
        """Conditions -> text embeddings during training (a :class:`~t2i.objectives.Conditioner`): here each class's
        caption, encoded once and looked up by class index."""
        return CaptionTable.build(text, cfg.captions)

    # --- evaluation ---------------------------------------------------------------------------------------------
    def judge_recipe(self, cfg: ExperimentConfig) -> dict:
        """The adherence judge's :class:`~t2i.judges.JudgeConfig` fields for this dataset."""
        raise NotImplementedError

    def sweep_conditions(
        self, cfg: ExperimentConfig, samples_per_prompt: int, prompts: int | None = None
    ) -> torch.Tensor:
        """The conditions a guidance sweep prompts with: every class (or the first ``prompts``), each
        ``samples_per_prompt`` times in a row."""
        classes = len(cfg.class_names) if prompts is None else min(prompts, len(cfg.class_names))
        return torch.arange(classes).repeat_interleave(samples_per_prompt)

    def prompts(self, cfg: ExperimentConfig, conditions: torch.Tensor) -> list[str]:
        """The prompt of each condition: its class caption."""
        return [cfg.captions[int(k)] for k in conditions]

    def adherence(self, predicted: torch.Tensor, conditions: torch.Tensor) -> dict[str, float]:
        """How well a judge's predictions on generated images follow their conditions: the fraction assigned to the
        prompted class, and the same for the worst class."""
        right = (predicted == conditions).float()
        per_class = [right[conditions == k].mean().item() for k in conditions.unique()]
        return {"adherence": right.mean().item(), "worst_class_adherence": min(per_class)}

    def image_adherence(self, predicted: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Each image's adherence, for paired comparisons: 1 if the judge assigns it to the prompted class, else 0."""
        return (predicted == conditions).float()

    binary_adherence = True  # image_adherence is 0 or 1 (exact rate intervals apply)

    def adherence_meaning(self, cfg: ExperimentConfig) -> str:
        """What the adherence number is, for table captions."""
        return f"fraction of generated images the judge assigns to the prompted class (chance {self.chance(cfg):.0%})"

    def chance(self, cfg: ExperimentConfig) -> float | None:
        """Adherence of a model that ignores the prompt, where it is known."""
        return 1.0 / len(cfg.class_names)


def _shard_images(
    spec: DatasetSpec, cfg: ExperimentConfig, split: str, limit: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows in file order (no shuffling). judge_train / judge_test: every JUDGE_TEST_EVERY-th row of the judge shards
    (or of the training shards when there are none) is a test row; the other split's rows are not decoded."""
    pattern = cfg.shards if split == "train" or cfg.judge_shards is None else cfg.judge_shards
    test = split == "judge_test"
    keep = None if split == "train" else (lambda k: (k % JUDGE_TEST_EVERY == 0) == test)  # rows chosen before decoding
    stream = shards.ShardStream(
        spec.shard_files(cfg, pattern),
        spec.row_decoder(cfg),
        shuffle=False,
        rank=0,
        world_size=1,
        max_bad_fraction=cfg.max_bad_fraction,
        keep=keep,
    )
    cap = limit if split == "train" else min(limit or JUDGE_MAX_ROWS, JUDGE_MAX_ROWS)
    images, conditions = [], []
    for x, condition in stream:
        images.append(x)
        conditions.append(torch.as_tensor(condition))
        if cap is not None and len(images) >= cap:
            break
    skipped = stream.bad_samples(0)
    if skipped:
        print(f"{cfg.dataset} {split}: " + shards.summarize_bad_samples(skipped, stream.total_rows))
    low, high = cfg.pixel_range
    return (torch.stack(images) - low) / (high - low), torch.stack(conditions).long()
