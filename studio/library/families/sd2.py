"""Stable Diffusion 2.x (2.0, 2.1, 512 and 768 models): OpenCLIP-H text encoder, SD's latents."""

from studio.library.clip_tokenizer import PAD_OPEN_CLIP
from studio.library.families import Family
from studio.library.families.sd1 import SD_LATENT_RGB

FAMILY = Family(
    key="sd2", label="SD 2.x", lora_label="SD 2.x", order=20,
    default_size=(768, 768),
    presets=(
        (768, 768, "1:1 square (768 models)"),
        (512, 512, "1:1 square (512 models)"),
        (576, 768, "3:4 portrait"),
        (768, 576, "4:3 landscape"),
        (512, 768, "2:3 portrait"),
        (768, 512, "3:2 landscape"),
    ),
    latent_rgb_factors=SD_LATENT_RGB,
    tae_repo="madebyollin/taesd",
    lora_context_dim=1024,
    single_file_assets="sd2",
    tokenizers={"tokenizer": PAD_OPEN_CLIP},
    pipeline_class="StableDiffusionPipeline",
)
