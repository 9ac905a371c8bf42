"""Which transformer model family a LoRA file was made for, from its key names and shapes alone.

SD 1.x/2.x/SDXL LoRAs are told apart by their cross-attention width (:mod:`.classify`). The
transformer families are told apart by the module names the trainers write, in each of the
layouts found in the wild:

- **kohya** (sd-scripts, Musubi, OneTrainer): ``lora_unet_double_blocks_0_img_attn_qkv.
  lora_down.weight`` (FLUX.1/FLUX.2/Chroma, the original module names flattened),
  ``lora_unet_joint_blocks_0_x_block_attn_qkv`` (SD 3.5), ``lora_unet_transformer_blocks_0_
  attn_to_q`` (Qwen-Image), ``lora_unet_layers_0_attention_to_q`` (Z-Image);
- **diffusers / ai-toolkit / SimpleTuner** (PEFT names of the diffusers model):
  ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight`` and
  ``transformer.single_transformer_blocks.…`` (FLUX.1), ``….single_transformer_blocks.0.attn.
  to_qkv_mlp_proj`` (FLUX.2), ``….transformer_blocks.0.img_mlp.net.0.proj`` (Qwen-Image),
  ``transformer.layers.0.attention.to_q`` (Z-Image);
- **BFL / ComfyUI** (the original model's module names under ``diffusion_model.``):
  ``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight``;
- **XLabs** (FLUX.1): ``double_blocks.0.processor.qkv_lora1.down.weight``.

Where the layout is shared (FLUX.1 and FLUX.2 both have double and single blocks; SD 3.5,
FLUX.1 and Qwen-Image all have ``transformer_blocks.N.attn.to_q``) the shapes decide: the
hidden width (FLUX.1 and Qwen-Image 3072, SD 3.5 medium 1536 and large 2432, FLUX.2 [dev] 6144,
klein 9B 4096), the MLP's width (FLUX.1 4×, FLUX.2 a 3× SwiGLU), and how many blocks there are.
When nothing decides, the trainer's metadata (``modelspec.architecture``,
``ss_base_model_version``) is read; failing that the family stays unknown (the LoRA is offered
for every model and diffusers' loader judges it), never a guess. No torch here.
"""

from __future__ import annotations

import re
from typing import Any

#: the prefixes trainers put before the transformer's module names
_PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.",
             "lora_unet_", "lora_transformer_", "unet.")
_SEP = r"[._]"
_DOUBLE = re.compile(rf"^double_blocks{_SEP}(\d+){_SEP}")
_SINGLE = re.compile(rf"^single_blocks{_SEP}(\d+){_SEP}")
_BLOCKS = re.compile(rf"^transformer_blocks{_SEP}(\d+){_SEP}")
_SINGLE_BLOCKS = re.compile(rf"^single_transformer_blocks{_SEP}(\d+){_SEP}")
_JOINT = re.compile(rf"^joint_blocks{_SEP}(\d+){_SEP}")
_Z_IMAGE = re.compile(rf"^((layers{_SEP}\d+{_SEP}(attention|feed_forward|adaLN))"
                      rf"|noise_refiner{_SEP}|context_refiner{_SEP})")
_FLUX2_MARKS = ("to_qkv_mlp_proj", "double_stream_modulation", "single_stream_modulation",
                "linear_in", "linear_out")
_QWEN_MARKS = ("img_mlp", "txt_mlp", "img_mod", "txt_mod")
_XLABS = re.compile(r"\.processor\.(proj|qkv)_lora\d\.(down|up)\.weight$")
_DOWN = (".lora_A.weight", ".lora_down.weight", ".down.weight", ".lora.down.weight")
_UP = (".lora_B.weight", ".lora_up.weight", ".up.weight", ".lora.up.weight")
#: the hidden widths only one family has
_WIDTHS = {1536: ("sd3", "SD 3.5 medium's width 1536"), 2432: ("sd3", "SD 3.5 large's width 2432"),
           4096: ("flux2", "FLUX.2 klein 9B's width 4096"),
           6144: ("flux2", "FLUX.2 [dev]'s width 6144")}
