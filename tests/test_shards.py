"""The parquet streaming dataset: exactly-once coverage, reshuffling, determinism, bad rows, preprocessing."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from t2i import checkpoints, configs, data, experiment, paths, runs
from t2i.data import derived, shards, synthetic
from t2i.data.images import BadSample, decode_image, to_rgb


class RowId:
    """A decoder that yields which row it was given: ``"<shard>-<row>"`` from the image path column."""

    columns = ["image"]

    def __call__(self, row):
        return row["image"]["path"]


def rows_seen(stream, num_workers: int) -> list[str]:
    loader = DataLoader(stream, batch_size=5, num_workers=num_workers)
    return [row for batch in loader for row in batch]


@pytest.fixture(scope="module")
def shard_files(tmp_path_factory):
    """3 shards of 30 rows in row groups of 8 (uneven on purpose)."""
    return synthetic.write_class_shards(
        tmp_path_factory.mktemp("shards"), num_shards=3, rows_per_shard=30, num_classes=4, row_group_size=8
    )


ALL_ROWS = sorted(f"{s:05d}-{r:05d}.jpg" for s in range(3) for r in range(30))


@pytest.mark.parametrize("num_workers", [0, 1, 2, 3, 4])
def test_every_shard_row_seen_once_per_epoch_for_any_worker_count(shard_files, num_workers):
    seen = rows_seen(shards.ShardStream(shard_files, RowId(), seed=3), num_workers)
    assert sorted(seen) == ALL_ROWS  # all 90, none twice (4 workers > 3 shards: row groups are dealt instead)


@pytest.mark.parametrize("num_workers", [1, 2, 3])
def test_two_ranks_split_the_rows_without_overlap(shard_files, num_workers):
    per_rank = [
        rows_seen(shards.ShardStream(shard_files, RowId(), seed=3, rank=r, world_size=2), num_workers) for r in range(2)
    ]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == ALL_ROWS
    assert len(shards.ShardStream(shard_files, RowId(), rank=0, world_size=2)) == len(per_rank[0])


def test_a_consumer_reads_whole_shards_when_there_are_enough(shard_files):
    stream = shards.ShardStream(shard_files, RowId(), seed=0)
    for worker in range(3):
        pieces = stream.assignment(worker, num_workers=3)
        assert len(pieces) == 1 and pieces[0][1] == (0, 1, 2, 3)  # one shard, all 4 row groups


def test_shares_differ_by_at_most_a_row_group_when_shards_do_not_divide(shard_files):
    """3 shards (row groups of 8, 8, 8, 6 rows) on 2 ranks: one whole shard each, the third's row groups alternate."""
    rows = [len(shards.ShardStream(shard_files, RowId(), seed=0, rank=r, world_size=2)) for r in range(2)]
    assert sorted(rows) == [44, 46] and sum(rows) == 90


def test_shard_order_and_rows_reshuffle_every_epoch_and_repeat_for_a_seed(shard_files):
    stream = shards.ShardStream(shard_files, RowId(), seed=7)
    epoch0 = rows_seen(stream, 0)
    stream.set_epoch(1)
    epoch1 = rows_seen(stream, 0)
    assert epoch0 != epoch1 and sorted(epoch0) == sorted(epoch1)
    again = shards.ShardStream(shard_files, RowId(), seed=7)
    assert rows_seen(again, 0) == epoch0
    assert rows_seen(shards.ShardStream(shard_files, RowId(), seed=8), 0) != epoch0
    # rows stay together by shard: file-sequential, not globally shuffled
    assert [row[:5] for row in epoch0[:30]] == [epoch0[0][:5]] * 30


BAD_ROWS = {
    (0, 1): "empty",
    (0, 2): "garbage",
    (1, 3): "truncated_jpeg",
    (1, 4): "zero_size",
    (2, 5): "missing_label",
    (2, 6): "unknown_label",
}
ODD_ROWS = {(0, 7): "cmyk", (0, 8): "rgba", (1, 9): "grayscale", (2, 10): "palette"}


