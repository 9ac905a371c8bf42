"""Assembling Qwen-Image, Z-Image and FLUX.2 pipelines from ComfyUI's split files, offline.

The diffusion-model file goes through diffusers' ``from_single_file`` (its own converters: Z-Image's
fused attention, FLUX.2's BFL names; Qwen-Image's file is already in diffusers' names) with the
shipped config (``assets/configs/qwen_image|z_image|flux2_dev|flux2_klein``), the shape the file
itself says (layer counts, widths, FLUX.2's guidance embedder) overriding it. The VAE is converted
by diffusers' Wan 2.1 converter (Qwen-Image), its LDM converter (FLUX.2's, plus the batch norm's
statistics) or read as FLUX.1's ``ae`` (Z-Image). The text encoder — ComfyUI saves it in
transformers' own layout — is loaded into the family's transformers class from the shipped config.

fp8 (e4m3fn) files stay fp8 and are upcast a layer at a time (as FLUX.1's split files are);
ComfyUI's *scaled* fp8 files (a scale per weight: ``scale_weight`` or ``weight_scale``) are
multiplied out into the compute precision, which is exact but takes the precision's size.

The Qwen tokenizers (and FLUX.2 dev's Mistral one) are several MB and not shipped: they are read
from the Hugging Face cache (any of the repositories in :data:`TOKENIZER_SOURCES`), and when none is
there the error names the ``hf download`` that brings them. torch, diffusers and transformers are
imported inside the functions (DESIGN rule 7).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from studio.core.config import Paths
from studio.core.jobs import UserFacingError
from studio.core.wording import count_of
from studio.library import split_families
from studio.library.detect import read_safetensors_header
from studio.library.models import ModelEntry
from studio.library.split_files import model_header

#: config variant → shipped asset folder (under assets/configs)
ASSETS = {"qwen-image": "qwen_image", "z-image": "z_image", "flux2": "flux2_dev",
          "flux2-klein": "flux2_klein"}
#: config variant → Hugging Face (repository, sub-folder) pairs holding its tokenizer, the
#: ungated first, and the download that brings the first
TOKENIZER_SOURCES = {
    "qwen-image": (("Qwen/Qwen-Image", "tokenizer"), ("Qwen/Qwen-Image-2512", "tokenizer"),
                   ("Qwen/Qwen-Image-Edit", "tokenizer"), ("Qwen/Qwen2.5-VL-7B-Instruct", "")),
    "z-image": (("Tongyi-MAI/Z-Image-Turbo", "tokenizer"), ("Tongyi-MAI/Z-Image", "tokenizer"),
                ("Qwen/Qwen3-4B", "")),
    "flux2-klein": (("black-forest-labs/FLUX.2-klein-4B", "tokenizer"),
                    ("black-forest-labs/FLUX.2-klein-9B", "tokenizer"),
                    ("black-forest-labs/FLUX.2-klein-base-4B", "tokenizer"),
                    ("Tongyi-MAI/Z-Image-Turbo", "tokenizer"), ("Qwen/Qwen3-4B", "")),
    "flux2": (("black-forest-labs/FLUX.2-dev", "tokenizer"),
              ("mistralai/Mistral-Small-3.1-24B-Instruct-2503", "")),
}
_PREFIX = "model.diffusion_model."
_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
_DROPPED = (".scale_input", ".input_scale", ".comfy_quant")


def variant(entry: ModelEntry) -> str:
    """The config variant of a split entry: its family, or "flux2-klein" for a FLUX.2 klein."""
    if entry.family == "flux2" and split_families.flux2_encoder_kind(
            model_header(entry.path)) == "qwen3":
        return "flux2-klein"
    return entry.family


def config_dir(name: str) -> Path:
    """The config folder of a variant: ``$STUDIO_SINGLE_FILE_CONFIG_DIR/<variant>`` (tests,
    unusual models) when it has one, else the shipped one."""
    from studio.library.single_file_configs import CONFIG_OVERRIDES, CONFIGS_DIR, ENV_OVERRIDE

    if name in CONFIG_OVERRIDES:
        return Path(CONFIG_OVERRIDES[name])
    env = os.environ.get(ENV_OVERRIDE)
    if env and (Path(env) / name / "model_index.json").is_file():
        return Path(env) / name
    folder = CONFIGS_DIR / ASSETS[name]
    if not (folder / "model_index.json").is_file():
        raise UserFacingError(f"Studio's bundled configuration for {name} is missing ({folder}). "
                              "Reinstall Studio.")
    return folder


def download_hint(name: str) -> str:
    repo, sub = TOKENIZER_SOURCES[name][0]
    return f"hf download {repo}" + (f' --include "{sub}/*"' if sub else "")


def find_tokenizer(config: Path, name: str) -> Path:
    """The tokenizer folder: beside the configs (tests, overrides), else in the HF cache."""
    if (config / "tokenizer" / "tokenizer_config.json").is_file():
        return config / "tokenizer"
    from studio.library.hf_cache import hf_cache_repos, hf_snapshots

    wanted = dict(TOKENIZER_SOURCES[name])
    for repo in hf_cache_repos():
        if repo.repo_id not in wanted:
            continue
        for snap in hf_snapshots(repo):
            folder = snap / wanted[repo.repo_id] if wanted[repo.repo_id] else snap
            if (folder / "tokenizer_config.json").is_file() and any(
                    (folder / f).is_file() for f in ("tokenizer.json", "vocab.json",
                                                     "tekken.json")):
                return folder
    raise UserFacingError(f"The {name} text encoder needs its tokenizer, which is too large to "
                          f"ship with Studio and is not in your Hugging Face cache; get it with "
                          f"'{download_hint(name)}' (a few MB), then try again.")


def is_scaled_fp8(header: dict[str, Any]) -> bool:
    """Whether a file is ComfyUI's scaled fp8 (a scale tensor beside each fp8 weight)."""
    return "scaled_fp8" in header or any(k.endswith(_SCALE_SUFFIXES) for k in header)


