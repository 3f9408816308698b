import pytest

from t2i import configs
from t2i.arguments import parse_overrides
from t2i.models import build_unet, count_parameters


def test_mnist_full_unet_has_the_thesis_parameter_count():
    # thesis 3.2.2: "Total trainable parameters: 3,140,385"
    assert count_parameters(build_unet(configs.get("mnist"))) == 3_140_385


def test_full_profile_is_thesis_section_3_2():
    cfg = configs.get("mnist", "full")
    assert (cfg.text_encoder, cfg.max_tokens, cfg.cross_attention_dim) == ("openai/clip-vit-base-patch32", 8, 512)
    assert cfg.captions[5] == "A handwritten digit 5"
    assert (cfg.resolution, cfg.channels, cfg.pixel_range) == (28, 1, (0.0, 1.0))
    assert cfg.block_out_channels == (32, 64, 64, 32) and cfg.layers_per_block == 2
    assert cfg.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    assert cfg.up_block_types == ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    assert (cfg.batch_size, cfg.learning_rate, cfg.epochs, cfg.checkpoint_every) == (512, 1e-3, 20, 5)
    assert (cfg.num_train_timesteps, cfg.beta_schedule, cfg.sampler, cfg.num_inference_steps) == (
        1000,
        "squaredcos_cap_v2",
        "ddpm",
        50,
    )
    assert (cfg.seed, cfg.p_uncond) == (422, 0.0)


def test_overrides_are_type_checked_and_unknown_keys_rejected():
    cfg = configs.get("mnist", "smoke", **parse_overrides(["epochs=3", "guidance_scales=[1, 2]", "sampler=ddim"]))
    assert (cfg.epochs, cfg.guidance_scales, cfg.sampler) == (3, (1.0, 2.0), "ddim")
    with pytest.raises(ValueError, match="unknown config keys"):
        configs.get("mnist", "smoke", epoch=3)
    with pytest.raises(ValueError, match="epochs"):
        configs.get("mnist", "smoke", epochs="three")
    with pytest.raises(ValueError, match="p_uncond"):
        configs.get("mnist", "smoke", p_uncond=1.5)
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["epochs"])


def test_config_survives_a_json_round_trip():
    cfg = configs.get("mnist", "demo")
    assert configs.ExperimentConfig.from_dict(__import__("json").loads(cfg.to_json())) == cfg
