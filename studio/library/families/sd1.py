"""Stable Diffusion 1.x (1.4, 1.5 and their finetunes): CLIP-L text encoder, 4-channel latents."""

from studio.library.clip_tokenizer import PAD_CLIP_L
from studio.library.families import Family

#: The published SD latent→RGB approximation (SD 1.x and 2.x share one VAE latent space).
SD_LATENT_RGB = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)

FAMILY = Family(
    key="sd1", label="SD 1.x", lora_label="SD 1.5", order=10,
    default_size=(512, 512),
    presets=(
        (512, 512, "1:1 square"),
        (512, 768, "2:3 portrait"),
        (768, 512, "3:2 landscape"),
        (512, 640, "4:5 portrait"),
        (640, 512, "5:4 landscape"),
        (448, 768, "9:16 tall"),
        (768, 448, "16:9 wide"),
    ),
    latent_rgb_factors=SD_LATENT_RGB,
    tae_repo="madebyollin/taesd",
    lora_context_dim=768,
    single_file_assets="sd15",
    tokenizers={"tokenizer": PAD_CLIP_L},
    pipeline_class="StableDiffusionPipeline",
)
