"""Run under `accelerate launch --num_processes 2` (or as one process): ``rehearsal.py OUT EXPERIMENT EPOCHS`` trains
(or resumes) one experiment's smoke profile to EPOCHS, as a cluster job does (``experiment.train``), from whatever the
data directory holds (nothing, the first time). Each rank writes OUT/rank<k>.json: a digest of its final weights
and of every cache file it found (tests/test_distributed.py)."""

import hashlib
import json
import os
import sys
from pathlib import Path

from t2i import checkpoints, configs, experiment, paths

out, name, epochs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cfg = configs.get(name, "smoke", epochs=epochs, **({"preprocess": True} if name == "wikiart" else {}))
run = paths.run_dir(name, "rehearsal")
experiment.train(cfg, run)

rank = int(os.environ.get("RANK", 0))
state = checkpoints.load_unet(checkpoints.latest(run)).state_dict()
digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in state.values())).hexdigest()
caches = {
    str(p.relative_to(paths.data_dir())): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(paths.data_dir().rglob("*"))
    if p.is_file() and not p.name.startswith(".") and p.suffix in (".parquet", ".json", ".safetensors")
}
(out / f"rank{rank}.json").write_text(
    json.dumps({"weights": digest, "caches": caches, "checkpoint": checkpoints.latest(run).name})
)
