import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from t2i import checkpoints

HELPER = Path(__file__).resolve().parent / "helpers" / "two_ranks.py"


LAUNCH = ("--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--num_processes")


def free_port() -> str:
    """A port for the ranks' rendezvous: tests run in parallel, and two launches on accelerate's default collide."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def two_ranks(out: Path, text_encoder: Path, kind: str) -> list[dict]:
    """Two CPU processes on gloo. `accelerate launch --cpu --num_processes 2` starts CPU processes through MPI
    (mpirun), which this machine lacks; accelerate's torchrun launcher with ACCELERATE_USE_CPU runs the same
    distributed code path without it."""
    launcher = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            str(launcher),
            "launch",
            *LAUNCH,
            "2",
            "--main_process_port",
            free_port(),
            str(HELPER),
            str(out),
            str(text_encoder),
            kind,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
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

    synthetic.write_class_shards(
        tmp_path / "shards", num_shards=3, rows_per_shard=40, num_classes=10, row_group_size=40
    )
    ranks = two_ranks(tmp_path, tiny_clip_dir, "stream")
    assert ranks[0]["weights"] == ranks[1]["weights"]
    seen = [set(r["seen"]) for r in ranks]
    assert not seen[0] & seen[1]
    assert len(seen[1]) == 40  # the one-shard rank read its whole shard
    shards_of_rank1 = {path[:5] for path in seen[1]}  # paths are "<shard>-<row>.jpg"
    assert len(shards_of_rank1) == 1
    assert not {path[:5] for path in seen[0]} & shards_of_rank1
    assert checkpoints.latest(tmp_path / "run").name == "epoch-0001"


REHEARSAL = Path(__file__).resolve().parent / "helpers" / "rehearsal.py"


def rehearse(name: str, data_dir: Path, out: Path, processes: int, epochs: int) -> tuple[list[dict], str]:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "T2I_DATA_DIR": str(data_dir), "T2I_RUNS_DIR": str(out / "runs"), "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, str(REHEARSAL), str(out), name, str(epochs)]
    else:
        env["ACCELERATE_USE_CPU"] = "true"
        command = [
            str(Path(sys.executable).with_name("accelerate")),
            "launch",
            *LAUNCH,
            str(processes),
            "--main_process_port",
            free_port(),
            str(REHEARSAL),
            str(out),
            name,
            str(epochs),
        ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return [json.loads((out / f"rank{k}.json").read_text()) for k in range(processes)], result.stdout + result.stderr


@pytest.mark.parametrize("name", ["mnist", "cifar10", "wikiart", "celeba"])
def test_two_processes_from_a_cold_cache_build_every_cache_once_train_and_resume(name, tmp_path):
    """Day one on a multi-GPU node, on CPU: both ranks start with nothing on disk. Every derived file (synthetic
    shards, preprocessed shards, the tiny VAE, the latent cache) is built once, by one rank, and is byte-identical to
    what one process builds; both ranks end with the same weights after training, checkpointing and resuming."""
    first, log = rehearse(name, tmp_path / "data", tmp_path / "two", 2, epochs=1)
    ranks, resumed = rehearse(name, tmp_path / "data", tmp_path / "two", 2, epochs=2)  # the requeued job
    # what one process builds (the digits of mnist's smoke profile are in memory: it has no caches)
    alone = rehearse(name, tmp_path / "data-alone", tmp_path / "one", 1, epochs=1)[0] if name != "mnist" else first
    assert "resuming rehearsal from epoch-0001" in resumed
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["checkpoint"] == ranks[1]["checkpoint"] == "epoch-0002"
    assert first[0]["caches"] == first[1]["caches"] == ranks[0]["caches"] == alone[0]["caches"]
    built = {
        "writing synthetic": name != "mnist",
        "encoding celeba with the VAE: building": name == "celeba",
        "preprocessing shards: building": name == "wikiart",
    }
    for phrase, expected in built.items():  # each is said once, by the one rank that builds it
        assert log.count(phrase) == int(expected), (phrase, log[-3000:])
