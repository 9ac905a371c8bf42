"""LoRA key layouts diffusers' ``load_lora_weights`` does not read itself, put into one it reads.

diffusers converts most layouts on its own: kohya/sd-scripts, ComfyUI (``diffusion_model.`` with
``lora_down``) and XLabs files for FLUX.1; kohya/Musubi and ComfyUI files for Qwen-Image,
Z-Image and FLUX.2. What it leaves out, and what this module converts, before the tensors go to
``load_lora_weights`` as a dict:

- the attention-processor layout diffusers' own training scripts wrote until 2024 (SD 1.x/SDXL);
- FLUX.1 LoRAs in BFL's layout (``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight``,
  as BFL's flux repository and ComfyUI write them): the same module names as ComfyUI's
  ``lora_down``/``lora_up`` files, which diffusers reads, so only ``lora_A``/``lora_B`` are
  renamed (no alpha: scale 1, as BFL's loader applies them);
- SD 3.5 LoRAs in kohya's (``lora_unet_joint_blocks_0_x_block_attn_qkv``) or the original
  (``diffusion_model.joint_blocks.0.x_block.attn.qkv``) layout, which diffusers' SD 3 loader
  does not convert: each original module is mapped to diffusers' (``qkv`` split into ``to_q``,
  ``to_k``, ``to_v`` with the shared down matrix), the ``alpha / rank`` scale folded into the up
  matrix;
- diffusers-named LoRAs saved without the ``transformer.`` prefix (``transformer_blocks.0.attn.
  to_q.lora_A.weight``), which the loaders would silently skip.

No torch at import; the functions get and return dicts of tensors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from studio.core.jobs import UserFacingError
from studio.library.families import family as family_of
from studio.library.lora_families import module_name

_DOWN, _UP = ("lora_down", "lora_A"), ("lora_up", "lora_B")


def convert_old_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """A LoRA in the attention-processor layout diffusers' training scripts wrote until 2024
    (``[unet.]….attn1.processor.to_q_lora.down.weight``, text encoder ``….q_proj.lora_linear_
    layer.down.weight``) in the PEFT layout ``load_lora_weights`` reads today (``unet.….to_q.
    lora_A.weight``), which no longer converts it (it loads nothing). Those LoRAs had no alpha:
    the update is ``up @ down`` at scale 1, which PEFT gives with alpha = rank."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        match = re.search(r"^(.*)\.processor\.to_(q|k|v|out)_lora\.(down|up)\.weight$", key)
        if match:
            base, proj, side = match.groups()
            base = base if base.startswith("unet.") else f"unet.{base}"
            target = "to_out.0" if proj == "out" else f"to_{proj}"
            out[f"{base}.{target}.lora_{'A' if side == 'down' else 'B'}.weight"] = value
            continue
        match = re.search(r"^(.*_proj)\.lora_linear_layer\.(down|up)\.weight$", key)
        if match:
            base, side = match.groups()
            base = base if base.startswith("text_encoder") else f"text_encoder.{base}"
            out[f"{base}.lora_{'A' if side == 'down' else 'B'}.weight"] = value
            continue
        out[key] = value
    return out


def file_converts(path: Path, family: str) -> bool:
    """Whether the safetensors LoRA at ``path`` must be converted here before diffusers reads it
    for a ``family`` pipeline (its header only)."""
    from studio.library.detect import read_safetensors_header

    found = family_of(family)
    if found is None or found.denoiser != "transformer" \
            or Path(path).suffix.lower() != ".safetensors":
        return False
    keys = [k for k in read_safetensors_header(path) if k != "__metadata__"]
    return needs_conversion(keys, family, True)


def prepared(pipe: Any, state: dict[str, Any], old_diffusers: bool, name: str, family: str,
             warnings: list[str] | None = None) -> dict[str, Any]:
    """``state`` (a LoRA's tensors) as diffusers' loader for ``pipe`` reads it; what had to be
    left out is said in ``warnings``."""
    if old_diffusers:
        return convert_old_diffusers(state)
    found = family_of(family)
    if found is None or not needs_conversion(list(state), family,
                                             found.denoiser == "transformer"):
        return state
    config = getattr(getattr(pipe, "transformer", None), "config", None)
    try:
        converted, skipped = convert(state, family, int(getattr(config, "num_layers", 0) or 0))
    except ValueError as exc:
        raise UserFacingError(f"LoRA '{name}' cannot be read for {found.label} models: "  # plural-ok
                              f"{exc}.") from exc
    if skipped and warnings is not None:
        warnings.append(f"LoRA '{name}': its T5 text-encoder layers ({', '.join(skipped[:3])}"
                        f"{' …' if len(skipped) > 3 else ''}) are left out — diffusers applies "
                        "SD 3.5 LoRAs to the transformer and the two CLIP encoders only.")
    return converted