#: FLUX.1 has 19 double and 38 single blocks; FLUX.2 at most 8 double and 48 single ones
_FLUX1_DOUBLE, _FLUX1_SINGLE, _FLUX2_DOUBLE = 19, 38, 8
#: Qwen-Image has 60 blocks, FLUX.1 19 double blocks, SD 3.5 large 38
_QWEN_WIDTH = 3072


def module_name(key: str) -> str:
    """The transformer module a LoRA key belongs to, without the trainer's prefix."""
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def is_xlabs(keys: list[str]) -> bool:
    """An XLabs FLUX.1 LoRA (``double_blocks.0.processor.qkv_lora1.down.weight``)."""
    return any(_XLABS.search(k) for k in keys)


def original_layout(keys: list[str]) -> str:
    """'BFL' / 'ComfyUI' for a LoRA in the original model's module names under
    ``diffusion_model.`` (FLUX's double/single blocks: BFL), '' for any other layout."""
    mine = [k for k in keys if k.startswith(("diffusion_model.", "model.diffusion_model."))]
    if not mine:
        return ""
    names = [module_name(k) for k in mine]
    return "BFL" if any(_DOUBLE.match(n) or _SINGLE.match(n) for n in names) else "ComfyUI"


def _shape(header: dict[str, Any], key: str) -> list[int]:
    info = header.get(key)
    return [int(x) for x in info.get("shape", [])] if isinstance(info, dict) else []


def _width(header: dict[str, Any], names: dict[str, str], *modules: str) -> int:
    """The input width of the first of ``modules`` (module-name suffixes) with a down matrix."""
    for key, name in names.items():
        if key.endswith(_DOWN) and any(re.search(rf"{_SEP}{m}{_SEP}(lora|down)", name)
                                       for m in modules):
            shape = _shape(header, key)
            if len(shape) == 2:
                return shape[1]
    return 0


def _ratio(header: dict[str, Any], names: dict[str, str], module: str, width: int,
           inputs: bool = False) -> float:
    """Output rows of ``module``'s up matrix (``inputs``: input columns of its down matrix) over
    ``width`` (0 when not in the file)."""
    end, side, axis = (_DOWN, "down", 1) if inputs else (_UP, "up", 0)
    for key, name in names.items():
        if key.endswith(end) and re.search(rf"{_SEP}{module}{_SEP}(lora|{side})", name):
            shape = _shape(header, key)
            if len(shape) == 2 and width:
                return shape[axis] / width
    return 0.0


def _highest(names: list[str], pattern: re.Pattern) -> int:
    found = [int(m.group(1)) for n in names if (m := pattern.match(n))]
    return max(found) if found else -1


def _flux_or_flux2(header: dict[str, Any], names: dict[str, str]) -> tuple[str, str]:
    """Double and single blocks: FLUX.1 (or Chroma) against FLUX.2, from widths and counts."""
    modules = list(names.values())
    width = _width(header, names, r"img_attn[._]qkv", r"linear1", r"img_attn[._]proj")
    if any(m in n for n in modules for m in _FLUX2_MARKS):
        return "flux2", "FLUX.2's shared modulation layers"
    if any("distilled_guidance_layer" in n for n in modules):
        return "chroma", "Chroma's distilled guidance layer"
    if width in _WIDTHS and _WIDTHS[width][0] == "flux2":
        return "flux2", _WIDTHS[width][1]
    for module, flux1, flux2, what in (("linear1", 7, 9, "single blocks' linear1"),
                                       (r"img_mlp[._]0", 4, 6, "MLP"),
                                       ("linear2", 5, 4, "single blocks' linear2")):
        ratio = _ratio(header, names, module, width, inputs=module == "linear2")
        if ratio == flux1:
            return "flux", f"FLUX.1's double/single blocks ({what} {ratio:g}× the width)"
        if ratio == flux2:
            return "flux2", f"FLUX.2's double/single blocks ({what} {ratio:g}× the width)"
    if any(re.search(r"(img_mod|txt_mod|modulation)[._]lin", n) for n in modules):
        return "flux", "FLUX.1's per-block modulation layers"
    if _highest(modules, _DOUBLE) >= _FLUX2_DOUBLE:
        return "flux", f"{_highest(modules, _DOUBLE) + 1} double blocks (FLUX.1)"
    if _highest(modules, _SINGLE) >= _FLUX1_SINGLE:
        return "flux2", f"{_highest(modules, _SINGLE) + 1} single blocks (FLUX.2)"
    return "", "FLUX-style double/single blocks, FLUX.1 or FLUX.2 not clear from the keys"


