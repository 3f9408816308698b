"""File-sequential streaming over parquet shards (thesis 3.4.3, done carefully).

Random access into parquet shards of embedded JPEGs reads a ~400 MB file per sample; an LRU cache of decoded
shards runs out of memory once every DataLoader worker keeps its own. :class:`ShardStream` instead gives each
consumer (a DataLoader worker of a distributed rank) whole shards:

- every epoch the shard order is shuffled with ``(seed, epoch)``;
- shards are dealt to ranks, then to the workers of each rank, round-robin, as many whole as divide evenly; the row
  groups of the remaining shards are dealt one by one, so every row is read exactly once per epoch for any number
  of ranks and workers, and shares differ by at most a row group;
- a consumer reads its part of a shard row group by row group into one Arrow table, shuffles its rows with
  ``(seed, epoch, shard)``, decodes and yields them one by one (after an optional per-example ``transform`` seeded
  by ``(seed, epoch, shard, row)``), and frees the shard before reading the next.

Memory is about one shard per worker; the price is that rows are shuffled within a shard, not across the dataset
(the shard order changes every epoch). Bad rows (unreadable images, missing labels) are skipped, logged per shard
and row, and summarised at the end of the epoch; more than ``max_bad_fraction`` of a consumer's rows stops the run
with :class:`TooManyBadSamples` naming the last shard and row.

:func:`derive_shards` writes one derived shard per source shard (preprocessed pixels, VAE latents), atomically and
resumably, under a key that rebuilds the cache when anything it depends on changes.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import MissingAsset, UserError
from .images import BadSample, decode_image, to_tensor

Piece = tuple[int, tuple[int, ...]]  # (shard index, row groups of that shard)


class TooManyBadSamples(UserError, RuntimeError):
    """More bad rows than the configured fraction: the data is broken, not a few samples."""


class RowDecoder(Protocol):
    columns: list[str]  # the parquet columns the decoder reads

    def __call__(self, row: dict[str, Any]) -> tuple: ...  # a training example, or raise BadSample


class ExampleTransform(Protocol):
    """Applied to every decoded example in the worker that read it, with a generator seeded by (seed, epoch, shard,
    row): random choices per example that do not depend on which worker reads it or where a run resumed."""

    def __call__(self, example: tuple, rng: np.random.Generator) -> tuple: ...


@runtime_checkable
class ReportsBadSamples(Protocol):
    """A training set that skips unreadable rows and says which (:class:`ShardStream`). The trainer asks at the end
    of every epoch and keeps the answer in the run's ``bad_samples.csv``."""

    @property
    def total_rows(self) -> int: ...  # rows per epoch, skipped ones included

    def bad_samples(self, epoch: int) -> list[dict]: ...  # {"epoch", "shard", "row", "reason"} per skipped row


def find_shards(pattern: str | Path, root: Path | None = None) -> list[Path]:
    """Parquet files matching ``pattern`` (relative patterns are under ``root``), sorted; none is an error."""
    full = Path(pattern) if Path(pattern).is_absolute() or root is None else Path(root) / pattern
    files = sorted(Path(p) for p in glob.glob(str(full)))
    if not files:
        raise MissingAsset(
            f"no parquet shards match {full}; run `make assets` on a node with internet "
            "(or point T2I_DATA_DIR at the directory that holds them)"
        )
    return files


class UnreadableShard(UserError, ValueError):
    """A shard file that is not a readable parquet file (cut footer, zero bytes, not parquet)."""


def open_parquet(file: Path) -> pq.ParquetFile:
    """The file's footer (row groups, schema), or one line naming the file if it cannot be read: a shard that cannot
    be opened at all stops the run before training, since its rows cannot even be counted."""
    try:
        return pq.ParquetFile(file)
    except (OSError, pa.ArrowException) as exc:
        size = Path(file).stat().st_size if Path(file).exists() else 0
        raise UnreadableShard(
            f"{file} ({size:,} bytes) is not a readable parquet file ({' '.join(str(exc).split())}); "
            "download it again (`make assets`) or move it out of the shard folder"
        ) from None


