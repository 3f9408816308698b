"""What a command needs on disk, checked up front: every missing asset named in one message, with the command that
stages them (`make assets` on a node with internet). And :func:`fetch`, which is that command.

Compute nodes have no internet, so a model id is only usable if the Hugging Face cache (``HF_HOME``) already holds
it; local folders and the bundled MiniLM are checked where they are.
"""

from __future__ import annotations

from pathlib import Path

import torch
from . import configs, data, hub, metrics
from .configs import ExperimentConfig
from .errors import MissingAsset
from .text import BUNDLED_PREFIX, TextEncoder, resolve
from .vae import SYNTHETIC, LatentCodec

CLIP_SCORE_MODEL = "openai/clip-vit-base-patch16"  # the CLIP-score model (not the conditioning one; metrics.py)


def missing(
    cfg: ExperimentConfig | None,
    *,
    text: bool = False,
    dataset: bool = False,
    vae: bool = False,
    inception: bool = False,
    clip_model: str | None = None,
) -> list[str]:
    """The assets among those asked for that are not on disk, one phrase each."""
    found = []
    if text and not _model_available(cfg.text_encoder):
        found.append(f"text encoder {cfg.text_encoder!r}")
    if dataset:
        found += data.spec(cfg).missing(cfg)
    if vae and cfg.vae is not None and not _model_available(cfg.vae):
        found.append(f"VAE {cfg.vae!r}")
    if inception and not metrics.inception_weights_path().exists():
        found.append(f"FID Inception weights {metrics.inception_weights_path()}")
    if clip_model and not _model_available(clip_model):
        found.append(f"CLIP-score model {clip_model!r}")
    return found


def require(cfg: ExperimentConfig, **needs: bool | str | None) -> None:
    """Raise :class:`~t2i.errors.MissingAsset` listing everything :func:`missing` finds."""
    absent = missing(cfg, **needs)
    if absent:
        raise MissingAsset(
            f"not available offline: {'; '.join(absent)}. Stage them on a node with internet: "
            f"`make assets EXPERIMENTS={cfg.experiment}` (Hugging Face models go to HF_HOME, data to "
            "T2I_DATA_DIR)"
        )


def fetch(experiment: str) -> None:
    """Fill the caches a compute node reads (needs internet): the dataset, the text encoder and VAE in the Hugging
    Face cache, pytorch-fid's Inception weights under TORCH_HOME, the CLIP-score model and DINOv2 (FD_DINOv2)."""
    cfg = configs.get(experiment, "full")
    data.spec(cfg).fetch(cfg)
    print(f"{cfg.dataset} data in {cfg.shards or 'the data dir'}")
    TextEncoder.from_pretrained(cfg.text_encoder, cfg.max_tokens)
    print(f"{cfg.text_encoder} in the Hugging Face cache")
    if cfg.vae is not None:
        LatentCodec.from_pretrained(cfg.vae)
        print(f"{cfg.vae} in the Hugging Face cache")
    torch.hub.load_state_dict_from_url(metrics.FID_WEIGHTS_URL, progress=True)  # pytorch-fid's Inception
    print(f"FID Inception weights in {metrics.inception_weights_path()}")
    metrics.ClipScorer(CLIP_SCORE_MODEL)
    print(f"{CLIP_SCORE_MODEL} in the Hugging Face cache")
    metrics.DinoV2Extractor(metrics.DINOV2_MODEL)  # FD_DINOv2 (make guidance, where staged)
    print(f"{metrics.DINOV2_MODEL} in the Hugging Face cache")


def _model_available(name_or_path: str) -> bool:
    """A bundled model, a local folder with a config, or a hub id whose config is in the local cache."""
    if name_or_path == SYNTHETIC:
        return True  # written on first use
    if name_or_path.startswith(BUNDLED_PREFIX):
        try:
            resolve(name_or_path)
        except (MissingAsset, ValueError):
            return False
        return True
    if Path(name_or_path).expanduser().exists():
        return (Path(name_or_path).expanduser() / "config.json").exists()
    return hub.cached(name_or_path)
