"""Chroma (Chroma1-HD, Chroma1-Base and finetunes): FLUX.1-schnell's architecture pruned and
retrained with a T5 encoder alone, real classifier-free guidance with a negative prompt, packed
16-channel latents in FLUX's latent space."""

from studio.library.families import Family
from studio.library.families.flux import FAMILY as FLUX

FAMILY = Family(
    key="chroma", label="Chroma", lora_label="Chroma", order=60,
    default_size=(1024, 1024),
    presets=FLUX.presets,
    latent_rgb_factors=FLUX.latent_rgb_factors,  # FLUX's VAE and latent space
    latent_rgb_bias=FLUX.latent_rgb_bias,
    tae_repo=FLUX.tae_repo,
    pipeline_class="ChromaPipeline",
    diffusers_classes=("ChromaPipeline",),
    denoiser="transformer",
    # split files (ComfyUI): the shipped configs; its only tokenizer is T5's (the HF cache)
    single_file_assets="chroma",
    lora_also=("flux",),
    optional_components=("image_encoder", "feature_extractor"),
    a1111_prompts=False,
    samplers=("default",),
    packed_latents=True,
    default_cfg=4.0,
)