def class_names(file: Path, column: str) -> list[str] | None:
    """The class names a Hugging Face parquet export records for ``column`` (a ClassLabel), if it records any."""
    metadata = open_parquet(file).schema_arrow.metadata or {}
    if b"huggingface" not in metadata:
        return None
    feature = json.loads(metadata[b"huggingface"]).get("info", {}).get("features", {}).get(column, {})
    return feature.get("names")


def check_class_names(file: Path, column: str, expected: Sequence[str]) -> None:
    """Label k is captioned with ``expected[k]``: if the file says label k means something else, every caption
    would be wrong. Names are compared ignoring case, "_" and "-" ("Ukiyo_e" is "Ukiyo-e")."""
    found = class_names(file, column)

    def norm(name: str) -> str:
        return name.lower().replace("_", " ").replace("-", " ")

    if found is not None and [norm(n) for n in found] != [norm(n) for n in expected]:
        raise ValueError(
            f"{Path(file).name}: column {column!r} labels are {found}, but the config captions them as "
            f"{list(expected)}; fix class_names (same order) in t2i/experiments/"
        )


def image_bytes(value: Any) -> bytes | None:
    """Hugging Face stores images as ``{"bytes": ..., "path": ...}``; plain binary columns are accepted too."""
    return value.get("bytes") if isinstance(value, dict) else value


def class_label(value: Any, num_classes: int) -> int:
    if value is None:
        raise BadSample("missing label")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < num_classes:
        raise BadSample(f"unknown label {value!r} (expected an integer in [0, {num_classes}))")
    return int(value)


class ImageLabel:
    """Rows of ``{image, label}`` -> ``(x0 [C, R, R] in pixel_range, class index)``."""

    def __init__(
        self,
        resolution: int,
        pixel_range: tuple[float, float],
        num_classes: int,
        image_column: str = "image",
        label_column: str = "label",
    ):
        self.resolution, self.pixel_range, self.num_classes = resolution, pixel_range, num_classes
        self.image_column, self.label_column = image_column, label_column
        self.columns = [image_column, label_column]

    def parse(self, row: dict[str, Any]) -> tuple[np.ndarray, int]:
        """The uint8 image and the label (label first: it is cheap to check)."""
        label = class_label(row.get(self.label_column), self.num_classes)
        return decode_image(image_bytes(row.get(self.image_column)), self.resolution), label

    def __call__(self, row: dict[str, Any]) -> tuple:
        pixels, label = self.parse(row)
        return to_tensor(pixels, self.pixel_range), label


class Pixels(ImageLabel):
    """Rows written by :func:`preprocess`: raw ``R x R x 3`` uint8 pixels, no decoding at all."""

    def __init__(
        self, resolution: int, pixel_range: tuple[float, float], num_classes: int, label_column: str = "label"
    ):
        super().__init__(resolution, pixel_range, num_classes, "pixels", label_column)

    def parse(self, row: dict[str, Any]) -> tuple[np.ndarray, int]:
        pixels = np.frombuffer(row["pixels"], dtype=np.uint8).reshape(self.resolution, self.resolution, 3)
        return pixels, class_label(row.get(self.label_column), self.num_classes)


