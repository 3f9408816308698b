"""``make bench-latent``: a CelebA latent-diffusion training step reading the latent cache vs encoding with the VAE
each step (thesis 3.5.4's claim, measured)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from .. import configs, paths, reports
from ..errors import MissingAsset
from ..models import build_unet, count_parameters
from ..sampling import training_scheduler
from ..vae import LatentCodec
from . import machine


def run(out: Path | None = None, batch_size: int = 8, steps: int = 3) -> str:
    """Thesis 3.5.4's claim, measured: one CelebA training step (full-profile UNet, AdamW) on latents read from the
    cache vs the same step encoding the batch with the VAE first. Same model, same batch, same text embeddings."""
    cfg = configs.get("celeba", "full")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        codec, weights = LatentCodec.from_pretrained(cfg.vae, device=device), f"{cfg.vae} (pretrained)"
    except MissingAsset:  # offline without the weights: the same architecture, random weights, same cost
        torch.manual_seed(0)
        codec = LatentCodec(
            AutoencoderKL(
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(128, 256, 512, 512),
                layers_per_block=2,
                latent_channels=4,
                sample_size=256,
                scaling_factor=0.18215,
            ).to(device)
        )
        weights = f"{cfg.vae}'s architecture with random weights (weights not in the cache; compute is the same)"
    torch.manual_seed(0)
    unet = build_unet(cfg).to(device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.learning_rate)
    scheduler = training_scheduler(cfg)
    images = torch.rand(batch_size, 3, cfg.resolution, cfg.resolution, device=device) * 2 - 1
    mean, std = (t.float() * codec.scaling_factor for t in codec.posterior(images))  # what the cache holds
    emb = torch.randn(batch_size, cfg.max_tokens, cfg.cross_attention_dim, device=device)

    def step(z0: torch.Tensor) -> None:
        eps = torch.randn_like(z0)
        t = torch.randint(0, cfg.num_train_timesteps, (batch_size,), device=device)
        loss = torch.nn.functional.mse_loss(
            unet(scheduler.add_noise(z0, eps, t), t, encoder_hidden_states=emb).sample, eps
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    arms = {
        "latent cache": lambda: step(mean + std * torch.randn_like(mean)),
        "VAE encode every step": lambda: step(codec.encode(images)),
    }
    rows = []
    for name, run in arms.items():
        run()  # warm-up (allocations, cuDNN autotuning)
        times = []
        for _ in range(steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        rows.append(
            {
                "training step": name,
                "s_per_step": float(np.median(times)),
                "images_per_s": batch_size / float(np.median(times)),
            }
        )
        print(f"{name:>22}: {rows[-1]['s_per_step']:.3f} s/step")
    speedup = rows[1]["s_per_step"] / rows[0]["s_per_step"]
    for row in rows:
        row["speedup"] = rows[1]["s_per_step"] / row["s_per_step"]
    out = Path(out or paths.reports_dir() / "bench" / "latent")
    caption = (
        f"One CelebA training step at batch {batch_size} on {device.type} "
        f"({machine() if device.type == 'cpu' else torch.cuda.get_device_name()}), "
        f"median of {steps} after a warm-up: UNet {count_parameters(unet):,} parameters on {cfg.model_shape} "
        f"latents; VAE: {weights}. Reading the cache is {speedup:.1f}x faster per step. Reproduce: make bench-latent."
    )
    table = reports.write_table(rows, out, caption=caption)
    reports.write_provenance(
        out.with_suffix(".md"),
        cfg,
        batch_size=batch_size,
        steps=steps,
        device=str(device),
        speedup=speedup,
        vae_weights=weights,
    )
    print(table)
    return table
