"""Every Hugging Face Hub download, pinned to a commit: a re-upload cannot change a result without a trace.

:data:`REVISIONS` is the one table. ``from_pretrained`` and ``snapshot_download`` get the pinned revision (offline, the
Hub cache resolves it to ``snapshots/<commit>/``), provenance records it, and derived caches (latents, preprocessed
shards, judges) are keyed by it, so data fetched at another revision is rebuilt, never silently reused.

Downloads that are not on the Hub are pinned by their own checksums: torchvision checks MNIST's and CIFAR-10's MD5s,
and pytorch-fid's Inception weights carry their hash in the file name (``t2i.metrics.FID_WEIGHTS_URL``).
"""

from __future__ import annotations

import json
from pathlib import Path

REVISIONS = {
    # text encoder of every full profile (thesis 3.2.2); https://huggingface.co/openai/clip-vit-base-patch32
    "openai/clip-vit-base-patch32": "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268",
    # the CLIP-score model (t2i.metrics.ClipScorer); https://huggingface.co/openai/clip-vit-base-patch16
    "openai/clip-vit-base-patch16": "57c216476eefef5ab752ec549e440a49ae4ae5f3",
    # FD_DINOv2's feature network (Stein et al. 2023 use DINOv2 ViT-L/14), the commit that added model.safetensors;
    # https://huggingface.co/facebook/dinov2-large/tree/0ff9d1340c9524c60f3f03e8573c57a1f8197f24
    "facebook/dinov2-large": "0ff9d1340c9524c60f3f03e8573c57a1f8197f24",
    # CelebA's VAE (thesis 3.5.4); https://huggingface.co/stabilityai/sd-vae-ft-mse
    "stabilityai/sd-vae-ft-mse": "31f26fdeee1355a5c34592e401dd41e45d25a493",
    # WikiArt (thesis 3.4.2), 72 parquet shards; https://huggingface.co/datasets/huggan/wikiart/tree/95a63ba9...
    "huggan/wikiart": "95a63ba9d977acef34a0203a13e4b5b794145526",
    # CelebA (thesis 3.5.2), img_align+identity+attr; https://huggingface.co/datasets/flwrlabs/celeba/tree/2d738f56...
    "flwrlabs/celeba": "2d738f56e0e7f925ea36ae7c808ea925264aacec",
}


def revision(repo_id: str) -> str | None:
    """The pinned commit of a Hub repository (None for local folders, bundled and synthetic models)."""
    return REVISIONS.get(repo_id)


def cached(repo_id: str) -> bool:
    """Is the pinned revision of a Hub model in the local cache (``HF_HOME``), so it loads offline?"""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision(repo_id)), str)


def describe(repo_id: str | None) -> str | None:
    """``repo@commit`` for provenance: what exactly a result was made from."""
    if repo_id is None:
        return None
    pinned = revision(repo_id)
    return f"{repo_id}@{pinned}" if pinned else repo_id


MARKER = "t2i-revision.json"  # beside downloaded data: which repository and commit it came from


def record_download(folder: Path, repo_id: str) -> None:
    """Write :data:`MARKER` in a folder ``snapshot_download`` filled, so derived caches can be keyed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(json.dumps({"repo": repo_id, "revision": revision(repo_id)}, indent=2) + "\n")


def downloaded(pattern: str, data_dir: Path) -> str | None:
    """``repo@commit`` of the data under ``data_dir / <first folder of pattern>``, as :func:`record_download`
    wrote it; None for data made here (synthetic shards) or fetched before revisions were recorded."""
    marker = data_dir / pattern.split("/")[0] / MARKER
    if not marker.is_file():
        return None
    record = json.loads(marker.read_text())
    return f"{record['repo']}@{record['revision']}"
