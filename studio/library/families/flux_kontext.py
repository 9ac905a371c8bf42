"""FLUX.1 Kontext [dev]: FLUX.1's transformer, VAE and encoders trained to edit a picture from
an instruction ("make it winter"); the picture's latents ride along as extra tokens. Guidance is
distilled as in FLUX.1 dev (2.5 is usual), no negative prompt. It runs in Transform → Edit with
instructions."""

from studio.library.families import Family
from studio.library.families.flux import FAMILY as FLUX

FAMILY = Family(
    key="flux-kontext", label="FLUX.1 Kontext", lora_label="FLUX.1 Kontext", order=52,
    default_size=FLUX.default_size,
    presets=FLUX.presets,
    latent_rgb_factors=FLUX.latent_rgb_factors,  # FLUX.1's VAE and latent space
    latent_rgb_bias=FLUX.latent_rgb_bias,
    tae_repo=FLUX.tae_repo,
    pipeline_class="FluxKontextPipeline",
    diffusers_classes=("FluxKontextPipeline",),
    denoiser="transformer",
    lora_also=("flux",),
    optional_components=FLUX.optional_components,
    a1111_prompts=FLUX.a1111_prompts,  # FLUX.1's prompts, sampler and distilled guidance
    samplers=FLUX.samplers,
    guidance=FLUX.guidance,
    default_cfg=2.5,
    negative_prompt=FLUX.negative_prompt,
    packed_latents=FLUX.packed_latents,
    guidance_hint=("FLUX.1 Kontext guidance (distilled into the model: one pass per step); "
                   "2.5 is usual."),
    img2img=False,
    edit=True,
)
