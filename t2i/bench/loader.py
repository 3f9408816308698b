"""``make bench-loader``: thesis Table 2. Synthetic WikiArt-like shards (~1,100 rows of ~1,600 px JPEGs each) read
four ways, each in a fresh process so its peak memory is its own:

- ``naive``: a map-style dataset with random access that reads the row's whole shard for every sample (3.4.3);
- ``lru``: the same with an LRU cache of loaded shards (fewer shards cached than exist, as on the cluster);
- ``stream``: :class:`~t2i.data.shards.ShardStream`, file-sequential;
- ``preprocessed``: the same stream over uint8 shards written once by :func:`~t2i.data.derived.preprocess`.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import OrderedDict
from pathlib import Path

import pyarrow.parquet as pq
from torch.utils.data import DataLoader, Dataset

from .. import paths, reports
from ..data import derived, shards, synthetic
from . import machine

STRATEGIES = ("naive", "lru", "stream", "preprocessed")
TARGETS = {"stream_vs_naive": 20.0, "preprocessed_vs_stream": 10.0, "stream_rss_vs_shard": 1.5}


class RandomAccessShards(Dataset):
    """Row ``k`` of the dataset read by loading its shard (thesis 3.4.3's first attempt); ``cache_shards > 0`` keeps
    that many loaded shards in an LRU cache (its second)."""

    def __init__(self, files, decoder, cache_shards: int = 0):
        self.files, self.decoder, self.cache_shards = list(files), decoder, cache_shards
        self.index = [(s, r) for s, f in enumerate(self.files) for r in range(pq.ParquetFile(f).metadata.num_rows)]
        self.cache: OrderedDict[int, list] = OrderedDict()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int):
        shard, row = self.index[k]
        return self.decoder(self._shard(shard)[row])

    def _shard(self, shard: int) -> list:
        if shard in self.cache:
            self.cache.move_to_end(shard)
            return self.cache[shard]
        rows = pq.read_table(self.files[shard], columns=self.decoder.columns).to_pylist()
        if self.cache_shards:
            self.cache[shard] = rows
            while len(self.cache) > self.cache_shards:
                self.cache.popitem(last=False)
        return rows


def _memory_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, from /proc (Linux). ``getrusage``'s
    ru_maxrss would not do: it survives fork + exec, so a fresh process would start with its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status (the loader benchmark needs Linux)")


def _measure(
    strategy: str,
    files: list[str],
    resolution: int,
    num_classes: int,
    batch_size: int,
    max_images: int,
    max_seconds: float,
    lru_shards: int,
    preprocessed_dir: str,
) -> dict:
    """Runs in a fresh process: images/s and peak memory above the process's baseline."""
    decoder = shards.ImageLabel(resolution, (-1.0, 1.0), num_classes, label_column="style")
    if strategy in ("naive", "lru"):
        dataset = RandomAccessShards(files, decoder, cache_shards=lru_shards if strategy == "lru" else 0)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    else:
        if strategy == "preprocessed":  # written beforehand by the parent; this only finds them
            files = derived.preprocess(files, Path(preprocessed_dir), decoder)
            decoder = shards.Pixels(resolution, (-1.0, 1.0), num_classes, label_column="style")
        loader = DataLoader(shards.ShardStream(files, decoder, seed=0, rank=0, world_size=1), batch_size=batch_size)
    baseline = _memory_mb("VmRSS")
    images, start = 0, time.perf_counter()
    for _, labels in loader:
        images += len(labels)
        if images >= max_images or time.perf_counter() - start > max_seconds:
            break
    elapsed = time.perf_counter() - start
    peak = _memory_mb("VmHWM")
    return {
        "strategy": strategy,
        "images": images,
        "seconds": elapsed,
        "images_per_s": images / elapsed,
        "peak_extra_rss_mb": peak - baseline,
    }


def run(
    out: Path | None = None,
    num_shards: int = 6,
    rows_per_shard: int = 1100,
    image_px: int = 1600,
    resolution: int = 128,
    batch_size: int = 16,
    lru_shards: int = 2,
    max_seconds: float = 60.0,
) -> str:
    """Write the synthetic shards (once, under data/bench/), measure every strategy, write the table."""
    data = paths.data_dir() / "bench" / f"wikiart-like-{num_shards}x{rows_per_shard}-{image_px}px"
    files = sorted(data.glob("train-*.parquet"))
    if len(files) != num_shards:
        print(f"writing {num_shards} synthetic shards of {rows_per_shard} JPEGs ({image_px} px) to {data}")
        files = synthetic.write_class_shards(
            data,
            num_shards,
            rows_per_shard,
            num_classes=27,
            image_size=(image_px, image_px),
            label_column="style",
            grain=0.012,
            row_group_size=128,
            distinct_images=54,
        )
    shard_mb = sum(f.stat().st_size for f in files) / len(files) / 2**20
    jpeg_kb = shard_mb * 1024 / rows_per_shard
    start = time.perf_counter()
    preprocessed = data / f"preprocessed-{resolution}px"
    derived.preprocess(files, preprocessed, shards.ImageLabel(resolution, (-1.0, 1.0), 27, label_column="style"))
    preprocess_s = time.perf_counter() - start  # ~0 when the shards already exist
    budget = {"naive": 64, "lru": 256}  # random access is slow by design: a few batches show the rate
    results = []
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per strategy: its own peak memory
    for strategy in STRATEGIES:
        with context.Pool(1) as pool:
            result = pool.apply(
                _measure,
                (
                    strategy,
                    [str(f) for f in files],
                    resolution,
                    27,
                    batch_size,
                    budget.get(strategy, rows_per_shard * 2),
                    max_seconds,
                    lru_shards,
                    str(preprocessed),
                ),
            )
        print(f"{strategy:>12}: {result['images_per_s']:8.1f} images/s, peak +{result['peak_extra_rss_mb']:.0f} MB")
        results.append(result)
    rate = {r["strategy"]: r["images_per_s"] for r in results}
    stream_rss = next(r["peak_extra_rss_mb"] for r in results if r["strategy"] == "stream")
    ratios = {
        "stream_vs_naive": rate["stream"] / rate["naive"],
        "preprocessed_vs_stream": rate["preprocessed"] / rate["stream"],
        "stream_rss_vs_shard": stream_rss / shard_mb,
    }
    rows = [
        {
            "strategy": r["strategy"],
            "images": r["images"],
            "images_per_s": r["images_per_s"],
            "ms_per_batch": 1000 * batch_size / r["images_per_s"],
            "peak_extra_rss_mb": r["peak_extra_rss_mb"],
        }
        for r in results
    ]
    checks = "; ".join(
        f"{name.replace('_', ' ')} = {value:.1f}x (target {'<=' if name.endswith('shard') else '>='} "
        f"{TARGETS[name]:g}x: "
        f"{'met' if (value <= TARGETS[name] if name.endswith('shard') else value >= TARGETS[name]) else 'NOT met'})"
        for name, value in ratios.items()
    )
    out = Path(out or paths.reports_dir() / "bench" / "loader")
    caption = (
        f"Loading {resolution} px training images from {num_shards} synthetic WikiArt-like parquet shards "
        f"({rows_per_shard} rows, {shard_mb:.0f} MB each, JPEGs of {image_px} px averaging {jpeg_kb:.0f} kB), "
        f"batch {batch_size}, one loader process each (= one DataLoader worker), files in the page cache. "
        f"lru caches {lru_shards} of {num_shards} shards. peak_extra_rss_mb: peak resident memory above the "
        f"process's baseline. The one-time preprocessing pass took {preprocess_s:.0f} s here (0 if its shards "
        f"existed). {checks}. Reproduce: make bench-loader."
    )
    table = reports.write_table(rows, out, caption=caption)
    reports.write_provenance(
        out.with_suffix(".md"), shard_mb=shard_mb, ratios=ratios, targets=TARGETS, machine=machine()
    )
    print(table)
    return table
