"""The latent cache of Experiment 4: a dataset encoded once by the frozen VAE, read by training instead of the VAE.

Each cached row holds the VAE posterior's mean and std (float16, already multiplied by the VAE's scaling factor)
and the row's condition (CelebA: its 40 attributes), so every epoch still draws a fresh latent
``z = mean + std * eps`` (and, for CelebA, a fresh caption), as if the VAE encoded every step, without running it. The
cache is one derived shard per source shard (:func:`~t2i.data.derived.derive_shards`): keyed by VAE, resolution and
preprocessing (a change rebuilds it), written atomically shard by shard (an interrupted build resumes where it
stopped), bad rows skipped and listed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .. import hub, paths
from ..errors import MissingAsset
from ..configs import ExperimentConfig
from ..vae import check_latent_shape
from . import derived, shards
from .images import BadSample, to_tensor

PREPROCESSING = "shorter side to the resolution (bicubic), centre crop, RGB in [-1, 1]"  # thesis 3.5.2
FORMAT = 2  # 2: a generic int64 `condition` column (1: CelebA's `attributes` as uint8)


class LatentRow:
    """A cache row -> (scaled posterior mean [C, h, w], scaled std [C, h, w], condition: int64, a class index or a
    vector such as CelebA's 40 attributes)."""

    columns = ["mean", "std", "condition"]

    def __init__(self, shape: Sequence[int]):
        self.shape = tuple(shape)

    def __call__(self, row: dict[str, Any]) -> tuple:
        mean = torch.from_numpy(np.frombuffer(row["mean"], dtype=np.float16).reshape(self.shape).astype(np.float32))
        std = torch.from_numpy(np.frombuffer(row["std"], dtype=np.float16).reshape(self.shape).astype(np.float32))
        condition = torch.from_numpy(np.frombuffer(row["condition"], dtype=np.int64).copy())
        return mean, std, condition[0] if len(condition) == 1 else condition


def cache_dir(cfg: ExperimentConfig) -> Path:
    slug = cfg.vae.strip("/").replace("/", "--")
    return paths.data_dir() / "latents" / f"{cfg.dataset}-{cfg.resolution}px-{slug}"


def cache_key(cfg: ExperimentConfig) -> dict:
    """What the cached latents depend on (plus the source shards, added by derive_shards)."""
    return {
        "kind": "vae-posterior (scaled by the VAE's scaling_factor)",
        "vae": hub.describe(cfg.vae),
        "data": hub.downloaded(cfg.shards, paths.data_dir()) if cfg.shards else None,
        "resolution": cfg.resolution,
        "latent_shape": list(cfg.model_shape),
        "preprocessing": PREPROCESSING,
        "dtype": "float16",
        "format": FORMAT,
    }


def is_built(cfg: ExperimentConfig, sources: Sequence[Path], out_dir: Path | None = None) -> bool:
    return derived.derived_complete(sources, Path(out_dir or cache_dir(cfg)), cache_key(cfg))


def is_ready(cfg: ExperimentConfig) -> bool:
    """Is the latent cache of the config's training shards built and current (so training needs no VAE)? False
    while the shards themselves are missing."""
    try:
        return is_built(cfg, shards.find_shards(cfg.shards, paths.data_dir()))
    except MissingAsset:
        return False


def build(
    cfg: ExperimentConfig, sources: Sequence[Path], decoder, codec, out_dir: Path | None = None, batch_size: int = 32
) -> list[Path]:
    """Encode ``sources`` into the latent cache of ``cfg`` and return its shards. ``decoder.parse(row)`` gives a row's
    uint8 image at ``cfg.resolution`` and its condition (or raises :class:`BadSample`)."""
    check_latent_shape(cfg, codec)
    scale = codec.scaling_factor
    size = int(np.prod(cfg.model_shape)) * 2  # float16 bytes

    def convert(source: Path) -> tuple[pa.Table, list[dict]]:
        rows = pq.read_table(source, columns=decoder.columns).to_pylist()
        good, skipped = [], []
        for number, row in enumerate(rows):
            try:
                good.append((number, *decoder.parse(row)))
            except BadSample as exc:
                skipped.append({"shard": source.name, "row": number, "reason": str(exc)})
        means, stds = [], []
        for start in range(0, len(good), batch_size):
            batch = torch.stack([to_tensor(image, (-1.0, 1.0)) for _, image, _ in good[start : start + batch_size]])
            mean, std = codec.posterior(batch)
            means += [m.tobytes() for m in (scale * mean).to(torch.float16).cpu().numpy()]
            stds += [s.tobytes() for s in (scale * std).to(torch.float16).cpu().numpy()]
        table = pa.table(
            {
                "row": pa.array([n for n, _, _ in good], pa.int64()),
                "mean": pa.array(means, pa.binary(size)),
                "std": pa.array(stds, pa.binary(size)),
                "condition": pa.array(
                    [np.asarray(c, dtype=np.int64).reshape(-1).tobytes() for _, _, c in good], pa.binary()
                ),
            }
        )
        return table, skipped

    out_dir = Path(out_dir or cache_dir(cfg))
    return derived.derive_shards(sources, out_dir, cache_key(cfg), convert, desc=f"encoding {cfg.dataset} with the VAE")


def stream(
    cfg: ExperimentConfig,
    files: Sequence[Path],
    log_dir: Path | None = None,
    transform: shards.ExampleTransform | None = None,
) -> shards.ShardStream:
    """Training examples ``(mean, std, condition)`` from the cache, file-sequentially (``transform`` applied to each:
    CelebA's caption tokens in place of the attributes)."""
    key = json.loads((Path(files[0]).parent / derived.KEY_FILE).read_text())
    if tuple(key["latent_shape"]) != cfg.model_shape or key["vae"] != hub.describe(cfg.vae):
        raise ValueError(
            f"latent cache {Path(files[0]).parent} was built for {key['vae']} / {key['latent_shape']}, "
            f"the config wants {cfg.vae} / {list(cfg.model_shape)}"
        )
    return shards.ShardStream(
        files,
        LatentRow(cfg.model_shape),
        seed=cfg.seed,
        max_bad_fraction=cfg.max_bad_fraction,
        log_dir=log_dir,
        transform=transform,
    )
