"""FLUX.1 (schnell, dev, and finetunes such as Krea): a rectified-flow transformer over packed
16-channel latents, conditioned by CLIP-L (pooled) and T5-XXL; dev is guidance-distilled (one
"Guidance" number, no negative prompt), schnell ignores guidance and wants 1–4 steps."""

from studio.library.clip_tokenizer import PAD_CLIP_L
from studio.library.families import Family
from studio.library.families.sdxl import MEGAPIXEL_PRESETS

FAMILY = Family(
    key="flux", label="FLUX.1", lora_label="FLUX.1", order=50,
    default_size=(1024, 1024),
    presets=(*MEGAPIXEL_PRESETS, (512, 512, "1:1 small")),
    # The published FLUX.1 latent→RGB approximation (ComfyUI's Flux latent format).
    latent_rgb_factors=(
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ),
    latent_rgb_bias=(-0.0329, -0.0718, -0.0851),
    tae_repo="madebyollin/taef1",
    pipeline_class="FluxPipeline",
    diffusers_classes=("FluxPipeline",),
    denoiser="transformer",
    # split files (ComfyUI): the shipped configs, and the CLIP tokenizers built beside them
    single_file_assets="flux",
    tokenizers={"tokenizer": PAD_CLIP_L},
    optional_components=("image_encoder", "feature_extractor"),
    a1111_prompts=False,
    samplers=("default",),
    guidance="distilled",
    default_cfg=3.5,
    negative_prompt=False,
    packed_latents=True,
)
