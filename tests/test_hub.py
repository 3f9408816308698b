"""t2i.hub: every Hub download pinned to a commit, the pin passed to every loader, recorded in provenance and in
the keys of the caches made from it."""

from __future__ import annotations

import re

import pytest

from t2i import assets, configs, data, hub, paths
from t2i.data import latents
from t2i.errors import MissingAsset
from t2i.pipeline import assets_used


def hub_ids() -> set[str]:
    """Every Hub repository a full profile or `make assets` names."""
    ids = {assets.CLIP_SCORE_MODEL}
    for name in configs.EXPERIMENTS:
        cfg = configs.get(name, "full")
        ids |= {cfg.text_encoder, *([cfg.vae] if cfg.vae else []), *filter(None, [data.spec(cfg).hub_repo])}
    return ids


def test_every_hub_download_is_pinned_to_a_full_commit():
    assert hub_ids() <= set(hub.REVISIONS)
    assert all(re.fullmatch(r"[0-9a-f]{40}", commit) for commit in hub.REVISIONS.values())


def test_loaders_ask_the_hub_for_the_pinned_commit(monkeypatch):
    from t2i import text, vae

    asked = []

    def from_pretrained(name, **kwargs):
        asked.append((name, kwargs.get("revision")))
        raise OSError("offline")

    monkeypatch.setattr(text.AutoConfig, "from_pretrained", from_pretrained)
    monkeypatch.setattr(vae.AutoencoderKL, "from_pretrained", from_pretrained)
    for load in (
        lambda: text.TextEncoder.from_pretrained("openai/clip-vit-base-patch32", 77),
        lambda: vae.LatentCodec.from_pretrained("stabilityai/sd-vae-ft-mse"),
    ):
        with pytest.raises(MissingAsset):
            load()
    assert asked == [
        (repo, hub.REVISIONS[repo]) for repo in ("openai/clip-vit-base-patch32", "stabilityai/sd-vae-ft-mse")
    ]


def test_data_fetched_at_a_revision_keys_the_latent_cache_and_is_recorded_in_provenance():
    cfg = configs.get("celeba", "full")
    before = latents.cache_key(cfg)
    hub.record_download(paths.data_dir() / "celeba", "flwrlabs/celeba")
    after = latents.cache_key(cfg)
    assert before["data"] is None and after["data"] == "flwrlabs/celeba@" + hub.REVISIONS["flwrlabs/celeba"]
    assert after["vae"] == "stabilityai/sd-vae-ft-mse@" + hub.REVISIONS["stabilityai/sd-vae-ft-mse"]
    used = assets_used(cfg)
    assert used["data"] == after["data"] and used["text_encoder"].endswith(hub.REVISIONS[cfg.text_encoder])