def needs_conversion(keys: list[str], family: str, transformer: bool) -> bool:
    """Whether a LoRA with ``keys`` must be converted here for a ``family`` pipeline
    (``transformer``: the family's denoiser is a transformer)."""
    if not transformer:
        return False
    if family in ("flux", "flux-kontext", "chroma") and _bfl_peft(keys):
        return True
    if family == "sd3" and any(module_name(k).startswith("joint_blocks") for k in keys):
        return True
    return _bare_diffusers(keys)


def convert(state: dict[str, Any], family: str,
            num_layers: int = 0) -> tuple[dict[str, Any], list[str]]:
    """``state`` in the layout diffusers' loader for ``family`` reads (see the module's doc),
    and the modules it had to leave out; ``num_layers``: SD 3.5's transformer blocks (its last
    block's norm is stored swapped)."""
    keys = list(state)
    if family == "sd3" and any(module_name(k).startswith("joint_blocks") for k in keys):
        return _sd3_original(state, num_layers)
    if family in ("flux", "flux-kontext", "chroma") and _bfl_peft(keys):
        return {_bfl_key(k): v for k, v in state.items()}, []
    if _bare_diffusers(keys):
        return {k if k.startswith(("text_encoder", "transformer.")) else f"transformer.{k}": v
                for k, v in state.items()}, []
    return state, []


def _bfl_peft(keys: list[str]) -> bool:
    return any(k.startswith("diffusion_model.") and (".lora_A." in k or ".lora_B." in k)
               for k in keys)


def _bfl_key(key: str) -> str:
    if not key.startswith("diffusion_model."):
        return key
    return key.replace(".lora_A.weight", ".lora_down.weight").replace(".lora_B.weight",
                                                                      ".lora_up.weight")


def _bare_diffusers(keys: list[str]) -> bool:
    """diffusers module names with PEFT's ``lora_A``/``lora_B`` and no component prefix."""
    blocks = re.compile(r"^(single_transformer_blocks|transformer_blocks|layers|noise_refiner|"
                        r"context_refiner)\.\d+\.")
    return any(blocks.match(k) and (".lora_A." in k or ".lora_B." in k) for k in keys) \
        and not any(k.startswith("transformer.") for k in keys)


def _sd3_targets(num_layers: int) -> dict[str, tuple[list[str], bool]]:
    """SD 3.5's original module names (dots → underscores, as kohya flattens them) → the
    diffusers modules they become, and whether the rows are stored (shift, scale) swapped."""
    table: dict[str, tuple[list[str], bool]] = {
        "context_embedder": (["context_embedder"], False),
        "x_embedder.proj": (["pos_embed.proj"], False),
        "t_embedder.mlp.0": (["time_text_embed.timestep_embedder.linear_1"], False),
        "t_embedder.mlp.2": (["time_text_embed.timestep_embedder.linear_2"], False),
        "y_embedder.mlp.0": (["time_text_embed.text_embedder.linear_1"], False),
        "y_embedder.mlp.2": (["time_text_embed.text_embedder.linear_2"], False),
        "final_layer.linear": (["proj_out"], False),
        "final_layer.adaLN_modulation.1": (["norm_out.linear"], True),
    }
    for i in range(max(num_layers, 1)):
        src, dst = f"joint_blocks.{i}", f"transformer_blocks.{i}"
        last = i == num_layers - 1
        for block, side, attn in (("x_block", "", "attn"), ("context_block", "_context", "")):
            table[f"{src}.{block}.adaLN_modulation.1"] = ([f"{dst}.norm1{side}.linear"],
                                                          last and block == "context_block")
            table[f"{src}.{block}.mlp.fc1"] = ([f"{dst}.ff{side}.net.0.proj"], False)
            table[f"{src}.{block}.mlp.fc2"] = ([f"{dst}.ff{side}.net.2"], False)
            if attn:
                table[f"{src}.{block}.attn.qkv"] = ([f"{dst}.attn.to_q", f"{dst}.attn.to_k",
                                                     f"{dst}.attn.to_v"], False)
                table[f"{src}.{block}.attn.proj"] = ([f"{dst}.attn.to_out.0"], False)
                table[f"{src}.{block}.attn2.qkv"] = ([f"{dst}.attn2.to_q", f"{dst}.attn2.to_k",
                                                      f"{dst}.attn2.to_v"], False)
                table[f"{src}.{block}.attn2.proj"] = ([f"{dst}.attn2.to_out.0"], False)
            else:
                table[f"{src}.{block}.attn.qkv"] = ([f"{dst}.attn.add_q_proj",
                                                     f"{dst}.attn.add_k_proj",
                                                     f"{dst}.attn.add_v_proj"], False)
                table[f"{src}.{block}.attn.proj"] = ([f"{dst}.attn.to_add_out"], False)
    return {name.replace(".", "_"): value for name, value in table.items()}


