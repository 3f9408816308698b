"""Thesis section 3.5 ("CelebA Latent Diffusion with Classifier-Free Guidance"). Captions are generated from the 40
attributes per image and step (t2i.data.celeba); ``class_names`` holds the prompts the figures use instead."""

from . import SMOKE, UNET_4

SECTION = "3.5"  # the thesis section it reproduces

PROMPTS = (  # 3.5.3's example captions, then a few more attribute sets (t2i.data.celeba.prompt)
    "A photo of a young woman with straight blond hair, bangs, smiling, wearing earrings",
    "A photo of a man with black hair, a mustache, wearing eyeglasses",
    "A photo of a young man with brown hair, high cheekbones, a clean-shaven face",
    "A photo of a woman with wavy brown hair, pale skin, wearing a necklace",
    "A photo of a man with gray hair, a goatee, smiling, wearing a hat",
    "A photo of a young woman with wavy black hair, rosy cheeks, smiling, wearing lipstick",
)

FULL = dict(
    dataset="celeba",  # 3.5.2: flwrlabs/celeba, ~202,599 faces with 40 binary attributes
    resolution=256,  # 3.5.2: resized to 256x256 and centre-cropped
    channels=3,  # 3.5.2: RGB
    pixel_range=(-1.0, 1.0),  # 3.5.2
    caption_template="{}",  # figure prompts are whole captions
    class_names=PROMPTS,
    text_encoder="openai/clip-vit-base-patch32",  # 3.5.5
    max_tokens=77,  # 3.5.5
    block_out_channels=(128, 256, 384, 512),  # 3.5.5
    layers_per_block=2,  # 3.5.5
    **UNET_4,  # 3.5.5
    cross_attention_dim=512,  # 3.5.5: CLIP ViT-B/32 text width
    attention_head_dim=8,  # 3.5.5 names none: diffusers' default
    batch_size=128,  # 3.5.6
    learning_rate=1e-5,  # 3.5.6
    epochs=500,  # 3.5.6
    checkpoint_every=5,  # 3.5.6
    p_uncond=0.1,  # 3.5.6
    seed=422,  # 3.2.5, reused by every experiment
    num_train_timesteps=1000,  # 3.5.6
    beta_schedule="squaredcos_cap_v2",  # 3.5.6: squared cosine
    clip_sample=False,  # latents are not confined to [-1, 1]
    sampler="ddpm",  # 3.5.8
    num_inference_steps=50,  # 3.5.8
    guidance_scales=tuple(w / 2 for w in range(11)),  # Figure 18: 0, 0.5, ..., 5
    shards="celeba/img_align+identity+attr/train-*.parquet",  # `make assets EXPERIMENTS=celeba`
    judge_shards="celeba/img_align+identity+attr/valid-*.parquet",
    label_column="celeb_id",  # flwrlabs/celeba's identity column (unused for captions)
    num_workers=4,  # not in the thesis
    vae="stabilityai/sd-vae-ft-mse",  # 3.5.4: 256x256x3 -> 32x32x4, scaling factor 0.18215 (from its config)
)

PROFILES = {
    "smoke": {  # synthetic CelebA-format shards and a tiny random VAE (both written on first use), MiniLM
        **SMOKE,
        "resolution": 64,
        "max_tokens": 32,
        "block_out_channels": (8, 16, 16, 8),
        "guidance_scales": (0.0, 2.0, 5.0),
        "shards": "synthetic/celeba/train-*.parquet",
        "judge_shards": None,
        "vae": "synthetic:tiny-vae",
        "num_workers": 0,
    }
}
