"""Qwen-Image-Edit: Qwen-Image's transformer and VAE trained to edit a picture from an
instruction, which Qwen2.5-VL reads together with the picture; real classifier-free guidance
(``true_cfg_scale``) with a negative prompt. It runs in Transform → Edit with instructions."""

from studio.library.families import Family
from studio.library.families.qwen_image import FAMILY as QWEN

FAMILY = Family(
    key="qwen-image-edit", label="Qwen-Image-Edit", lora_label="Qwen-Image-Edit", order=72,
    default_size=(1024, 1024),
    presets=QWEN.presets,
    latent_rgb_factors=QWEN.latent_rgb_factors,  # Qwen-Image's VAE and latent space
    latent_rgb_bias=QWEN.latent_rgb_bias,
    tae_missing=QWEN.tae_missing,
    pipeline_class="QwenImageEditPipeline",
    diffusers_classes=("QwenImageEditPipeline", "QwenImageEditPlusPipeline"),
    denoiser="transformer",
    lora_also=("qwen-image",),
    a1111_prompts=False,
    samplers=("default",),
    default_cfg=4.0,
    cfg_argument="true_cfg_scale",
    guidance_hint=QWEN.guidance_hint.replace("Qwen-Image's", "Qwen-Image-Edit's"),
    packed_latents=True,
    img2img=False,
    edit=True,
)
