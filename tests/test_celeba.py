"""Experiment 4: attribute captions, the VAE latent codec and the latent cache."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from t2i import configs, data, experiment, paths
from t2i.data import celeba, latents
from t2i.vae import LatentCodec

THESIS_EXAMPLES = {  # thesis 3.5.3's example captions and the attributes behind them
    "A photo of a young woman with straight blond hair, bangs, smiling, wearing earrings": [
        "Young",
        "Straight_Hair",
        "Blond_Hair",
        "Bangs",
        "Smiling",
        "Wearing_Earrings",
        "No_Beard",
    ],
    "A photo of a man with black hair, a mustache, wearing eyeglasses": [
        "Male",
        "Black_Hair",
        "Mustache",
        "Eyeglasses",
    ],
    "A photo of a young man with brown hair, high cheekbones, a clean-shaven face": [
        "Young",
        "Male",
        "Brown_Hair",
        "High_Cheekbones",
        "No_Beard",
    ],
    "A photo of a woman with wavy brown hair, pale skin, wearing a necklace": [
        "Wavy_Hair",
        "Brown_Hair",
        "Pale_Skin",
        "Wearing_Necklace",
        "No_Beard",
    ],
}


@pytest.mark.parametrize("expected", THESIS_EXAMPLES)
def test_the_thesis_example_captions_come_out_of_the_generator(expected):
    vector = celeba.vector(THESIS_EXAMPLES[expected])
    assert celeba.prompt(*THESIS_EXAMPLES[expected]) == expected
    produced = {celeba.caption(vector, seed) for seed in range(300)}
    assert expected in produced and len(produced) > 1  # one of several phrasings


def random_vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (n, len(celeba.ATTRIBUTES)))


HAIR_COLOUR = re.compile(r"\b(gray|grey|blond|blonde|black|brown)\b")
NEGATIONS = re.compile(r"\b(no|not|without|neutral|none)\b")


def test_no_caption_has_two_hair_colours_a_negation_or_a_contradiction():
    for i, vector in enumerate(random_vectors(3000)):
        text = celeba.caption(vector, i)
        on = dict(zip(celeba.ATTRIBUTES, vector))
        assert len(HAIR_COLOUR.findall(text)) <= 1, text
        assert not NEGATIONS.search(text), text
        assert text.count("eyebrows") <= 1, text
        if on["Bald"]:
            assert " hair" not in text.replace("hairline", ""), text
        if not on["Male"]:
            assert not re.search(r"goatee|mustache|moustache|stubble|shadow|sideburns|clean-shaven", text), text
        if on["Male"] and (on["Goatee"] or on["Mustache"]):
            assert "clean-shaven" not in text, text
        assert text.startswith("A blurry photo of a " if on["Blurry"] else "A photo of a ")


def test_collision_priorities():
    assert celeba.prompt("Black_Hair", "Brown_Hair").endswith("with black hair")
    assert celeba.prompt("Gray_Hair", "Blond_Hair", "Wavy_Hair", "Straight_Hair").endswith("with wavy gray hair")
    assert celeba.prompt("Arched_Eyebrows", "Bushy_Eyebrows").endswith("with arched eyebrows")
    assert celeba.prompt("Male", "Bald", "Black_Hair", "Bangs", "Receding_Hairline").endswith("with a bald head")
    assert celeba.prompt("Male", "No_Beard", "Goatee").endswith("with a goatee")


def test_same_seed_same_caption_and_minor_features_appear_four_times_in_five():
    vector = celeba.vector(["Male", "Rosy_Cheeks", "Narrow_Eyes", "Smiling"])
    assert celeba.caption(vector, 42) == celeba.caption(vector, 42)
    captions = [celeba.caption(vector, seed) for seed in range(2000)]
    assert 0.76 < np.mean(["rosy cheeks" in c for c in captions]) < 0.84
    assert all("smil" in c for c in captions)  # core attributes always appear ("smiling" / "a smile")


def test_invalid_attributes_are_clear_errors():
    with pytest.raises(ValueError, match="expected 40 attribute values, got 39"):
        celeba.caption([0] * 39)
    with pytest.raises(ValueError, match="unknown CelebA attributes \\['Purple_Hair'\\]"):
        celeba.prompt("Purple_Hair")
    with pytest.raises(ValueError, match="must be binary"):
        celeba.caption([0] * 39 + [0.5])
    with pytest.raises(ValueError, match="must be binary"):
        celeba.caption([0] * 39 + [None])
    with pytest.raises(ValueError, match="unknown \\['Smile'\\]"):
        celeba.caption({**{a: 0 for a in celeba.ATTRIBUTES}, "Smile": 1})
    assert celeba.caption([-1] * 39 + [1]) == "A photo of a young woman"  # CelebA's own -1/1 coding is fine


@pytest.fixture
def tiny_vae_dir(tmp_path):
    """An AutoencoderKL built from a config with random weights, saved like a hub checkpoint; scaling factor 0.5
    so a test can tell it is read from the config and not assumed to be 0.18215."""
    torch.manual_seed(0)
    AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.5,
    ).save_pretrained(tmp_path / "vae")
    return tmp_path / "vae"


def test_latent_codec_shapes_and_scaling_factor_come_from_the_vae_config(tiny_vae_dir):
    codec = LatentCodec.from_pretrained(str(tiny_vae_dir))
    assert codec.scaling_factor == 0.5 and codec.latent_shape(64) == (4, 8, 8)
    assert not any(p.requires_grad for p in codec.vae.parameters()) and not codec.vae.training
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    mean, std = codec.posterior(images)
    z = codec.encode(images, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, 0.5 * (mean + std * eps))
    decoded = codec.decode(z)
    assert decoded.shape == (2, 3, 64, 64) and decoded.abs().max() <= 1


def test_a_missing_vae_offline_names_the_fix():
    with pytest.raises(FileNotFoundError, match="make assets EXPERIMENTS=celeba"):
        LatentCodec.from_pretrained("stabilityai/sd-vae-ft-mse")


@pytest.fixture
def celeba_cfg(tiny_vae_dir, tiny_clip_dir, tmp_path, monkeypatch):
    from tests.conftest import TINY_CLIP_WIDTH

    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "data"))
    return configs.get(
        "celeba", "smoke", vae=str(tiny_vae_dir), text_encoder=str(tiny_clip_dir), cross_attention_dim=TINY_CLIP_WIDTH
    )


def test_latent_cache_is_built_once_resumes_and_rebuilds_when_its_key_changes(celeba_cfg):
    cfg = celeba_cfg
    files = celeba.DATASET.shard_files(cfg, cfg.shards)
    codec = LatentCodec.from_pretrained(cfg.vae)
    decoder = celeba.DATASET.row_decoder(cfg)
    cached = latents.build(cfg, files, decoder, codec)
    assert latents.is_built(cfg, files)
    mean, std, attributes = next(iter(latents.stream(cfg, cached)))
    assert mean.shape == std.shape == (4, 8, 8) and attributes.shape == (40,) and set(attributes.tolist()) <= {0, 1}

    # the cached rows are the VAE posterior times the scaling factor, in float16
    import pyarrow.parquet as pq

    from t2i.data.images import to_tensor

    row = pq.read_table(files[0]).slice(0, 1).to_pylist()[0]
    image, attrs = celeba.CelebaRow(cfg.resolution).parse(row)
    want_mean, want_std = codec.posterior(to_tensor(image, (-1.0, 1.0))[None])
    got = latents.LatentRow(cfg.model_shape)(pq.read_table(cached[0]).slice(0, 1).to_pylist()[0])
    torch.testing.assert_close(got[0], 0.5 * want_mean[0], atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(got[1], 0.5 * want_std[0], atol=2e-3, rtol=2e-3)
    assert torch.equal(got[2], torch.from_numpy(attrs))

    mtimes = [f.stat().st_mtime_ns for f in cached]
    latents.build(cfg, files, decoder, codec)
    assert [f.stat().st_mtime_ns for f in cached] == mtimes  # reused
    cached[2].unlink()  # a build interrupted before its last shard
    assert not latents.is_built(cfg, files)
    latents.build(cfg, files, decoder, codec)
    assert cached[2].exists() and [f.stat().st_mtime_ns for f in cached[:2]] == mtimes[:2]
    changed = cfg.replace(resolution=32)  # new preprocessing: a new key, the cache is rebuilt
    assert not latents.is_built(changed, files, latents.cache_dir(cfg))


def test_training_reads_the_cache_and_never_the_vae(celeba_cfg, monkeypatch):
    cfg = celeba_cfg
    data.load_dataset(cfg)  # builds the cache

    def no_vae(*args, **kwargs):
        raise AssertionError("training loaded the VAE although the latent cache exists")

    monkeypatch.setattr(LatentCodec, "from_pretrained", no_vae)
    run = experiment.train(cfg, paths.run_dir("celeba", "cached"))
    assert (run / "checkpoints" / "epoch-0001").is_dir()


def test_captions_are_drawn_and_tokenised_per_row_and_epoch_the_same_in_any_worker(celeba_cfg):
    """The data workers caption each face (the step only encodes): a row's caption depends on the seed, the epoch
    and the row, not on which worker read it, and is the one :func:`caption` draws with that row's generator."""
    from collections import Counter

    import numpy as np
    from torch.utils.data import DataLoader

    from t2i.text import TextEncoder

    cfg = celeba_cfg
    text = TextEncoder.from_pretrained(cfg.text_encoder, cfg.max_tokens)
    transform = celeba.DATASET.conditioner(cfg, text).example_transform
    stream = celeba.DATASET.training_set(cfg, transform=transform)

    def examples(epoch: int, workers: int) -> Counter:  # (latent, caption tokens) pairs; synthetic faces repeat
        stream.set_epoch(epoch)
        return Counter(
            (mean.numpy().tobytes(), tuple(tokens["input_ids"].tolist()))
            for mean, _, tokens in DataLoader(stream, batch_size=None, num_workers=workers)
        )

    epoch0 = examples(0, workers=0)
    assert epoch0.total() == stream.total_rows and epoch0 == examples(0, workers=2)
    epoch1 = examples(1, workers=2)  # new captions for the same latents
    assert Counter(m for m, _ in epoch1.elements()) == Counter(m for m, _ in epoch0.elements())
    assert (epoch0 - epoch1).total() > epoch0.total() // 4

    # one example by hand: the row's caption with the generator of (seed, epoch, shard, row), tokenised
    plain = latents.stream(cfg, stream.files)
    table, numbers = plain._read(0, (0,))
    mean, std, attributes = plain.decoder(table.slice(0, 1).to_pylist()[0])
    rng = np.random.default_rng([cfg.seed, 0, 0, numbers[0]])
    _, _, tokens = transform((mean, std, attributes), np.random.default_rng([cfg.seed, 0, 0, numbers[0]]))
    assert torch.equal(tokens["input_ids"], text.tokenize([celeba.caption(attributes.numpy(), rng)])["input_ids"][0])
    assert tokens["attention_mask"].shape == (cfg.max_tokens,)
    with pytest.raises(ValueError, match="needs a streamed"):
        from t2i.data import mnist

        mnist.DATASET.training_set(configs.get("mnist", "smoke"), transform=transform)


