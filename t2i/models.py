"""The denoising network: a diffusers ``UNet2DConditionModel`` built from an experiment config."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel

from .configs import ExperimentConfig


def build_unet(cfg: ExperimentConfig) -> UNet2DConditionModel:
    """A randomly initialised UNet with the config's architecture (thesis 3.2.2 for MNIST).

    diffusers reads ``attention_head_dim`` as the number of heads (a legacy name), so the thesis configs run many
    narrow heads (CIFAR-10: 32 heads of width 8 at 256 channels). ``attention_head_width`` instead gives each block
    ``channels // width`` heads of that width: the same parameters and FLOPs, fewer and wider heads, which attention
    kernels run faster.
    """
    channels, side, _ = cfg.model_shape  # pixels, or VAE latents for latent diffusion
    heads = (cfg.attention_head_dim if cfg.attention_head_width is None else
             tuple(max(1, c // cfg.attention_head_width) for c in cfg.block_out_channels))
    return UNet2DConditionModel(
        sample_size=side,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=cfg.down_block_types,
        up_block_types=cfg.up_block_types,
        cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=heads,
        norm_num_groups=cfg.norm_num_groups,
    )


def count_parameters(model: torch.nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def check_text_width(cfg: ExperimentConfig, hidden_size: int) -> None:
    """The UNet's cross-attention reads the text encoder's hidden states: their widths must match."""
    if cfg.cross_attention_dim != hidden_size:
        raise ValueError(
            f"cross_attention_dim={cfg.cross_attention_dim} but text encoder {cfg.text_encoder!r} has hidden size "
            f"{hidden_size}; set cross_attention_dim={hidden_size} (e.g. --set cross_attention_dim={hidden_size})"
        )