def unscale_fp8(state: dict, dtype: Any) -> dict:
    """ComfyUI's scaled fp8 weights multiplied out (weight × its scale) in ``dtype``; the
    markers and input scales (for fp8 matmuls Studio does not use) dropped."""
    import torch

    dtype = dtype or torch.float32
    out = {}
    for key, value in state.items():
        if key == "scaled_fp8" or key.endswith(_DROPPED + _SCALE_SUFFIXES):
            continue
        base = key[:-len(".weight")] if key.endswith(".weight") else ""
        scale = next((state[base + s] for s in _SCALE_SUFFIXES if base and base + s in state),
                     None)
        if scale is not None:
            scale = scale.to(torch.float32)
            if scale.ndim and scale.shape[0] == value.shape[0]:
                scale = scale.reshape(-1, *([1] * (value.ndim - 1)))
            value = (value.to(torch.float32) * scale).to(dtype)
        out[key] = value
    return out


def _load_state(path: Path, dtype: Any) -> tuple[dict, bool]:
    """A part file's tensors, scaled fp8 multiplied out; and whether it stays fp8 in memory."""
    from safetensors.torch import load_file

    from studio.pipelines.diffusion.split_loading import is_fp8

    header = read_safetensors_header(path)
    state = load_file(str(path))
    if is_scaled_fp8(header):
        return unscale_fp8(state, dtype), False
    return state, is_fp8(header)