class ShardStream(IterableDataset):
    """Examples from parquet shards, file-sequentially (see the module docstring)."""

    def __init__(
        self,
        files: Sequence[Path],
        decoder: RowDecoder,
        seed: int = 0,
        shuffle: bool = True,
        max_bad_fraction: float = 0.01,
        rank: int | None = None,
        world_size: int | None = None,
        log_dir: Path | None = None,
        transform: ExampleTransform | None = None,
        keep: Callable[[int], bool] | None = None,
    ):
        """``keep(k)``: read only the rows whose position ``k`` in the stream (bad rows included) it accepts; the
        others are never decoded. Only for an unshuffled stream read by one process (the judge's splits)."""
        if not files:
            raise FileNotFoundError("ShardStream needs at least one parquet shard")
        if not 0.0 <= max_bad_fraction < 1.0:
            raise ValueError(f"max_bad_fraction={max_bad_fraction} must be in [0, 1)")
        self.files = [Path(f) for f in files]
        self.decoder, self.seed, self.shuffle, self.max_bad_fraction = decoder, seed, shuffle, max_bad_fraction
        self.transform, self.keep = transform, keep
        if keep is not None and shuffle:
            raise ValueError("ShardStream(keep=...) selects rows by stream position: it needs shuffle=False")
        # row counts per row group, from the footers only (no data is read)
        self.row_groups = [
            [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
            for pf in map(open_parquet, self.files)
        ]
        default_rank, default_world = _distributed()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world_size})")
        # created on the first bad row (workers write there too, so the path is fixed here, in the parent)
        self.log_dir = Path(log_dir or Path(tempfile.gettempdir()) / f"t2i-bad-samples-{uuid.uuid4().hex}")
        self.epoch = 0

    @property
    def total_rows(self) -> int:
        return sum(map(sum, self.row_groups))

    def set_epoch(self, epoch: int) -> None:
        """Called by the training loop before each epoch (DataLoader workers copy the dataset after this)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Rows this rank reads per epoch (before bad rows are skipped)."""
        return self._rows(_deal(self._pieces(self.epoch), self.world_size, self.rank))

    def batches(self, epoch: int, batch_size: int, num_workers: int) -> int:
        """Batches a DataLoader with ``num_workers`` workers makes of this rank's rows in ``epoch`` (bad rows aside):
        each worker batches its own rows, so each ends with its own partial batch, and the DataLoader's ``len``
        (``ceil(rows / batch_size)``) undercounts by up to one batch per worker."""
        workers = max(num_workers, 1)
        return sum(-(-self._rows(self.assignment(w, workers, epoch)) // batch_size) for w in range(workers))

    def assignment(self, worker: int = 0, num_workers: int = 1, epoch: int | None = None) -> list[Piece]:
        """The shard pieces one worker of this rank reads in ``epoch``, in reading order."""
        rank_pieces = _deal(self._pieces(self.epoch if epoch is None else epoch), self.world_size, self.rank)
        return _merge(_deal(rank_pieces, num_workers, worker))

    def __iter__(self) -> Iterator[tuple]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        pieces = self.assignment(worker, num_workers)
        budget = self.max_bad_fraction * self._rows(pieces)
        log = self.log_dir / f"epoch-{self.epoch:04d}.rank{self.rank}.worker{worker}.jsonl"
        bad, position = 0, -1
        for shard, groups in pieces:
            table, numbers = self._read(shard, groups)
            order = (
                np.random.default_rng([self.seed, self.epoch, shard]).permutation(len(numbers))
                if self.shuffle
                else range(len(numbers))
            )
            for i in order:
                position += 1
                if self.keep is not None and not self.keep(position):
                    continue  # not this split's row: never decoded
                try:
                    example = self.decoder(table.slice(i, 1).to_pylist()[0])  # one row as Python objects
                    if self.transform is not None:  # the same draws for this row and epoch in any worker, on resume
                        example = self.transform(
                            example, np.random.default_rng([self.seed, self.epoch, shard, numbers[i]])
                        )
                except BadSample as exc:
                    bad += 1
                    record = {
                        "epoch": self.epoch,
                        "shard": self.files[shard].name,
                        "row": numbers[i],
                        "reason": str(exc),
                    }
                    log.parent.mkdir(parents=True, exist_ok=True)
                    with open(log, "a") as f:
                        f.write(json.dumps(record) + "\n")
                    if bad > budget:
                        raise TooManyBadSamples(
                            f"{bad} bad rows in {self._rows(pieces)} read by rank {self.rank} worker {worker} "
                            f"(over max_bad_fraction={self.max_bad_fraction:g}); last: {record['shard']} row "
                            f"{record['row']}: {record['reason']}. Bad rows so far are listed in {log}"
                        ) from None
                    continue
                yield example
            del table  # free this shard before reading the next

    def bad_samples(self, epoch: int) -> list[dict]:
        """Every row skipped in ``epoch`` (all ranks and workers that share ``log_dir``), once each: a run resumed
        mid-epoch decodes, and logs, the rows before its checkpoint again."""
        records = {}
        for path in sorted(self.log_dir.glob(f"epoch-{epoch:04d}.*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    records.setdefault((record["shard"], record["row"]), record)
        return [records[k] for k in sorted(records)]

    # --- internals -----------------------------------------------------------------------------------------------
    def _pieces(self, epoch: int) -> list[Piece]:
        order = (
            np.random.default_rng([self.seed, epoch]).permutation(len(self.files))
            if self.shuffle
            else np.arange(len(self.files))
        )
        return [(int(s), tuple(range(len(self.row_groups[s])))) for s in order]

    def _rows(self, pieces: Sequence[Piece]) -> int:
        return sum(self.row_groups[s][g] for s, groups in pieces for g in groups)

    def _read(self, shard: int, groups: tuple[int, ...]) -> tuple[pa.Table, list[int]]:
        """Some row groups of a shard as one Arrow table (read group by group, so reading never needs much more
        than the table itself), and the rows' numbers within the shard. Rows become Python objects one at a time."""
        offsets = np.cumsum([0] + self.row_groups[shard])
        numbers = [int(offsets[g]) + i for g in groups for i in range(self.row_groups[shard][g])]
        parquet = pq.ParquetFile(self.files[shard])
        table = pa.concat_tables(
            [parquet.read_row_group(g, columns=self.decoder.columns, use_threads=False) for g in groups]
        )
        return table, numbers


def _deal(pieces: list[Piece], parts: int, index: int) -> list[Piece]:
    """Share ``index`` of ``parts``, round-robin: as many whole shards as divide evenly, then the row groups of the
    remaining shards one by one, so shares differ by at most a row group (72 shards on 5 ranks: 14 shards each, and
    the last 2 shards' row groups spread over all 5), and every row lands in exactly one share."""
    whole = len(pieces) - len(pieces) % parts
    rest = [(s, (g,)) for s, groups in pieces[whole:] for g in groups]
    return pieces[index:whole:parts] + rest[index::parts]


def _merge(pieces: list[Piece]) -> list[Piece]:
    """Consecutive pieces of the same shard become one read."""
    merged: list[Piece] = []
    for shard, groups in pieces:
        if merged and merged[-1][0] == shard:
            merged[-1] = (shard, merged[-1][1] + groups)
        else:
            merged.append((shard, groups))
    return merged


def _distributed() -> tuple[int, int]:
    """(rank, world size) of this process: torch.distributed if initialised, else what torchrun/accelerate set."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def summarize_bad_samples(records: list[dict], total_rows: int) -> str:
    """One line per shard: how many rows were skipped, which, and why."""
    if not records:
        return ""
    lines = [f"{len(records)} bad rows skipped ({len(records) / max(total_rows, 1):.2%} of {total_rows:,}):"]
    by_shard = Counter(r["shard"] for r in records)
    for shard, count in sorted(by_shard.items()):
        rows = [r for r in records if r["shard"] == shard]
        reasons = Counter(r["reason"].split(":")[0] for r in rows)
        shown = ", ".join(str(r["row"]) for r in rows[:8]) + (", ..." if len(rows) > 8 else "")
        lines.append(f"  {shard}: {count} (rows {shown}; {', '.join(f'{k} x{v}' for k, v in reasons.items())})")
    return "\n".join(lines)
