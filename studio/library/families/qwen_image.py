"""Qwen-Image (and its finetunes): a 20B MMDiT over packed 16-channel latents of the Wan 2.1 VAE
(normalised by its per-channel mean and std), conditioned by the Qwen2.5-VL language model's last
hidden states; real classifier-free guidance (``true_cfg_scale``) with a negative prompt."""

from studio.library.families import Family

FAMILY = Family(
    key="qwen-image", label="Qwen-Image", lora_label="Qwen-Image", order=70,
    default_size=(1328, 1328),
    # Qwen-Image's published aspect sizes, at multiples of 16 (its packed latents need them)
    presets=(
        (1328, 1328, "1:1 square"),
        (1664, 928, "16:9 wide"),
        (928, 1664, "9:16 tall"),
        (1472, 1136, "4:3 landscape"),
        (1136, 1472, "3:4 portrait"),
        (1584, 1056, "3:2 landscape"),
        (1056, 1584, "2:3 portrait"),
        (1024, 1024, "1:1 small"),
    ),
    # The published Wan 2.1 latent→RGB approximation (ComfyUI's Wan21 latent format, which
    # Qwen-Image's VAE shares), applied to the normalised latents the transformer denoises.
    latent_rgb_factors=(
        (-0.1299, -0.1692, 0.2932),
        (0.0671, 0.0406, 0.0442),
        (0.3568, 0.2548, 0.1747),
        (0.0372, 0.2344, 0.1420),
        (0.0313, 0.0189, -0.0328),
        (0.0296, -0.0956, -0.0665),
        (-0.3477, -0.4059, -0.2925),
        (0.0166, 0.1902, 0.1975),
        (-0.0412, 0.0267, -0.1364),
        (-0.1293, 0.0740, 0.1636),
        (0.0680, 0.3019, 0.1128),
        (0.0032, 0.0581, 0.0639),
        (-0.1251, 0.0927, 0.1699),
        (0.0060, -0.0633, 0.0005),
        (0.3477, 0.2275, 0.2950),
        (0.1984, 0.0913, 0.1861),
    ),
    latent_rgb_bias=(-0.1835, -0.0868, -0.3360),
    # Qwen-Image shares Wan 2.1's latents, whose tiny decoder is TAEW2.1 (madebyollin/taehv,
    # taew2_1.pth/.safetensors): a causal video decoder with memory blocks and time upsampling,
    # not an AutoencoderTiny. No released diffusers class builds it (0.42.1 has none; a
    # development-branch AutoencoderTinyVideo is the one to use once released). Factors until then.
    tae_missing=("Qwen-Image's tiny preview decoder (TAEW2.1 from madebyollin/taehv, made for "
                 "the Wan 2.1 latents it shares) is a video decoder diffusers cannot build yet, "
                 "so Qwen-Image previews use the fast latent→RGB approximation."),
    pipeline_class="QwenImagePipeline",
    diffusers_classes=("QwenImagePipeline",),
    denoiser="transformer",
    a1111_prompts=False,
    samplers=("default",),  # flow matching with its own dynamic shift
    default_cfg=4.0,
    cfg_argument="true_cfg_scale",
    guidance_hint=("Qwen-Image's CFG (real classifier-free guidance with the negative prompt: "
                   "two passes per step). 4 is usual; 1 turns guidance off."),
    packed_latents=True,
)
