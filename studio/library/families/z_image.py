"""Z-Image (Turbo and Base): a 6B single-stream DiT over FLUX.1's 16-channel VAE latents,
conditioned by the Qwen3 language model's hidden states; classifier-free guidance with a
negative prompt (Turbo is distilled for 8–9 steps without guidance: CFG 0–1)."""

from studio.library.families import Family
from studio.library.families.flux import FAMILY as FLUX

FAMILY = Family(
    key="z-image", label="Z-Image", lora_label="Z-Image", order=80,
    default_size=(1024, 1024),
    presets=FLUX.presets,
    latent_rgb_factors=FLUX.latent_rgb_factors,  # FLUX.1's VAE and latent space
    latent_rgb_bias=FLUX.latent_rgb_bias,
    tae_repo=FLUX.tae_repo,  # TAEF1 decodes FLUX.1's latents
    pipeline_class="ZImagePipeline",
    diffusers_classes=("ZImagePipeline",),
    denoiser="transformer",
    a1111_prompts=False,
    samplers=("default",),
    default_cfg=5.0,
    guidance_hint=("Z-Image's CFG (with the negative prompt). Base wants 3–5; Turbo is "
                   "distilled: 0–1 (no guidance) with 8–9 steps."),
)