def test_latent_training_resumes_bit_exactly(celeba_cfg):
    """Latents are drawn from the loop's generator and captions from each row's (seed, epoch, shard, row), so
    1 + 1 epochs equal 2 epochs."""
    from t2i import checkpoints

    straight = experiment.train(celeba_cfg.replace(epochs=2), paths.run_dir("celeba", "straight"))
    resumed = paths.run_dir("celeba", "resumed")
    experiment.train(celeba_cfg.replace(epochs=1), resumed)
    experiment.train(celeba_cfg.replace(epochs=2), resumed)
    a = checkpoints.load_unet(checkpoints.latest(straight)).state_dict()
    b = checkpoints.load_unet(checkpoints.latest(resumed)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_guidance_sweep_scores_celeba_by_attribute_claims(celeba_cfg):
    """05_evaluate's sweep on a latent-diffusion run: prompts are the captions of held-out faces' attributes,
    adherence is the fraction of their claims the 40-attribute judge confirms, the real row is the ceiling."""
    from t2i import evaluate, judges
    from t2i.pipeline import TextToImage

    run = experiment.train(celeba_cfg, paths.run_dir("celeba", "sweep"))
    pipe = TextToImage.from_run(run, device="cpu")
    judge = judges.for_config(celeba_cfg)
    assert judge.cfg.multilabel and judges.judge_dir(celeba_cfg).name == "celeba-64px"
    conditions = celeba.DATASET.sweep_conditions(celeba_cfg, samples_per_prompt=2, prompts=6)
    assert conditions.shape == (12, 40) and torch.equal(conditions[0], conditions[1])
    rows = evaluate.sweep(pipe, judge, evaluate.make_extractor("judge", judge), [0.0, 3.0], 2, prompts=6)
    assert [r["guidance_scale"] for r in rows] == ["real", 0.0, 3.0]
    assert all(r["samples"] == 12 and 0 <= r["adherence"] <= 1 for r in rows)
