"""Stable Diffusion 3 and 3.5 (medium, large, large turbo): an MMDiT transformer over 16-channel
latents, conditioned by two CLIP encoders and (optionally) T5-XXL; flow matching, real CFG."""

from studio.library.clip_tokenizer import PAD_CLIP_L, PAD_OPEN_CLIP
from studio.library.families import Family
from studio.library.families.sdxl import MEGAPIXEL_PRESETS

FAMILY = Family(
    key="sd3", label="SD 3.5", lora_label="SD 3.5", order=40,
    default_size=(1024, 1024),
    presets=(*MEGAPIXEL_PRESETS, (512, 512, "1:1 small")),
    # The published SD3 latent→RGB approximation (ComfyUI's SD3 latent format), one row per
    # latent channel, applied to the transformer's (scaled and shifted) latents.
    latent_rgb_factors=(
        (-0.0645, 0.0177, 0.1052),
        (0.0028, 0.0312, 0.0650),
        (0.1848, 0.0762, 0.0360),
        (0.0944, 0.0360, 0.0889),
        (0.0897, 0.0506, -0.0364),
        (-0.0020, 0.1203, 0.0284),
        (0.0855, 0.0118, 0.0283),
        (-0.0539, 0.0658, 0.1047),
        (-0.0057, 0.0116, 0.0700),
        (-0.0412, 0.0281, -0.0039),
        (0.1106, 0.1171, 0.1220),
        (-0.0248, 0.0682, -0.0481),
        (0.0815, 0.0846, 0.1207),
        (-0.0120, -0.0055, -0.0867),
        (-0.0749, -0.0634, -0.0456),
        (-0.1418, -0.1457, -0.1259),
    ),
    tae_repo="madebyollin/taesd3",
    pipeline_class="StableDiffusion3Pipeline",
    diffusers_classes=("StableDiffusion3Pipeline",),
    denoiser="transformer",
    # split files (ComfyUI): the shipped configs, and the CLIP tokenizers built beside them
    single_file_assets="sd35",
    tokenizers={"tokenizer": PAD_CLIP_L, "tokenizer_2": PAD_OPEN_CLIP},
    optional_components=("text_encoder_3", "tokenizer_3", "image_encoder", "feature_extractor"),
    a1111_prompts=False,
    samplers=("default",),  # flow matching: its own FlowMatchEulerDiscreteScheduler
    default_cfg=4.5,
)