def _diffusers_blocks(header: dict[str, Any], names: dict[str, str]) -> tuple[str, str]:
    """diffusers' ``transformer_blocks`` (and maybe ``single_transformer_blocks``)."""
    modules = list(names.values())
    blocks = [n for n in modules if _BLOCKS.match(n) or _SINGLE_BLOCKS.match(n)]
    if any(m in n for n in blocks for m in _FLUX2_MARKS):
        return "flux2", "FLUX.2's fused single-block projections (to_qkv_mlp_proj)"
    if any("distilled_guidance_layer" in n for n in modules):
        return "chroma", "Chroma's distilled guidance layer"
    if any(re.search(rf"{_SEP}({'|'.join(_QWEN_MARKS)}){_SEP}", n) for n in blocks):
        return "qwen-image", "Qwen-Image's img/txt MLP and modulation layers"
    width = _width(header, names, r"attn[._]to_q", r"attn[._]to_k", r"attn[._]to_v",
                   r"attn[._]add_q_proj", r"attn[._]to_out[._]0", r"proj_mlp")
    if width in _WIDTHS:
        return _WIDTHS[width]
    if any(_SINGLE_BLOCKS.match(n) for n in modules):
        return "flux", "FLUX.1's transformer_blocks and single_transformer_blocks"
    if any(re.search(r"attn2[._]", n) for n in blocks):
        return "sd3", "SD 3.5 medium's second attention (attn2)"
    highest = _highest(modules, _BLOCKS)
    if width == _QWEN_WIDTH and highest >= _FLUX1_DOUBLE:
        return "qwen-image", f"{highest + 1} blocks of width 3072 (Qwen-Image)"
    return "", "transformer blocks whose model is not clear from the keys"


def _from_metadata(header: dict[str, Any]) -> tuple[str, str]:
    meta = header.get("__metadata__") or {}
    for field in ("modelspec.architecture", "ss_base_model_version", "base_model"):
        text = str(meta.get(field, "") or "").lower()
        if not text:
            continue
        for marks, family in ((("flux-2", "flux2", "flux.2"), "flux2"), (("chroma",), "chroma"),
                              (("flux",), "flux"),
                              (("stable-diffusion-3", "sd3", "sd-3", "sd_3"), "sd3"),
                              (("qwen",), "qwen-image"), (("z-image", "zimage", "z_image"),
                                                          "z-image")):
            if any(m in text for m in marks):
                return family, f"metadata says {meta.get(field)}"
    return "", ""


def transformer_lora_base(header: dict[str, Any]) -> tuple[str, str] | None:
    """``(family, reason)`` for a LoRA of a transformer family (family "" when its layout is a
    transformer's but the model is not clear), None when the keys are no transformer's."""
    keys = [k for k in header if k != "__metadata__" and not k.startswith(("lora_te", "te_",
                                                                          "text_encoder"))]
    names = {k: module_name(k) for k in keys}
    modules = list(names.values())
    if is_xlabs(keys):
        return "flux", "XLabs' FLUX.1 LoRA layout"
    found: tuple[str, str] | None = None
    if any(_JOINT.match(n) for n in modules):
        found = "sd3", "SD 3.5's joint blocks"
    elif any(_Z_IMAGE.match(n) for n in modules):
        found = "z-image", "Z-Image's layers and refiners"
    elif any(_DOUBLE.match(n) or _SINGLE.match(n) for n in modules):
        found = _flux_or_flux2(header, names)
    elif any(_BLOCKS.match(n) or _SINGLE_BLOCKS.match(n) for n in modules):
        found = _diffusers_blocks(header, names)
    if found is None:
        return None
    if not found[0]:
        return _from_metadata(header) if _from_metadata(header)[0] else found
    return found
