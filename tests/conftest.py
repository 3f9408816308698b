"""Shared fixtures: tiny models built from configs with random weights, saved and re-loaded through the same
``from_pretrained`` path the real weights use; every run and report goes to a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from tokenizers import pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from t2i import configs

TINY_CLIP_WIDTH = 32


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path, monkeypatch):
    """Runs, reports and data caches of a test never touch the project's own folders."""
    monkeypatch.setenv("T2I_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("T2I_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    # accelerate keeps one process-wide state (precision, device); a new Python process per run is what users get
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A CLIP text encoder with random weights and a small CLIP BPE tokenizer (the real byte alphabet plus merges
    for the caption words, so "A handwritten digit 3" is 4 tokens as in CLIP), saved like a hub checkpoint."""
    path = tmp_path_factory.mktemp("tiny-clip")
    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    merges = []
    for word in ("handwritten", "digit", "photo", "of"):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        for piece in pieces[1:]:
            merges.append((pieces[0], piece))
            pieces[0] += piece
            vocab.append(pieces[0])
    vocab = list(dict.fromkeys(vocab))
    tokenizer = CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=merges)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=TINY_CLIP_WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    CLIPTextModel(config).save_pretrained(path)
    return path


@pytest.fixture
def smoke_cfg(tiny_clip_dir) -> configs.ExperimentConfig:
    """The smoke profile conditioned on the tiny CLIP encoder."""
    return configs.get("mnist", "smoke", text_encoder=str(tiny_clip_dir), cross_attention_dim=TINY_CLIP_WIDTH)


@pytest.fixture(scope="session")
def tiny_clip_scorer_dir(tmp_path_factory, tiny_clip_dir) -> Path:
    """A full CLIP (text + vision towers, random weights) with its processor, saved like a hub checkpoint."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    path = tmp_path_factory.mktemp("tiny-clip-scorer")
    tokenizer = CLIPTokenizer.from_pretrained(tiny_clip_dir)
    text = CLIPTextConfig.from_pretrained(tiny_clip_dir).to_dict()
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(path)
    CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    ).save_pretrained(path)
    return path


@pytest.fixture
def caption_table(smoke_cfg):
    from t2i.text import CaptionTable, TextEncoder

    return CaptionTable.build(
        TextEncoder.from_pretrained(smoke_cfg.text_encoder, smoke_cfg.max_tokens), smoke_cfg.captions
    )


@pytest.fixture
def fit(caption_table):
    """``train.fit`` on the config's training set with the smoke captions' objective, unless given others."""
    from t2i import data, objectives, train

    def run(cfg, run_dir, dataset=None, objective=None, **kwargs):
        return train.fit(
            cfg,
            run_dir,
            dataset if dataset is not None else data.load_dataset(cfg),
            objective or objectives.for_config(cfg, caption_table),
            **kwargs,
        )

    return run
