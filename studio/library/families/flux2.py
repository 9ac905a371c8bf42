"""FLUX.2 ([dev] with its Mistral text encoder, and klein with Qwen3): a rectified-flow
transformer over 32-channel latents patchified 2×2 into 128-channel tokens; [dev] has its
guidance distilled into the model (one "Guidance" number, no negative prompt), klein base runs
real guidance against an empty prompt and klein distilled ignores it. It has no image-to-image
(strength) pipeline: a picture given to it is a reference, not a start."""

from studio.library.families import Family
from studio.library.families.sdxl import MEGAPIXEL_PRESETS

FAMILY = Family(
    key="flux2", label="FLUX.2", lora_label="FLUX.2", order=55,
    default_size=(1024, 1024),
    presets=(*MEGAPIXEL_PRESETS, (512, 512, "1:1 small")),
    # The published FLUX.2 latent→RGB approximation (ComfyUI's Flux2 latent format): one row
    # per channel of the 32-channel VAE latents (the 128-channel tokens unpatchified first).
    latent_rgb_factors=(
        (0.0058, 0.0113, 0.0073),
        (0.0495, 0.0443, 0.0836),
        (-0.0099, 0.0096, 0.0644),
        (0.2144, 0.3009, 0.3652),
        (0.0166, -0.0039, -0.0054),
        (0.0157, 0.0103, -0.0160),
        (-0.0398, 0.0902, -0.0235),
        (-0.0052, 0.0095, 0.0109),
        (-0.3527, -0.2712, -0.1666),
        (-0.0301, -0.0356, -0.0180),
        (-0.0107, 0.0078, 0.0013),
        (0.0746, 0.0090, -0.0941),
        (0.0156, 0.0169, 0.0070),
        (-0.0034, -0.0040, -0.0114),
        (0.0032, 0.0181, 0.0080),
        (-0.0939, -0.0008, 0.0186),
        (0.0018, 0.0043, 0.0104),
        (0.0284, 0.0056, -0.0127),
        (-0.0024, -0.0022, -0.0030),
        (0.1207, -0.0026, 0.0065),
        (0.0128, 0.0101, 0.0142),
        (0.0137, -0.0072, -0.0007),
        (0.0095, 0.0092, -0.0059),
        (0.0000, -0.0077, -0.0049),
        (-0.0465, -0.0204, -0.0312),
        (0.0095, 0.0012, -0.0066),
        (0.0290, -0.0034, 0.0025),
        (0.0220, 0.0169, -0.0048),
        (-0.0332, -0.0457, -0.0468),
        (-0.0085, 0.0389, 0.0609),
        (-0.0076, 0.0003, -0.0043),
        (-0.0111, -0.0460, -0.0614),
    ),
    latent_rgb_bias=(-0.0329, -0.0718, -0.0851),
    # TAEF2 decodes the unpatchified latents as the transformer makes them (batch-norm
    # normalised); it is AutoencoderTiny plus a pool branch in its first blocks
    # (studio.pipelines.diffusion.taef2), found as a file (studio.library.taef2_files).
    tae_repo="madebyollin/taef2",
    pipeline_class="Flux2Pipeline",
    diffusers_classes=("Flux2Pipeline", "Flux2KleinPipeline"),
    denoiser="transformer",
    a1111_prompts=False,
    samplers=("default",),
    guidance="distilled",
    default_cfg=4.0,
    negative_prompt=False,
    packed_latents=True,
    guidance_hint=("FLUX.2 guidance: [dev] has it distilled into the model (4 is usual); "
                   "klein base guides against an empty prompt, klein distilled ignores it."),
    img2img=False,
)