@pytest.fixture(scope="module")
def bad_shards(tmp_path_factory):
    return synthetic.write_class_shards(
        tmp_path_factory.mktemp("bad"),
        num_shards=3,
        rows_per_shard=40,
        num_classes=4,
        row_group_size=16,
        odd_rows={**BAD_ROWS, **ODD_ROWS},
    )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_every_kind_of_bad_row_is_skipped_counted_and_listed(bad_shards, tmp_path, num_workers):
    stream = shards.ShardStream(
        bad_shards, shards.ImageLabel(16, (-1.0, 1.0), 4), max_bad_fraction=0.1, log_dir=tmp_path
    )
    examples = sum(len(labels) for _, labels in DataLoader(stream, batch_size=8, num_workers=num_workers))
    assert examples == 120 - len(BAD_ROWS)  # the four odd-mode images were converted and kept
    records = stream.bad_samples(epoch=0)
    assert {(int(r["shard"][6:11]), r["row"]) for r in records} == set(BAD_ROWS)
    reasons = {(int(r["shard"][6:11]), r["row"]): r["reason"] for r in records}
    assert reasons[(0, 1)] == "empty image bytes"
    assert reasons[(2, 5)] == "missing label" and reasons[(2, 6)].startswith("unknown label 11")
    assert all(reasons[k].startswith("unreadable image") for k in [(0, 2), (1, 3), (1, 4)])
    list(stream)  # the same epoch read again (a run resumed mid-epoch re-decodes its first rows): listed once
    assert [(r["shard"], r["row"], r["reason"]) for r in stream.bad_samples(epoch=0)] == [
        (r["shard"], r["row"], r["reason"]) for r in records
    ]
    summary = shards.summarize_bad_samples(records, stream.total_rows)
    assert summary.startswith("6 bad rows skipped (5.00% of 120)") and "train-00001-of-00003.parquet: 2" in summary


def test_too_many_bad_rows_stop_the_run_naming_shard_and_row(bad_shards, tmp_path):
    stream = shards.ShardStream(
        bad_shards, shards.ImageLabel(16, (-1.0, 1.0), 4), shuffle=False, max_bad_fraction=0.01, log_dir=tmp_path
    )  # 1% of 120 rows: the second bad row
    with pytest.raises(shards.TooManyBadSamples, match=r"2 bad rows in 120 .* train-00000-of-00003.parquet row 2"):
        list(stream)


def test_truncated_jpeg_opens_but_is_rejected_on_load():
    good = synthetic.encode(synthetic.class_image(1, 4, (64, 48), np.random.default_rng(0)))
    assert decode_image(good, 16).shape == (16, 16, 3)
    with pytest.raises(BadSample, match="unreadable image"):
        decode_image(good[: len(good) // 2], 16)


def test_odd_modes_become_rgb_with_transparency_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    assert np.asarray(to_rgb(rgba)).tolist() == [[[255, 255, 255]] * 4] * 4
    assert to_rgb(Image.new("CMYK", (4, 4))).mode == "RGB"
    assert to_rgb(Image.new("I;16", (4, 4), 1000)).mode == "RGB"
    wide = Image.new("RGB", (90, 30), (0, 0, 255))
    out = decode_image(synthetic.encode(wide, "PNG"), 8)
    assert out.shape == (8, 8, 3) and (out[..., 2] > 250).all()  # shorter side resized, then centre-cropped


def test_preprocessed_shards_hold_the_decoded_pixels_and_rebuild_when_the_key_changes(bad_shards, tmp_path):
    decoder = shards.ImageLabel(16, (-1.0, 1.0), 4)
    out = tmp_path / "pre"
    files = derived.preprocess(bad_shards, out, decoder)
    assert len(derived.skipped_rows(out)) == len(BAD_ROWS)
    plain = list(shards.ShardStream(bad_shards, decoder, shuffle=False, max_bad_fraction=0.1, log_dir=tmp_path))
    fast = list(shards.ShardStream(files, shards.Pixels(16, (-1.0, 1.0), 4), shuffle=False))
    assert len(fast) == len(plain)
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(plain, fast))

    mtimes = [f.stat().st_mtime_ns for f in files]
    derived.preprocess(bad_shards, out, decoder)  # same key: reused as is
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    files[1].unlink()  # an interrupted build: resumes with the missing shard only
    derived.preprocess(bad_shards, out, decoder)
    assert files[1].exists() and [f.stat().st_mtime_ns for f in (files[0], files[2])] == [mtimes[0], mtimes[2]]
    derived.preprocess(bad_shards, out, shards.ImageLabel(8, (-1.0, 1.0), 4))  # new resolution: rebuilt
    assert all(f.stat().st_mtime_ns != m for f, m in zip(files, mtimes))


def test_missing_shards_name_the_pattern_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no parquet shards match .*wikiart.*make assets"):
        shards.find_shards("wikiart/data/train-*.parquet", tmp_path)


def test_training_on_a_stream_lists_bad_rows_and_profiles_stages(bad_shards, tiny_clip_dir, monkeypatch):
    from tests.conftest import TINY_CLIP_WIDTH

    monkeypatch.setenv("T2I_DATA_DIR", str(bad_shards[0].parent.parent))
    cfg = configs.get(
        "wikiart",
        "smoke",
        shards=f"{bad_shards[0].parent.name}/train-*.parquet",
        label_column="label",
        class_names=("a", "b", "c", "d"),
        resolution=16,
        num_workers=2,
        max_bad_fraction=0.1,
        timing_steps=2,
        text_encoder=str(tiny_clip_dir),
        cross_attention_dim=TINY_CLIP_WIDTH,
    )
    run = paths.run_dir("wikiart", "stream")
    experiment.train(cfg, run)
    with open(run / "bad_samples.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(BAD_ROWS) and {r["epoch"] for r in rows} == {"1"}
    profile = (run / "timing.md").read_text()
    for stage in (
        "data wait",
        "host-to-device",
        "text",
        "CFG masking",
        "noise",
        "forward",
        "loss",
        "backward",
        "optimizer",
        "EMA",
        "total",
    ):
        assert f"| {stage} |" in profile


def test_smoke_profiles_write_synthetic_shards_on_first_use(monkeypatch, tmp_path):
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path))
    cfg = configs.get("cifar10", "smoke")
    stream = data.load_dataset(cfg)
    assert stream.total_rows == 120 and len(stream.files) == 3
    images, labels = data.load_images(cfg, "judge_test")
    assert images.shape == (16, 3, 16, 16) and 0 <= images.min() and images.max() <= 1  # every 5th of 80 test rows
    train_images, _ = data.load_images(cfg, "judge_train")
    assert len(train_images) == 64


