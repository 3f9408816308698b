"""Thesis section 3.4 ("WikiArt Text-to-Image Generation with Classifier-Free Guidance")."""

from . import SMOKE

SECTION = "3.4"  # the thesis section it reproduces

# 3.4.2, in the order of huggan/wikiart's `style` ClassLabel (t2i.data.wikiart.STYLE_LABELS, which every shard's
# schema metadata carries and the loader checks). Label 3 is "Art_Nouveau" there; the thesis's "Art Nouveau Modern"
# is the folder name of the original ArtGAN release.
STYLES = (
    "Abstract Expressionism",
    "Action Painting",
    "Analytical Cubism",
    "Art Nouveau",
    "Baroque",
    "Color Field Painting",
    "Contemporary Realism",
    "Cubism",
    "Early Renaissance",
    "Expressionism",
    "Fauvism",
    "High Renaissance",
    "Impressionism",
    "Mannerism Late Renaissance",
    "Minimalism",
    "Naive Art Primitivism",
    "New Realism",
    "Northern Renaissance",
    "Pointillism",
    "Pop Art",
    "Post Impressionism",
    "Realism",
    "Rococo",
    "Romanticism",
    "Symbolism",
    "Synthetic Cubism",
    "Ukiyo-e",
)

FULL = dict(
    dataset="wikiart",  # 3.4.2: huggan/wikiart, ~81,000 paintings in 72 parquet shards
    resolution=128,  # 3.4.2
    channels=3,  # 3.4.2: RGB
    pixel_range=(-1.0, 1.0),  # 3.4.2: "normalized to [-1, 1]"
    caption_template="A painting in the style of {}",  # 3.4.2
    class_names=STYLES,
    text_encoder="openai/clip-vit-base-patch32",  # 3.4.4
    max_tokens=77,  # 3.4.4: "Tokenizer max length: 77 tokens"
    block_out_channels=(128, 256, 512, 512, 1024),  # 3.4.4: 5 resolution levels
    layers_per_block=2,  # 3.4.4
    down_block_types=(
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),  # 3.4.4
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=512,  # 3.4.4: CLIP ViT-B/32 text width
    attention_head_dim=32,  # 3.4.4, as in 3.3.2
    batch_size=64,  # 3.4.5 (after profiling, 3.4.7)
    learning_rate=1e-5,  # 3.4.5
    epochs=100,  # 3.4.5
    checkpoint_every=10,  # 3.4.5
    p_uncond=0.1,  # 3.4.5
    seed=422,  # 3.2.5, reused by every experiment
    num_train_timesteps=1000,  # 3.4.5
    beta_schedule="linear",  # 3.4.5: betas 1e-4 .. 0.02
    sampler="ddpm",  # not in 3.4; as 3.3.5
    num_inference_steps=50,  # not in 3.4; as 3.3.5
    guidance_scales=(0.0, 1.0, 2.0, 3.0, 5.0, 10.0),  # not in the thesis; the evaluation default
    shards="wikiart/data/train-*.parquet",  # `make assets` (huggingface_hub snapshot of huggan/wikiart)
    label_column="style",  # huggan/wikiart's style column
    num_workers=8,  # not in the thesis: enough decoding processes to keep up with a GPU step (bench-loader)
)

PROFILES = {
    "smoke": {  # synthetic WikiArt-format shards, MiniLM, a tiny five-level UNet
        **SMOKE,
        "resolution": 32,
        "max_tokens": 16,
        "block_out_channels": (8, 16, 16, 16, 16),
        "shards": "synthetic/wikiart/train-*.parquet",
        "num_workers": 2,
        "timing_steps": 3,
    }
}
