"""Thesis section 3.3 ("CIFAR-10 Text-to-Image Generation with Classifier-Free Guidance")."""

from . import SMOKE, UNET_4

SECTION = "3.3"  # the thesis section it reproduces

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")  # 3.3.3

FULL = dict(
    dataset="cifar10",  # 3.3.3: 50,000 training images (torchvision)
    resolution=32,  # 3.3.2
    channels=3,  # 3.3.2: RGB
    pixel_range=(-1.0, 1.0),  # 3.3.3: "Normalized to [-1, 1]"
    caption_template="A photo of a {}",  # 3.3.3
    class_names=CLASSES,
    text_encoder="openai/clip-vit-base-patch32",  # 3.3.2
    max_tokens=77,  # 3.3.2: "standard CLIP length"
    block_out_channels=(128, 256, 256, 512),  # 3.3.2 (the thesis says ~45M parameters; docs/thesis.md)
    layers_per_block=2,  # 3.3.2
    **UNET_4,  # 3.3.2
    cross_attention_dim=512,  # 3.3.2: CLIP ViT-B/32 text width
    attention_head_dim=32,  # 3.3.2
    batch_size=128,  # 3.3.4
    learning_rate=1e-4,  # 3.3.4
    epochs=50,  # 3.3.4
    checkpoint_every=5,  # not in the thesis; ten checkpoints over the run
    p_uncond=0.1,  # 3.3.4: 10% unconditional dropout
    seed=422,  # 3.2.5, reused by every experiment
    num_train_timesteps=1000,  # 3.3.4
    beta_schedule="linear",  # 3.3.4: linear betas 1e-4 .. 0.02 (DDPMScheduler's defaults)
    sampler="ddpm",  # 3.3.5
    num_inference_steps=50,  # 3.3.5
    guidance_scales=(0.0, 1.0, 2.0, 5.0, 10.0),  # 3.3.5 tested {0, 2, 5, 10}; w = 1 added (no guidance)
    # read from torchvision's pickles; shards in the Hub's parquet layout (uoft-cs/cifar10, the smoke profile) name
    # their columns "img" and "label" (dataset card, dataset_info.features: img: image, label: class_label)
    image_column="img",
)

PROFILES = {
    "smoke": {  # synthetic CIFAR-format parquet shards (written on first use), MiniLM, a tiny UNet
        **SMOKE,
        "resolution": 16,
        "max_tokens": 16,
        "block_out_channels": (8, 16, 16, 8),
        "shards": "synthetic/cifar10/train-*.parquet",
        "judge_shards": "synthetic/cifar10/test-*.parquet",
    }
}