def _clip_module(key: str) -> str:
    """kohya's name of an SD 3.5 CLIP text-encoder module (``lora_te1_text_model_encoder_layers_0_
    self_attn_q_proj.lora_down.weight``) in diffusers' (``text_encoder.text_model.encoder.
    layers.0.self_attn.q_proj.lora_down.weight``)."""
    head, _, tail = key.partition(".")
    encoder = "text_encoder" if head.startswith("lora_te1_") else "text_encoder_2"
    name = head[len("lora_te1_"):].replace("_", ".")
    for flat, real in (("text.model", "text_model"), ("self.attn", "self_attn"),
                       ("q.proj", "q_proj"), ("k.proj", "k_proj"), ("v.proj", "v_proj"),
                       ("out.proj", "out_proj"), ("text.projection", "text_projection")):
        name = name.replace(flat, real)
    return f"{encoder}.{name}.{tail}"


def _sd3_original(state: dict[str, Any], num_layers: int) -> tuple[dict[str, Any], list[str]]:
    """An SD 3.5 LoRA in kohya's or the original layout → diffusers' PEFT layout (scale 1), and
    the kohya modules left out (T5's: diffusers' SD 3 loader takes the CLIP encoders only)."""
    import torch

    table = _sd3_targets(num_layers)
    groups: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {}
    skipped: set[str] = set()
    for key, value in state.items():
        if key.startswith("text_encoder"):
            out[key] = value  # already diffusers' names
            continue
        if key.startswith("lora_te") and not key.startswith(("lora_te1_", "lora_te2_")):
            skipped.add(key.split(".")[0])
            continue
        clip = key.startswith(("lora_te1_", "lora_te2_"))
        name = _clip_module(key) if clip else module_name(key)
        match = re.match(r"^(.*)\.(alpha|lora_down\.weight|lora_up\.weight|lora_A\.weight|"
                         r"lora_B\.weight)$", name)
        if match is None:
            raise ValueError(f"an SD 3.5 LoRA key Studio does not know: {key}")
        module, tail = match.groups()
        groups.setdefault(module if clip else module.replace(".", "_"), {})[tail] = value
    for module, parts in groups.items():
        if module.startswith("text_encoder"):
            targets, swapped = [module], False
        elif module in table:
            targets, swapped = table[module]
            targets = [f"transformer.{t}" for t in targets]
        else:
            raise ValueError(f"an SD 3.5 LoRA module Studio does not know: {module}")
        down = next((v for k, v in parts.items() if k.startswith(_DOWN)), None)
        up = next((v for k, v in parts.items() if k.startswith(_UP)), None)
        if down is None or up is None:
            raise ValueError(f"the SD 3.5 LoRA module {module} lacks its down or up matrix")
        rank = down.shape[0]
        alpha = parts.get("alpha")
        scale = float(alpha) / rank if alpha is not None else 1.0
        up = up * scale if scale != 1.0 else up
        if swapped:
            shift, scale_rows = up.chunk(2, dim=0)
            up = torch.cat([scale_rows, shift], dim=0)
        for target, rows in zip(targets, up.chunk(len(targets), dim=0), strict=True):
            out[f"{target}.lora_A.weight"] = down.contiguous()
            out[f"{target}.lora_B.weight"] = rows.contiguous()
    return out, sorted(skipped)
