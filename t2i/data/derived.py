"""Derived shards, built once from source shards and reused: preprocessed pixels (:func:`preprocess`) and the latent
cache (t2i.data.latents). One derived shard per source shard, written to a temporary file and renamed, under a key
that rebuilds the cache when anything it depends on changes; one process builds while the others wait."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..console import progress
from ..files import build_lock
from .images import BadSample
from .shards import ImageLabel, summarize_bad_samples

KEY_FILE = "key.json"


def derive_shards(
    sources: Sequence[Path],
    out_dir: Path,
    key: dict,
    convert: Callable[[Path], tuple[pa.Table, list[dict]]],
    desc: str = "caching",
) -> list[Path]:
    """One derived shard per source shard in ``out_dir``, built once and reused.

    ``convert(source)`` returns the derived table and the rows it skipped. Each shard is written to a temporary file
    and renamed, so an interrupted build resumes at the first missing shard and never leaves a half-written one.
    ``key`` (JSON) says what the cache depends on; a different key deletes the old shards and rebuilds. One process
    builds, others wait for it (:func:`t2i.files.build_lock`).
    Skipped rows are kept in ``<shard>.skipped.jsonl`` next to each shard.
    """
    out_dir = Path(out_dir)
    with build_lock(out_dir):  # ranks that start together: one builds, the others wait and reuse
        return _derive_shards(sources, out_dir, _full_key(sources, key), convert, desc)


def _derive_shards(
    sources: Sequence[Path], out_dir: Path, key: dict, convert: Callable[[Path], tuple[pa.Table, list[dict]]], desc: str
) -> list[Path]:
    key_path = out_dir / KEY_FILE
    if key_path.exists() and json.loads(key_path.read_text()) != key:
        for stale in list(out_dir.glob("*.parquet")) + list(out_dir.glob("*.skipped.jsonl")):
            stale.unlink()
        print(f"{out_dir}: cache key changed, rebuilding")
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path.write_text(json.dumps(key, indent=2))
    outputs = [out_dir / Path(s).name for s in sources]
    todo = [(s, o) for s, o in zip(sources, outputs) if not o.exists()]
    if todo:
        print(f"{desc}: building {len(todo)} of {len(sources)} shards in {out_dir}", flush=True)
    for source, output in progress(todo, desc=desc, disable=not todo):
        table, skipped = convert(Path(source))
        (out_dir / f"{output.name}.skipped.jsonl").write_text("".join(json.dumps(r) + "\n" for r in skipped))
        partial = output.with_name(output.name + ".partial")
        pq.write_table(table, partial, row_group_size=256)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, output)
    skipped = skipped_rows(out_dir)
    if skipped:  # reported whenever the cache is used, not only when it is built
        kept = sum(pq.ParquetFile(o).metadata.num_rows for o in outputs)
        print(f"{out_dir.name}: " + summarize_bad_samples(skipped, kept + len(skipped)))
    return outputs


def _full_key(sources: Sequence[Path], key: dict) -> dict:
    return {**key, "sources": [{"name": Path(s).name, "bytes": Path(s).stat().st_size} for s in sources]}


def derived_complete(sources: Sequence[Path], out_dir: Path, key: dict) -> bool:
    """True if :func:`derive_shards` would reuse every shard (same key, nothing missing)."""
    key_path = Path(out_dir) / KEY_FILE
    return (
        key_path.exists()
        and json.loads(key_path.read_text()) == _full_key(sources, key)
        and all((Path(out_dir) / Path(s).name).exists() for s in sources)
    )


def skipped_rows(out_dir: Path) -> list[dict]:
    """Every row a derived-shard build skipped, with shard, row and reason."""
    records = []
    for path in sorted(Path(out_dir).glob("*.skipped.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def preprocess(sources: Sequence[Path], out_dir: Path, decoder: ImageLabel, data: str | None = None) -> list[Path]:
    """Decode every image once into fixed-size uint8 shards at the training resolution (an epoch then reads memory
    instead of decoding JPEGs). Read them back with :class:`Pixels`. ``data``: the sources' ``repo@commit``
    (t2i.hub.downloaded), part of the cache key, so shards fetched at another revision are preprocessed again."""
    size = decoder.resolution * decoder.resolution * 3

    def convert(source: Path) -> tuple[pa.Table, list[dict]]:
        pixels, labels, skipped = [], [], []
        table = pq.read_table(source, columns=decoder.columns)
        for row_number, row in enumerate(table.to_pylist()):
            try:
                array, label = decoder.parse(row)
            except BadSample as exc:
                skipped.append({"shard": source.name, "row": row_number, "reason": str(exc)})
                continue
            pixels.append(array.tobytes())
            labels.append(label)
        return pa.table(
            {"pixels": pa.array(pixels, pa.binary(size)), decoder.label_column: pa.array(labels, pa.int64())}
        ), skipped

    key = {
        "kind": "pixels",
        "resolution": decoder.resolution,
        "resize": "shorter side, bicubic, centre crop",
        "label_column": decoder.label_column,
        "num_classes": decoder.num_classes,
        "data": data,
    }
    return derive_shards(sources, out_dir, key, convert, desc="preprocessing shards")
