"""The latent cache of Experiment 4: CelebA encoded once by the frozen VAE, read by training instead of the VAE.

Each cached row holds the VAE posterior's mean and std (float16, already multiplied by the VAE's scaling factor)
and the 40 attributes, so every epoch still draws a fresh latent ``z = mean + std * eps`` and a fresh caption, as if
the VAE encoded every step, without running it. The cache is one derived shard per source shard
(:func:`~t2i.data.shards.derive_shards`): keyed by VAE, resolution and preprocessing (a change rebuilds it), written
atomically shard by shard (an interrupted build resumes where it stopped), bad rows skipped and listed.
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

from .. import paths
from ..configs import ExperimentConfig
from . import shards
from .celeba import ATTRIBUTES
from .images import BadSample, decode_image, to_tensor

PREPROCESSING = "shorter side to the resolution (bicubic), centre crop, RGB in [-1, 1]"  # thesis 3.5.2


class CelebaRow:
    """A flwrlabs/celeba row -> (uint8 image at ``resolution``, 40 attributes as uint8 0/1); called, the image is
    a tensor in ``pixel_range`` and the attributes a tensor (what the attribute judge trains on)."""

    def __init__(self, resolution: int, pixel_range: tuple[float, float] = (-1.0, 1.0)):
        self.resolution, self.pixel_range = resolution, pixel_range
        self.columns = ["image", *ATTRIBUTES]

    def __call__(self, row: dict[str, Any]) -> tuple:
        image, attributes = self.parse(row)
        return to_tensor(image, self.pixel_range), torch.from_numpy(attributes)

    def parse(self, row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        values = [row.get(name) for name in ATTRIBUTES]
        missing = [name for name, v in zip(ATTRIBUTES, values) if v is None]
        if missing:
            raise BadSample(f"missing attributes {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        attributes = np.array([int(v == 1 or v is True) for v in values], dtype=np.uint8)  # bool, 0/1 or -1/1
        return decode_image(shards.image_bytes(row.get("image")), self.resolution), attributes


class LatentRow:
    """A cache row -> (scaled posterior mean [C, h, w], scaled std [C, h, w], attributes [40] uint8)."""
    columns = ["mean", "std", "attributes"]

    def __init__(self, shape: Sequence[int]):
        self.shape = tuple(shape)

    def __call__(self, row: dict[str, Any]) -> tuple:
        mean = torch.from_numpy(np.frombuffer(row["mean"], dtype=np.float16).reshape(self.shape).astype(np.float32))
        std = torch.from_numpy(np.frombuffer(row["std"], dtype=np.float16).reshape(self.shape).astype(np.float32))
        return mean, std, torch.from_numpy(np.frombuffer(row["attributes"], dtype=np.uint8).copy())


def cache_dir(cfg: ExperimentConfig) -> Path:
    slug = cfg.vae.strip("/").replace("/", "--")
    return paths.data_dir() / "latents" / f"{cfg.dataset}-{cfg.resolution}px-{slug}"


def cache_key(cfg: ExperimentConfig) -> dict:
    """What the cached latents depend on (plus the source shards, added by derive_shards)."""
    return {"kind": "vae-posterior (scaled by the VAE's scaling_factor)", "vae": cfg.vae,
            "resolution": cfg.resolution, "latent_shape": list(cfg.model_shape), "preprocessing": PREPROCESSING,
            "dtype": "float16"}


def is_built(cfg: ExperimentConfig, sources: Sequence[Path], out_dir: Path | None = None) -> bool:
    return shards.derived_complete(sources, Path(out_dir or cache_dir(cfg)), cache_key(cfg))


def build(cfg: ExperimentConfig, sources: Sequence[Path], codec, out_dir: Path | None = None,
          batch_size: int = 32) -> list[Path]:
    """Encode ``sources`` (CelebA parquet shards) into the latent cache of ``cfg`` and return its shards."""
    from ..pipeline import check_latent_shape

    check_latent_shape(cfg, codec)
    decoder = CelebaRow(cfg.resolution)
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
            batch = torch.stack([to_tensor(image, (-1.0, 1.0)) for _, image, _ in good[start:start + batch_size]])
            mean, std = codec.posterior(batch)
            means += [m.tobytes() for m in (scale * mean).to(torch.float16).cpu().numpy()]
            stds += [s.tobytes() for s in (scale * std).to(torch.float16).cpu().numpy()]
        table = pa.table({"row": pa.array([n for n, _, _ in good], pa.int64()),
                          "mean": pa.array(means, pa.binary(size)), "std": pa.array(stds, pa.binary(size)),
                          "attributes": pa.array([a.tobytes() for _, _, a in good], pa.binary(len(ATTRIBUTES)))})
        return table, skipped

    out_dir = Path(out_dir or cache_dir(cfg))
    return shards.derive_shards(sources, out_dir, cache_key(cfg), convert, desc=f"encoding {cfg.dataset} with the VAE")


def stream(cfg: ExperimentConfig, files: Sequence[Path]) -> shards.ShardStream:
    """Training examples ``(mean, std, attributes)`` from the cache, file-sequentially."""
    key = json.loads((Path(files[0]).parent / shards.KEY_FILE).read_text())
    if tuple(key["latent_shape"]) != cfg.model_shape or key["vae"] != cfg.vae:
        raise ValueError(f"latent cache {Path(files[0]).parent} was built for {key['vae']} / {key['latent_shape']}, "
                         f"the config wants {cfg.vae} / {list(cfg.model_shape)}")
    return shards.ShardStream(files, LatentRow(cfg.model_shape), seed=cfg.seed, max_bad_fraction=cfg.max_bad_fraction)


def attributes_table(num_rows: int, rng: np.random.Generator) -> dict[str, list[bool]]:
    """Random but plausible CelebA attribute columns (for synthetic shards): each attribute on with its own rate."""
    rates = rng.uniform(0.05, 0.6, len(ATTRIBUTES))
    return {name: list(map(bool, rng.random(num_rows) < rate)) for name, rate in zip(ATTRIBUTES, rates)}
