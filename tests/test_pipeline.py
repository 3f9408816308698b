"""t2i.pipeline: a trained run as prompts -> images: seeds per image, the data's range, clear errors."""

import pytest
import torch

from t2i.models import build_unet
from t2i.pipeline import TextToImage
from t2i.text import TextEncoder


@pytest.fixture
def tiny_pipe(smoke_cfg):
    torch.manual_seed(0)
    return TextToImage(
        smoke_cfg, build_unet(smoke_cfg), TextEncoder.from_pretrained(smoke_cfg.text_encoder, 8), device="cpu"
    )


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmsolver++"])
def test_same_seed_gives_the_same_image_whatever_the_batch_size(tiny_pipe, sampler):
    prompts = [f"A handwritten digit {d}" for d in range(5)]
    together = tiny_pipe.images(prompts, 3.0, seed=7, sampler=sampler, batch_size=5)
    in_pairs = tiny_pipe.images(prompts, 3.0, seed=7, sampler=sampler, batch_size=2)
    alone = tiny_pipe.images(prompts[3:4], 3.0, seed=10, sampler=sampler)  # image 3 of the first call uses seed 7+3
    assert torch.allclose(together, in_pairs, atol=1e-5)
    assert torch.allclose(together[3:4], alone, atol=1e-5)
    other_seed = tiny_pipe.images(prompts, 3.0, seed=8, sampler=sampler, batch_size=5)
    assert not torch.allclose(together, other_seed, atol=1e-3)


def test_images_are_in_unit_range_with_the_configured_shape(tiny_pipe, smoke_cfg):
    images = tiny_pipe.images(["A handwritten digit 1", ""], 5.0, seed=0)
    assert images.shape == (2, 1, smoke_cfg.resolution, smoke_cfg.resolution)
    assert images.min() >= 0 and images.max() <= 1


def test_text_width_mismatch_is_a_clear_error(smoke_cfg):
    wrong = smoke_cfg.replace(cross_attention_dim=64)
    with pytest.raises(ValueError, match="cross_attention_dim=64.*hidden size 32"):
        TextToImage(wrong, build_unet(wrong), TextEncoder.from_pretrained(smoke_cfg.text_encoder, 8), device="cpu")