def test_labels_named_differently_in_the_file_than_in_the_config_are_an_error(tmp_path):
    import json as _json

    import pyarrow as pa
    import pyarrow.parquet as pq

    names = ["Abstract_Expressionism", "Ukiyo_e"]
    meta = {b"huggingface": _json.dumps({"info": {"features": {"style": {"names": names, "_type": "ClassLabel"}}}})}
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.table({"style": [0, 1]}).replace_schema_metadata(meta), path)
    shards.check_class_names(path, "style", ["Abstract Expressionism", "Ukiyo-e"])  # same names, other spelling
    with pytest.raises(ValueError, match="captions them as"):
        shards.check_class_names(path, "style", ["Ukiyo-e", "Abstract Expressionism"])


def test_a_stream_read_by_several_workers_ends_its_cosine_schedule_on_its_last_step(
    tiny_clip_dir, monkeypatch, tmp_path
):
    """Each worker batches its own rows (3 workers x 40 rows at batch 16: 9 batches, where the DataLoader's len says
    8): the LR schedule's horizon counts what the workers really yield, so a cosine schedule ends at 0, not past it."""
    from tests.conftest import TINY_CLIP_WIDTH

    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "data"))
    cfg = configs.get(
        "cifar10",
        "smoke",
        num_workers=3,
        epochs=2,
        lr_schedule="cosine",
        text_encoder=str(tiny_clip_dir),
        cross_attention_dim=TINY_CLIP_WIDTH,
    )
    stream = data.load_dataset(cfg)
    assert [stream.batches(e, cfg.batch_size, cfg.num_workers) for e in range(2)] == [9, 9]
    run = experiment.train(cfg, paths.run_dir("cifar10", "workers"))
    assert runs.read_loss_log(run)["step"].tolist() == list(range(1, 19))
    last_lr = checkpoints.load_state(checkpoints.latest(run))["lr_schedule"]["_last_lr"][0]
    assert last_lr == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("damage", ["zero_bytes", "cut_footer"])
def test_a_shard_that_cannot_be_opened_is_one_line_naming_it(tmp_path, damage):
    from t2i.data import synthetic

    files = synthetic.write_class_shards(tmp_path, num_shards=2, rows_per_shard=8, num_classes=3)
    content = files[1].read_bytes()
    files[1].write_bytes(b"" if damage == "zero_bytes" else content[:-20])
    with pytest.raises(shards.UnreadableShard, match=f"{files[1].name} .* is not a readable parquet file"):
        shards.ShardStream(files, shards.ImageLabel(16, (0.0, 1.0), 3))
