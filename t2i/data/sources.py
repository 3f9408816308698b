"""Which loader serves a config: torchvision / scikit-learn for the small datasets, parquet shards otherwise.

``load_dataset`` gives what training iterates, ``load_images`` gives tensors in [0, 1] for judges, metrics and
figures. Both take the config and a split (:data:`SPLITS`).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from .. import paths
from ..configs import ExperimentConfig
from . import cifar10, digits, latents, shards, synthetic

SPLITS = ("train", "judge_train", "judge_test")
JUDGE_TEST_EVERY = 5  # parquet datasets: every 5th held-out row measures the judge, the rest train it
JUDGE_MAX_ROWS = 20_000  # the judge reads at most this many rows of a parquet dataset (memory)


def load_dataset(cfg: ExperimentConfig, split: str = "train") -> Dataset:
    """``(x0, caption_id)`` examples, x0 in ``cfg.pixel_range``; the caption of id ``k`` is ``cfg.captions[k]``.
    Parquet datasets are a :class:`~t2i.data.shards.ShardStream` (iterable, file-sequential)."""
    if cfg.shards is not None:
        if split != "train":
            raise ValueError("parquet datasets stream their training split only; use load_images for the others")
        return latent_stream(cfg) if cfg.vae is not None else shard_stream(cfg)
    images, labels = load_images(cfg, split)
    low, high = cfg.pixel_range
    return TensorDataset(low + (high - low) * images, labels)


def load_images(cfg: ExperimentConfig, split: str, limit: int | None = None,
                resolution: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, C, R, R] float32 in [0, 1] and labels [N] int64 (the first ``limit`` if given). CelebA's labels
    are its 40 attributes, [N, 40]. ``resolution`` overrides the config's (parquet datasets: the CelebA judge reads
    64 px faces, not 256 px ones)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {SPLITS}")
    if cfg.shards is not None:
        images, labels = _shard_images(cfg.replace(resolution=resolution or cfg.resolution), split, limit)
    elif cfg.dataset in ("mnist", "digits"):
        images, labels = digits.load_images(cfg, split)
    elif cfg.dataset == "cifar10":
        images, labels = cifar10.load_images(split)
        images = digits.resize(images, cfg.resolution)
        if split == "train" and cfg.train_subset is not None:
            images, labels = images[: cfg.train_subset], labels[: cfg.train_subset]
    else:
        raise ValueError(f"dataset {cfg.dataset!r} is read from parquet shards: set `shards` in its config")
    return (images[:limit], labels[:limit]) if limit is not None else (images, labels)


def decoder_for(cfg: ExperimentConfig):
    """Rows -> (image in pixel_range, label): a class index, or CelebA's 40 attributes."""
    if cfg.dataset == "celeba":
        return latents.CelebaRow(cfg.resolution, cfg.pixel_range)
    return shards.ImageLabel(cfg.resolution, cfg.pixel_range, len(cfg.class_names), label_column=cfg.label_column)


def shard_files(cfg: ExperimentConfig, pattern: str) -> list:
    """The shards matching ``pattern`` under the data dir. Patterns under ``synthetic/`` (the smoke profiles) are
    written on first use; everything else comes from `make assets`."""
    if pattern.startswith("synthetic/") and not list(paths.data_dir().glob(pattern)):
        write_synthetic(cfg, paths.data_dir() / "synthetic" / cfg.dataset)
    return shards.find_shards(pattern, paths.data_dir())


def shard_stream(cfg: ExperimentConfig) -> shards.ShardStream:
    files, decoder = shard_files(cfg, cfg.shards), decoder_for(cfg)
    shards.check_class_names(files[0], cfg.label_column, cfg.class_names)
    if cfg.preprocess:
        out = paths.data_dir() / "preprocessed" / f"{cfg.dataset}-{cfg.resolution}px"
        files = shards.preprocess(files, out, decoder)
        decoder = shards.Pixels(cfg.resolution, cfg.pixel_range, len(cfg.class_names), cfg.label_column)
    return shards.ShardStream(files, decoder, seed=cfg.seed, max_bad_fraction=cfg.max_bad_fraction)


def latent_stream(cfg: ExperimentConfig) -> shards.ShardStream:
    """Latent diffusion: the VAE latent cache of the training shards, built first if it is missing or stale (the
    only time the VAE runs: on the GPU if there is one)."""
    from ..vae import LatentCodec

    files = shard_files(cfg, cfg.shards)
    if not latents.is_built(cfg, files):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        latents.build(cfg, files, LatentCodec.from_pretrained(cfg.vae, device=device))
    return latents.stream(cfg, [latents.cache_dir(cfg) / f.name for f in files])


def write_synthetic(cfg: ExperimentConfig, out_dir) -> None:
    """Smoke-test shards in the dataset's real layout: train shards, plus test shards where the config has them."""
    if cfg.dataset == "celeba":  # flwrlabs/celeba: image, celeb_id and 40 boolean attribute columns; 178x218 faces
        size = (cfg.resolution * 178 // 256, cfg.resolution * 218 // 256)
        common = dict(num_classes=10, image_size=size, label_column="celeb_id", row_group_size=16,
                      extra_columns=lambda labels, rng: latents.attributes_table(len(labels), rng))
    else:
        size = (cfg.resolution * 3, cfg.resolution * 5 // 2)  # wider than tall: exercises resize + centre crop
        common = dict(num_classes=len(cfg.class_names), image_size=size, label_column=cfg.label_column,
                      row_group_size=16)
    print(f"writing synthetic {cfg.dataset} shards to {out_dir} (smoke profile)")
    synthetic.write_class_shards(out_dir, num_shards=3, rows_per_shard=40, prefix="train", seed=0, **common)
    if cfg.judge_shards:
        synthetic.write_class_shards(out_dir, num_shards=2, rows_per_shard=40, prefix="test", seed=1, **common)


def _shard_images(cfg: ExperimentConfig, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows in file order (no shuffling). judge_train / judge_test: every JUDGE_TEST_EVERY-th row of the judge shards
    (or of the training shards when there are none) is a test row."""
    pattern = cfg.shards if split == "train" or cfg.judge_shards is None else cfg.judge_shards
    stream = shards.ShardStream(shard_files(cfg, pattern), decoder_for(cfg), shuffle=False, rank=0, world_size=1,
                                max_bad_fraction=cfg.max_bad_fraction)
    cap = limit if split == "train" else min(limit or JUDGE_MAX_ROWS, JUDGE_MAX_ROWS)
    images, labels = [], []
    for k, (x, label) in enumerate(stream):
        keep = split == "train" or (k % JUDGE_TEST_EVERY == 0) == (split == "judge_test")
        if keep:
            images.append(x)
            labels.append(label)
        if cap is not None and len(images) >= cap:
            break
    skipped = stream.bad_samples(0)
    if skipped:
        print(f"{cfg.dataset} {split}: " + shards.summarize_bad_samples(skipped, stream.total_rows))
    low, high = cfg.pixel_range
    labels = torch.stack(labels).long() if torch.is_tensor(labels[0]) else torch.tensor(labels, dtype=torch.long)
    return (torch.stack(images) - low) / (high - low), labels
