import json
import os
import subprocess
import sys
from pathlib import Path

from t2i import checkpoints

HELPER = Path(__file__).resolve().parent / "helpers" / "two_ranks.py"


def test_two_processes_on_cpu_end_with_identical_weights_and_disjoint_data(tmp_path, tiny_clip_dir):
    """Two CPU processes on gloo. `accelerate launch --cpu --num_processes 2` starts CPU processes through MPI
    (mpirun), which this machine lacks; accelerate's torchrun launcher with ACCELERATE_USE_CPU runs the same
    distributed code path without it."""
    launcher = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                             "--mixed_precision", "no", "--dynamo_backend", "no", str(HELPER), str(tmp_path),
                             str(tiny_clip_dir)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    ranks = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    seen = [set(r["seen"]) for r in ranks]
    assert not seen[0] & seen[1], "both ranks trained on the same samples"
    assert seen[0] | seen[1] == set(range(64))  # the smoke subset, all of it, once
    assert checkpoints.latest(tmp_path / "run").name == "epoch-0001"
