"""The project trainer's step for ``make bench-gpu``: :meth:`t2i.train.Trainer.advance` on its real loader, over
synthetic data in each experiment's format (painting-size JPEG shards for WikiArt, a latent cache for CelebA)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

from .. import assets, data, objectives, runs
from ..configs import ExperimentConfig
from ..data import celeba, derived, latents, shards, synthetic
from ..text import CaptionTable, TextEncoder, resolve
from ..train import Trainer
from .measure import peak_gib, reset_memory, step_times, summary, time_steps


def trainer(cfg: ExperimentConfig, device: torch.device, steps: int, warmup: int, cell_s: float) -> dict:
    """The project's trainer on its real data path: ``Trainer.advance`` per step, the loader's wait timed apart."""
    reset_memory(device)
    with tempfile.TemporaryDirectory(prefix="t2i-bench-") as tmp:
        work = Path(tmp)
        dataset, objective = trainer_inputs(cfg, work, batches=steps + warmup + 1)  # steps: the most it times
        trainer = Trainer(cfg, work / "run", dataset, objective, log_every=10, restart=False)
        trainer.batches.set_epoch(0)
        loader = trainer.batches.iterate()
        waited = [0.0]

        def step(log: runs.LossLog) -> None:
            start = time.perf_counter()
            batch = next(loader)
            waited[0] += time.perf_counter() - start
            trainer.advance(batch, log)

        with runs.LossLog(work / "run", enabled=False) as log:
            time_steps(lambda: step(log), warmup, device)
            waited[0] = 0.0
            times = step_times(lambda: step(log), steps, device, cell_s)
        measured = {
            **summary(times),
            "peak_gib": peak_gib(device),
            "data_wait_pct": 100 * waited[0] / (sum(times) / 1000),
        }
        if isinstance(objective.conditioner, celeba.AttributeCaptions):  # captions encoded in every step
            measured["encoder_flop"] = encoder_flop(objective.conditioner.encoder, cfg.batch_size)
        return measured


def trainer_inputs(cfg: ExperimentConfig, work: Path, batches: int):
    """Training examples in the experiment's real format, ``batches`` batches of them, and its objective."""
    n = cfg.batch_size * batches
    generator = torch.Generator().manual_seed(0)
    if cfg.vae is not None:  # a latent cache of random posteriors; captions drawn from random attributes
        files = synthetic_latent_cache(cfg, work / "latents", n)
        conditioner = celeba.AttributeCaptions(text_encoder(cfg))
        return (
            latents.stream(cfg, files, transform=conditioner.example_transform),
            objectives.for_config(cfg, conditioner),
        )
    conditioner = CaptionTable(
        torch.randn(len(cfg.class_names), cfg.max_tokens, cfg.cross_attention_dim, generator=generator),
        torch.randn(cfg.max_tokens, cfg.cross_attention_dim),
    )
    if cfg.shards is not None:  # painting-size JPEGs in the dataset's parquet layout, one shard per worker
        workers = max(cfg.num_workers, 1)
        rows = -(-n // workers) + cfg.batch_size  # every worker yields full batches
        synthetic.write_class_shards(
            work / "shards",
            workers,
            rows,
            len(cfg.class_names),
            image_size=(1400, 1100),
            image_column=cfg.image_column,
            label_column=cfg.label_column,
            grain=0.012,
            row_group_size=64,
            distinct_images=2 * len(cfg.class_names),
        )
        dataset = shards.ShardStream(
            shards.find_shards(str(work / "shards" / "train-*.parquet")),
            data.spec(cfg).row_decoder(cfg),
            seed=cfg.seed,
            max_bad_fraction=cfg.max_bad_fraction,
        )
        return dataset, objectives.for_config(cfg, conditioner)
    images = torch.rand(n, *cfg.model_shape, generator=generator) * (cfg.pixel_range[1] - cfg.pixel_range[0])
    labels = torch.randint(0, len(cfg.class_names), (n,), generator=generator)
    return TensorDataset(images + cfg.pixel_range[0], labels), objectives.for_config(cfg, conditioner)


def synthetic_latent_cache(cfg: ExperimentConfig, out: Path, rows: int) -> list[Path]:
    """Latent-cache shards (random posterior mean/std in float16, random attributes) with the cache's key file."""
    rng = np.random.default_rng(0)
    out.mkdir(parents=True)
    size = int(np.prod(cfg.model_shape))
    workers = max(cfg.num_workers, 1)
    per_shard = -(-rows // workers) + cfg.batch_size
    files = []
    for k in range(workers):
        mean = rng.normal(0, 1, (per_shard, size)).astype(np.float16)
        std = rng.uniform(0.01, 0.1, (per_shard, size)).astype(np.float16)
        attributes = (rng.random((per_shard, len(celeba.ATTRIBUTES))) < 0.3).astype(np.int64)
        table = pa.table(
            {
                "row": np.arange(per_shard),
                "mean": pa.array([m.tobytes() for m in mean], pa.binary(2 * size)),
                "std": pa.array([s.tobytes() for s in std], pa.binary(2 * size)),
                "condition": pa.array([a.tobytes() for a in attributes], pa.binary()),
            }
        )
        files.append(out / f"train-{k:05d}-of-{workers:05d}.parquet")
        pq.write_table(table, files[-1], row_group_size=64)
    (out / derived.KEY_FILE).write_text(json.dumps(latents.cache_key(cfg)))
    return files


def text_encoder(cfg: ExperimentConfig) -> TextEncoder:
    """The config's text encoder if it is on disk, else one of its size with random weights (CLIP ViT-B/32's text
    tower: 12 layers, width 512), tokenised with the bundled MiniLM tokenizer: the same compute per caption."""
    if not assets.missing(cfg, text=True):
        return TextEncoder.from_pretrained(cfg.text_encoder, cfg.max_tokens)
    torch.manual_seed(0)
    model = CLIPTextModel(
        CLIPTextConfig(hidden_size=cfg.cross_attention_dim, max_position_embeddings=max(77, cfg.max_tokens))
    )
    return TextEncoder(AutoTokenizer.from_pretrained(resolve("bundled:all-MiniLM-L6-v2")), model, cfg.max_tokens)


def encoder_flop(encoder: TextEncoder, batch: int) -> float:
    """FLOP of the text encoder's forward over one batch of captions (every caption padded to max_tokens)."""
    tokens = encoder.tokenize([""] * batch)
    with FlopCounterMode(display=False) as counter:
        encoder.embed_tokens(tokens)
    return float(counter.get_total_flops())
