"""Stable Diffusion XL (base, Turbo, Lightning, Pony/Illustrious finetunes): CLIP-L + OpenCLIP-G
text encoders, its own VAE latent space."""

from studio.library.clip_tokenizer import PAD_CLIP_L, PAD_OPEN_CLIP
from studio.library.families import Family

#: The about-one-megapixel sizes SDXL was trained on (its aspect buckets); SD 3.5 and FLUX use
#: the same ones.
MEGAPIXEL_PRESETS = (
    (1024, 1024, "1:1 square"),
    (896, 1152, "7:9 portrait"),
    (1152, 896, "9:7 landscape"),
    (832, 1216, "2:3 portrait"),
    (1216, 832, "3:2 landscape"),
    (768, 1344, "9:16 tall"),
    (1344, 768, "16:9 wide"),
)

FAMILY = Family(
    key="sdxl", label="SDXL", lora_label="SDXL", order=30,
    default_size=(1024, 1024),
    presets=(
        *MEGAPIXEL_PRESETS,
        (640, 1536, "5:12 very tall"),
        (1536, 640, "12:5 very wide"),
        (512, 512, "1:1 small (Turbo)"),
    ),
    latent_rgb_factors=(
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    latent_rgb_bias=(0.1084, -0.0175, -0.0011),
    tae_repo="madebyollin/taesdxl",
    lora_context_dim=2048,
    single_file_assets="sdxl",
    tokenizers={"tokenizer": PAD_CLIP_L, "tokenizer_2": PAD_OPEN_CLIP},
    pipeline_class="StableDiffusionXLPipeline",
)
