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
    heads = (
        cfg.attention_head_dim
        if cfg.attention_head_width is None
        else tuple(max(1, c // cfg.attention_head_width) for c in cfg.block_out_channels)
    )
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


# Regional compilation (https://docs.pytorch.org/tutorials/recipes/regional_compilation.html): the blocks a UNet is
# made of, compiled one by one; the code between blocks (time embedding, skip connections) stays eager. Blocks of one
# class and shape share compiled code, but with static shapes (below) every level of the UNet is a shape of its own, so
# compiling takes about as long as a whole-model compile (`compile_s` in reports/bench/gpu.md); what it may buy is a
# compile that works where the whole model's fails. diffusers' own
# `compile_repeated_blocks` compiles only BasicTransformerBlock, which leaves out the ResNet blocks (GroupNorm, SiLU,
# convolutions) where these UNets spend most of their time.
COMPILED_REGIONS = ("ResnetBlock2D", "Transformer2DModel")


def compile_regions(unet: torch.nn.Module) -> int:
    """``torch.compile`` every :data:`COMPILED_REGIONS` block of ``unet`` in place (``nn.Module.compile``: the weights,
    their names and the state dict are untouched); returns how many blocks.

    Shapes are static: the blocks of one class see a different shape at every level of the UNet, and dynamo's
    automatic dynamic shapes then fail inside inductor ("cannot determine truth value of Relational", torch 2.14 on
    the smoke UNet). Each shape gets its own graph instead, so the recompile limit is raised to hold them all."""
    blocks = [m for m in unet.modules() if type(m).__name__ in COMPILED_REGIONS]
    shapes = 4 * len(blocks)  # every block at the training batch, the last partial batch and sampling's two sizes
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, shapes)
    for block in blocks:
        block.compile(dynamic=False)
    return len(blocks)


def count_parameters(model: torch.nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def check_text_width(cfg: ExperimentConfig, hidden_size: int) -> None:
    """The UNet's cross-attention reads the text encoder's hidden states: their widths must match."""
    if cfg.cross_attention_dim != hidden_size:
        raise ValueError(
            f"cross_attention_dim={cfg.cross_attention_dim} but text encoder {cfg.text_encoder!r} has hidden size "
            f"{hidden_size}; set cross_attention_dim={hidden_size} (e.g. --set cross_attention_dim={hidden_size})"
        )
