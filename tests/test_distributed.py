import json
import os
import subprocess
import sys
from pathlib import Path

from t2i import checkpoints

HELPER = Path(__file__).resolve().parent / "helpers" / "two_ranks.py"


def two_ranks(out: Path, text_encoder: Path, kind: str) -> list[dict]:
    """Two CPU processes on gloo. `accelerate launch --cpu --num_processes 2` starts CPU processes through MPI
    (mpirun), which this machine lacks; accelerate's torchrun launcher with ACCELERATE_USE_CPU runs the same
    distributed code path without it."""
    launcher = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                             "--mixed_precision", "no", "--dynamo_backend", "no", str(HELPER), str(out),
                             str(text_encoder), kind], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads((out / f"rank{k}.json").read_text()) for k in (0, 1)]


def test_two_processes_on_cpu_end_with_identical_weights_and_disjoint_data(tmp_path, tiny_clip_dir):
    ranks = two_ranks(tmp_path, tiny_clip_dir, "map")
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    seen = [set(r["seen"]) for r in ranks]
    assert not seen[0] & seen[1], "both ranks trained on the same samples"
    assert seen[0] | seen[1] == set(range(64))  # the smoke subset, all of it, once
    assert checkpoints.latest(tmp_path / "run").name == "epoch-0001"


def test_two_ranks_stream_disjoint_rows_and_stop_together_when_one_runs_dry(tmp_path, tiny_clip_dir):
    """3 single-row-group shards of 40 rows on 2 ranks: rank 0 streams two shards, rank 1 one. Rank 1 runs out after 3
    batches of 16; both stop there (no hang in the gradient all-reduce) with identical weights, having read disjoint
    rows."""
    from t2i.data import synthetic

    synthetic.write_class_shards(tmp_path / "shards", num_shards=3, rows_per_shard=40, num_classes=10,
                                 row_group_size=40)
    ranks = two_ranks(tmp_path, tiny_clip_dir, "stream")
    assert ranks[0]["weights"] == ranks[1]["weights"]
    seen = [set(r["seen"]) for r in ranks]
    assert not seen[0] & seen[1]
    assert len(seen[1]) == 40  # the one-shard rank read its whole shard
    shards_of_rank1 = {path[:5] for path in seen[1]}  # paths are "<shard>-<row>.jpg"
    assert len(shards_of_rank1) == 1
    assert not {path[:5] for path in seen[0]} & shards_of_rank1
    assert checkpoints.latest(tmp_path / "run").name == "epoch-0001"
