"""Run under `accelerate launch --num_processes 2 --cpu`: train a tiny model on the bundled digits (``map``) or on a
parquet shard stream (``stream``), then each rank writes which samples it saw and a digest of its final weights to
OUT/rank<k>.json (read by tests/test_distributed.py)."""

import hashlib
import json
import sys
from pathlib import Path

import torch
from torch.utils.data import Dataset

from t2i import configs, data, objectives
from t2i.data import shards
from t2i.text import CaptionTable, TextEncoder
from t2i.train import Trainer


class RecordingDecoder(shards.ImageLabel):
    """The parquet decoder, recording which row (image path) this process decodes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def __call__(self, row):
        self.seen.append(row["image"]["path"])
        return super().__call__(row)


class Recording(Dataset):
    """The bundled digits, recording every index this process loads."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        self.seen.append(int(index))
        return self.inner[index]


def main(out: Path, text_encoder: str, kind: str) -> None:
    cfg = configs.get("mnist", "smoke", text_encoder=text_encoder, cross_attention_dim=32, epochs=1)
    if kind == "stream":  # 3 synthetic shards on 2 ranks: rank 1 holds one shard and runs out first
        cfg = cfg.replace(channels=3, resolution=16)
        files = sorted((out / "shards").glob("*.parquet"))  # written by the test before launching
        decoder = RecordingDecoder(16, cfg.pixel_range, 10)
        dataset = shards.ShardStream(files, decoder, seed=cfg.seed)
    else:
        dataset = Recording(data.load_dataset(cfg))
    captions = CaptionTable.build(TextEncoder.from_pretrained(cfg.text_encoder, cfg.max_tokens), cfg.captions)
    trainer = Trainer(cfg, out / "run", dataset, objectives.for_config(cfg, captions), log_every=1, restart=False)
    trainer.run()
    seen = decoder.seen if kind == "stream" else dataset.seen
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in unet.parameters())).hexdigest()
    rank = trainer.accelerator.process_index
    (out / f"rank{rank}.json").write_text(
        json.dumps({"seen": seen, "weights": digest, "world": trainer.accelerator.num_processes})
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
