"""ComfyUI split files of Qwen-Image, Z-Image and FLUX.2: which file is which part, by its header.

ComfyUI keeps these families as one diffusion-model file plus a language-model text encoder and a
VAE of the family's own:

- Qwen-Image: ``qwen_image_fp8_e4m3fn.safetensors`` (diffusers' own key names), the Qwen2.5-VL 7B
  text encoder ``qwen_2.5_vl_7b*.safetensors`` and the Wan 2.1-style ``qwen_image_vae``;
- Z-Image: ``z_image_turbo_bf16.safetensors`` (the original S3-DiT keys), the Qwen3 4B text
  encoder ``qwen_3_4b.safetensors`` and FLUX.1's ``ae.safetensors``;
- FLUX.2: ``flux2_dev_fp8mixed.safetensors`` (BFL's keys) with the Mistral Small 3 text encoder
  ``mistral_3_small_flux2*.safetensors``, or FLUX.2 klein with a Qwen3 (4B or 8B); both with
  ``flux2-vae.safetensors`` (32 latent channels and a batch norm over the patchified latents).

The text encoders are saved in transformers' own (legacy) key layout (``model.layers.N…``,
Qwen2.5-VL's vision tower under ``visual.``), as ComfyUI reads them. A text encoder is told apart
by what its first layer has: Qwen2's attention biases (Qwen2.5-VL), Qwen3's q/k norms, neither
(Mistral); its width is the length of a layer norm. The width the diffusion model needs is read
from its own header (Z-Image's caption embedder, FLUX.2's ``txt_in`` which takes three of the
encoder's hidden layers side by side), so a Qwen3 8B beside a Z-Image (which needs the 4B) is not
taken for its part. Headers only; no torch here.
"""

from __future__ import annotations

from typing import Any

#: the file kinds this module recognises, as the library names them
TITLES = {
    "qwen25vl": "Qwen2.5-VL text encoder (Qwen-Image)",
    "qwen3": "Qwen3 text encoder (Z-Image, FLUX.2 klein)",
    "mistral3": "Mistral Small 3 text encoder (FLUX.2 dev)",
    "qwen_vae": "Qwen-Image VAE",
    "flux2_vae": "FLUX.2 VAE (32 channels)",
}
#: how a sentence names each kind, with its article
WHAT = {
    "qwen25vl": "a Qwen2.5-VL text encoder", "qwen3": "a Qwen3 text encoder",
    "mistral3": "a Mistral Small 3 text encoder", "qwen_vae": "the Qwen-Image VAE",
    "flux2_vae": "the FLUX.2 VAE",
}
#: (kind, width) → the released model of that width, as sentences name it
SIZES = {("qwen25vl", 3584): "Qwen2.5-VL 7B", ("qwen3", 2560): "Qwen3 4B",
         ("qwen3", 4096): "Qwen3 8B", ("mistral3", 5120): "Mistral Small 3 24B"}
#: the families whose split files this module knows
FAMILIES = ("qwen-image", "z-image", "flux2")
#: FLUX.2 reads three hidden layers of its text encoder, side by side, into ``txt_in``
FLUX2_STACKED_LAYERS = 3
#: Mistral Small 3's width (FLUX.2 dev); any other FLUX.2 text width is a Qwen3 (klein)
MISTRAL3_WIDTH = 5120
_PREFIX = "model.diffusion_model."


def _keys(header: dict[str, Any]) -> dict[str, Any]:
    return {k[len(_PREFIX):] if k.startswith(_PREFIX) else k: v for k, v in header.items()
            if k != "__metadata__"}


def _shape(info: Any) -> list[int]:
    return list(info.get("shape", [])) if isinstance(info, dict) else []


def denoiser_family(header: dict[str, Any]) -> str:
    """"qwen-image", "z-image" or "flux2" when the header is one of their diffusion models (in
    the layout ComfyUI's downloads use, with or without ComfyUI's ``model.diffusion_model.``
    prefix, or diffusers' own); "" otherwise."""
    keys = _keys(header)
    if "single_stream_modulation.lin.weight" in keys \
            or "single_stream_modulation.linear.weight" in keys:
        return "flux2"
    if "txt_norm.weight" in keys and "transformer_blocks.0.img_mod.1.weight" in keys:
        return "qwen-image"
    if "cap_embedder.1.weight" in keys and any(k.startswith("noise_refiner.") for k in keys) \
            and any(k.startswith("context_refiner.") for k in keys):
        return "z-image"
    return ""


def text_width_needed(header: dict[str, Any], family: str) -> int:
    """The hidden width of the text encoder the diffusion model was trained with (0: unknown)."""
    keys = _keys(header)
    if family == "qwen-image":
        return (_shape(keys.get("txt_in.weight")) or [0, 0])[1]
    if family == "z-image":
        return (_shape(keys.get("cap_embedder.1.weight")) or [0, 0])[1]
    if family == "flux2":
        stacked = (_shape(keys.get("txt_in.weight"))
                   or _shape(keys.get("context_embedder.weight")) or [0, 0])[1]
        return stacked // FLUX2_STACKED_LAYERS
    return 0


def flux2_encoder_kind(header: dict[str, Any]) -> str:
    """"mistral3" for FLUX.2 dev (guidance distilled into it: a guidance embedder; Mistral's
    width), else "qwen3" (klein, distilled or base, has no guidance embedder)."""
    keys = _keys(header)
    dev = any(k.startswith(("guidance_in.", "time_guidance_embed.guidance_embedder."))
              for k in keys)
    return "mistral3" if dev or text_width_needed(header, "flux2") == MISTRAL3_WIDTH else "qwen3"


def part_kind(header: dict[str, Any], name: str = "") -> tuple[str, int]:
    """(kind, width) of a text-encoder or VAE file of these families: ("qwen3", 2560),
    ("qwen_vae", 0) …; ("", 0) when it is none of them."""
    keys = _keys(header)
    for prefix in ("", "vae.", "first_stage_model."):
        conv1 = _shape(keys.get(f"{prefix}decoder.conv1.weight"))  # the Wan 2.1 layout
        conv_in = _shape(keys.get(f"{prefix}decoder.conv_in.weight"))
        if len(conv1) == 5 or len(conv_in) == 5:  # 3D convolutions: the Wan 2.1-style VAE
            z = (conv1 or conv_in)[1]
            return ("qwen_vae", 0) if z == 16 else ("", 0)
        if len(conv_in) == 4 and (conv_in[1] == 32 or f"{prefix}bn.running_mean" in keys):
            return "flux2_vae", 0
    for lm in ("model.", "", "model.language_model.", "language_model.model."):
        norm = _shape(keys.get(f"{lm}layers.0.post_attention_layernorm.weight"))
        if not norm:
            continue
        if f"{lm}layers.0.post_feedforward_layernorm.weight" in keys:
            return "", norm[0]  # Gemma (Lumina 2, LTX): none of these families' encoders
        width = norm[0]
        if f"{lm}layers.0.self_attn.q_norm.weight" in keys:
            return "qwen3", width
        if f"{lm}layers.0.self_attn.k_proj.bias" in keys:
            return "qwen25vl", width
        if width == MISTRAL3_WIDTH or "mistral" in name.lower():
            return "mistral3", width
        return "", width
    return "", 0