def _keep_fp8(module: Any, fp8: bool, dtype: Any) -> Any:
    import torch
    from diffusers.hooks import apply_layerwise_casting

    if fp8 and dtype is not None and dtype != torch.float8_e4m3fn:
        apply_layerwise_casting(module, storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    return module


def transformer_overrides(header: dict[str, Any], family: str, config: dict) -> dict[str, Any]:
    """What the diffusion-model file says about its shape, over the shipped config."""
    keys = {k[len(_PREFIX):] if k.startswith(_PREFIX) else k: v for k, v in header.items()
            if k != "__metadata__"}

    def count(prefix: str) -> int:
        return len({k.split(".")[1] for k in keys if k.startswith(prefix)})

    def shape(key: str) -> list[int]:
        return list(keys[key]["shape"])

    if family == "qwen-image":
        inner = shape("img_in.weight")[0]
        return {"num_layers": count("transformer_blocks."),
                "in_channels": shape("img_in.weight")[1],
                "num_attention_heads": inner // int(config["attention_head_dim"]),
                "joint_attention_dim": shape("txt_in.weight")[1]}
    if family == "z-image":
        dim = shape("cap_embedder.1.weight")[0]
        head = int(config["dim"]) // int(config["n_heads"])
        return {"n_layers": count("layers."), "n_refiner_layers": count("noise_refiner."),
                "dim": dim, "n_heads": dim // head, "n_kv_heads": dim // head,
                "cap_feat_dim": shape("cap_embedder.1.weight")[1]}
    inner = shape("img_in.weight")[0]
    return {"num_layers": count("double_blocks."), "num_single_layers": count("single_blocks."),
            "in_channels": shape("img_in.weight")[1],
            "num_attention_heads": inner // int(config["attention_head_dim"]),
            "joint_attention_dim": shape("txt_in.weight")[1],
            "guidance_embeds": any(k.startswith("guidance_in.") for k in keys)}


def load_transformer(entry: ModelEntry, config: Path, dtype: Any) -> Any:
    import diffusers

    cls = getattr(diffusers, {"qwen-image": "QwenImageTransformer2DModel",
                              "z-image": "ZImageTransformer2DModel",
                              "flux2": "Flux2Transformer2DModel"}[entry.family])
    base = json.loads((config / "transformer" / "config.json").read_text(encoding="utf-8"))
    overrides = transformer_overrides(model_header(entry.path), entry.family, base)
    gguf = entry.path.suffix.lower() == ".gguf"
    fp8 = False
    if gguf:  # quantized weights stay quantized; each layer is dequantized as it runs
        from diffusers import GGUFQuantizationConfig
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        state = load_gguf_checkpoint(str(entry.path))
        overrides["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype)
    else:
        state, fp8 = _load_state(entry.path, dtype)
    state = {k[len(_PREFIX):] if k.startswith(_PREFIX) else k: v for k, v in state.items()}
    model = cls.from_single_file(state, config=str(config), subfolder="transformer",
                                 local_files_only=True, torch_dtype=dtype, **overrides)
    return _keep_fp8(model, fp8, dtype)


def _flux2_vae_state(state: dict, config: dict) -> dict:
    """BFL's FLUX.2 VAE (the LDM layout, its quant convs inside the encoder/decoder, and a
    batch norm over the patchified latents) in diffusers' names."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    moved = {"encoder.quant_conv.": "quant_conv.", "decoder.post_quant_conv.": "post_quant_conv."}
    ldm = {}
    for key, value in state.items():
        for old, new in moved.items():
            if key.startswith(old):
                key = new + key[len(old):]
        ldm[key] = value
    converted = convert_ldm_vae_checkpoint(ldm, config)
    converted.update({k: v for k, v in ldm.items() if k.startswith("bn.")})
    return converted


def load_vae(kind: str, path: Path, config: Path, dtype: Any) -> Any:
    import diffusers

    folder = config / "vae"
    if kind == "vae":  # FLUX.1's ae, which Z-Image decodes with
        return diffusers.AutoencoderKL.from_single_file(
            str(path), config=str(config), subfolder="vae", local_files_only=True,
            torch_dtype=dtype)
    state, _fp8 = _load_state(path, dtype)
    state = {k.removeprefix("vae.").removeprefix("first_stage_model."): v
             for k, v in state.items()}
    cls: Any
    if kind == "qwen_vae":
        cls = diffusers.AutoencoderKLQwenImage
        if "decoder.conv1.weight" in state:  # the Wan 2.1 layout ComfyUI ships
            from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

            state = convert_wan_vae_to_diffusers(state)
    else:
        cls = diffusers.AutoencoderKLFlux2
        if "decoder.conv_in.weight" in state and "decoder.up.0.block.0.conv1.weight" in state:
            state = _flux2_vae_state(state, cls.load_config(str(folder)))
    vae = cls.from_config(cls.load_config(str(folder)))
    missing, unexpected = vae.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        differ = count_of(len(missing) + len(unexpected), "weight")
        raise UserFacingError(f"{path.name} does not fit this model's VAE ({differ} differ, "
                              f"e.g. {(missing + unexpected)[0]}).")
    return vae.to(dtype=dtype).eval() if dtype is not None else vae.eval()


def fit_text_config(cfg: Any, header: dict[str, Any]) -> None:
    """Set the language model's sizes in ``cfg`` from the file's header when it is another
    size than the shipped config (FLUX.2 klein 9B's Qwen3 8B beside the 4B's config)."""
    text = getattr(cfg, "text_config", cfg)
    for lm in ("model.", "model.language_model.", "language_model.model.", ""):
        if f"{lm}layers.0.post_attention_layernorm.weight" in header:
            break
    else:
        return

    def shape(key: str) -> list[int]:
        return list(header[f"{lm}{key}"]["shape"])

    width = shape("layers.0.post_attention_layernorm.weight")[0]
    if width == text.hidden_size:
        return
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    layers = len({k[len(lm):].split(".")[1] for k in header if k.startswith(f"{lm}layers.")})
    text.hidden_size, text.num_hidden_layers = width, layers
    text.intermediate_size = shape("layers.0.mlp.gate_proj.weight")[0]
    text.num_attention_heads = shape("layers.0.self_attn.q_proj.weight")[0] // head_dim
    text.num_key_value_heads = shape("layers.0.self_attn.k_proj.weight")[0] // head_dim
    text.vocab_size = shape("embed_tokens.weight")[0]
    if getattr(text, "head_dim", None):
        text.head_dim = head_dim
    if getattr(text, "layer_types", None):
        text.layer_types = [text.layer_types[0]] * layers
    cfg.tie_word_embeddings = text.tie_word_embeddings = not any(
        k.endswith("lm_head.weight") for k in header)


def load_text_encoder(kind: str, path: Path, config: Path, cls_name: str, dtype: Any) -> Any:
    import transformers

    state, fp8 = _load_state(path, dtype)
    folder = config / "text_encoder"
    cfg = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    fit_text_config(cfg, read_safetensors_header(path))
    if kind == "mistral3" and not any(k.startswith(("vision_tower.", "model.vision_tower."))
                                      for k in state):
        # ComfyUI's Mistral file is the language model alone: FLUX.2 reads only its hidden
        # states, which the language model computes the same without the vision tower
        cls_name, cfg = "MistralForCausalLM", cfg.text_config
    cls = getattr(transformers, cls_name)
    model = cls.from_pretrained(None, config=cfg, state_dict=state, dtype=dtype)
    return _keep_fp8(model.eval(), fp8, dtype)


def load_tokenizer(name: str, config: Path) -> Any:
    import transformers

    folder = str(find_tokenizer(config, name))
    if name == "flux2":  # Mistral's chat template lives in its processor
        return transformers.AutoProcessor.from_pretrained(folder, local_files_only=True)
    return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)


def load_family_pipeline(entry: ModelEntry, dtype: Any, paths: Paths) -> Any:
    """The pipeline of a Qwen-Image / Z-Image / FLUX.2 split entry whose parts were checked."""
    import diffusers

    from studio.library.split_files import parts_for

    name = variant(entry)
    config = config_dir(name)
    index = json.loads((config / "model_index.json").read_text(encoding="utf-8"))
    parts = {p.role: p for p in parts_for(entry.family, model_header(entry.path))}
    components: dict[str, Any] = {"transformer": load_transformer(entry, config, dtype)}
    components["vae"] = load_vae(parts["vae"].need, entry.parts["vae"], config, dtype)
    components["text_encoder"] = load_text_encoder(
        parts["text_encoder"].need, entry.parts["text_encoder"], config, index["text_encoder"][1],
        dtype)
    components["tokenizer"] = load_tokenizer(name, config)
    components["scheduler"] = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(
        str(config), subfolder="scheduler", local_files_only=True)
    cls = getattr(diffusers, index["_class_name"])
    if name == "flux2-klein":  # the distilled klein ignores guidance; its base does not
        components["is_distilled"] = "base" not in entry.path.name.lower()
    return cls(**components)
