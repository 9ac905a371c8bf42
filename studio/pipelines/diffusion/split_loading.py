"""Assembling one pipeline from ComfyUI's split files, offline (FLUX.1, SD 3.5; Qwen-Image,
Z-Image and FLUX.2 in :mod:`studio.pipelines.diffusion.split_families`).

The diffusion-model file goes through diffusers' ``from_single_file`` with the shipped config
folder (:mod:`studio.library.single_file_configs`; what the file itself says — layer counts,
guidance embedder, qk-norm — overrides it), the VAE likewise, the text encoders (saved by ComfyUI
in transformers' own key layout) through transformers' ``from_pretrained(config=…,
state_dict=…)``. CLIP tokenizers are built from the shipped merges; the T5 tokenizer is read from
the Hugging Face cache, and when it is not there the error names the ``hf download`` that brings
it. torch and diffusers are imported inside the functions (DESIGN rule 7).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.config import Paths
from studio.core.jobs import UserFacingError
from studio.library.detect import read_safetensors_header
from studio.library.families import label as family_label
from studio.library.models import ModelEntry
from studio.library.split_files import FAMILY_PARTS, check_part, comfy_models_root, model_header

if TYPE_CHECKING:
    import torch

#: role → (text encoder sub-folder, tokenizer sub-folder) per family
COMPONENTS = {
    "flux": {"clip_l": ("text_encoder", "tokenizer"), "t5xxl": ("text_encoder_2", "tokenizer_2")},
    "sd3": {"clip_l": ("text_encoder", "tokenizer"), "clip_g": ("text_encoder_2", "tokenizer_2"),
            "t5xxl": ("text_encoder_3", "tokenizer_3")},
    "chroma": {"t5xxl": ("text_encoder", "tokenizer")},
    # one language-model text encoder each (studio.pipelines.diffusion.split_families)
    **{family: {"text_encoder": ("text_encoder", "tokenizer")}
       for family in ("qwen-image", "z-image", "flux2")},
}
#: Hugging Face repositories whose sub-folder holds the T5-XXL tokenizer, the ungated first
T5_TOKENIZER_SOURCES = (
    ("black-forest-labs/FLUX.1-schnell", "tokenizer_2"),
    ("black-forest-labs/FLUX.1-dev", "tokenizer_2"),
    ("stabilityai/stable-diffusion-3.5-large", "tokenizer_3"),
    ("stabilityai/stable-diffusion-3.5-medium", "tokenizer_3"),
    ("lodestones/Chroma1-HD", "tokenizer"),
    ("google/t5-v1_1-xxl", ""),
)
T5_DOWNLOAD = "hf download black-forest-labs/FLUX.1-schnell --include \"tokenizer_2/*\""
_PREFIX = "model.diffusion_model."
#: layers layer-wise casting leaves in the compute precision: diffusers' defaults (norms,
#: position and patch embeddings, proj_in/out) and T5's ``wo``, before which transformers casts
#: the activations to that layer's stored dtype (fp8 activations would meet upcast weights);
#: token embeddings (nn.Embedding) stay too: a text encoder's ``dtype`` is its first weight's,
#: which the pipelines give the prompt embeddings and the latents
FP8_SKIP = ("pos_embed", "patch_embed", "norm", "^proj_in$", "^proj_out$", r"\.wo$")
#: the width diffusers' FLUX converter assumes (FLUX.1 dev/schnell and their finetunes)
_FLUX_WIDTH = 3072


def _strip_prefix(state: dict) -> dict:
    return {k[len(_PREFIX):] if k.startswith(_PREFIX) else k: v for k, v in state.items()}


def transformer_overrides(header: dict[str, Any], family: str, config: dict) -> dict[str, Any]:
    """What the file says about its transformer's shape, over the shipped config: FLUX dev or
    schnell (the guidance embedder), SD 3.0 / 3.5 medium / large (layers, qk-norm, dual
    attention, position grid)."""
    keys = {k[len(_PREFIX):] if k.startswith(_PREFIX) else k: v for k, v in header.items()
            if k != "__metadata__"}

    def count(prefix: str) -> int:
        return len({k.split(".")[1] for k in keys if k.startswith(prefix)})

    if family == "flux":
        return {"guidance_embeds": any(k.startswith("guidance_in.") for k in keys),
                "num_layers": count("double_blocks."),
                "num_single_layers": count("single_blocks."),
                "in_channels": keys["img_in.weight"]["shape"][1],
                "joint_attention_dim": keys["txt_in.weight"]["shape"][1],
                "pooled_projection_dim": keys["vector_in.in_layer.weight"]["shape"][1]}
    hidden = keys["context_embedder.weight"]["shape"][0]
    pos = keys["pos_embed"]["shape"][1]
    return {"num_layers": count("joint_blocks."),
            "num_attention_heads": hidden // int(config.get("attention_head_dim", 64)),
            "caption_projection_dim": hidden,
            "joint_attention_dim": keys["context_embedder.weight"]["shape"][1],
            "pooled_projection_dim": keys["y_embedder.mlp.0.weight"]["shape"][1],
            "qk_norm": "rms_norm" if any(".ln_q." in k for k in keys) else None,
            "dual_attention_layers": tuple(sorted({int(k.split(".")[1]) for k in keys
                                                   if ".attn2." in k})),
            "pos_embed_max_size": math.isqrt(pos)}


def _flux_state(state: dict) -> dict:
    """FLUX's original keys as diffusers' converter reads them. Its split of a single block's
    fused ``linear1`` assumes the 3072-wide FLUX.1; for another width (small distilled FLUX
    models, the tests' tiny one) the split is done here and the converter is handed stand-ins of
    the width it expects, whose pieces are then replaced."""
    import torch
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    state = _strip_prefix(state)
    width = state["img_in.weight"].shape[0]
    if width == _FLUX_WIDTH:
        return state  # from_single_file converts it with diffusers' own code, unchanged
    pieces = {}
    sizes = (width, width, width, 4 * width)
    real = (_FLUX_WIDTH, _FLUX_WIDTH, _FLUX_WIDTH, 4 * _FLUX_WIDTH)
    names = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
    for key in [k for k in state if k.startswith("single_blocks.") and ".linear1." in k]:
        i, kind = key.split(".")[1], key.rsplit(".", 1)[1]
        for name, piece in zip(names, state.pop(key).split(sizes, dim=0), strict=True):
            pieces[f"single_transformer_blocks.{i}.{name}.{kind}"] = piece
        state[key] = torch.zeros(1).expand(sum(real))  # never read: replaced below
    converted = convert_flux_transformer_checkpoint_to_diffusers(state)
    converted.update(pieces)
    return converted


def is_fp8(header: dict[str, Any]) -> bool:
    """Whether most of a file's bytes are fp8 (e4m3fn): such weights are kept in fp8 and each
    layer is upcast to the compute precision only while it runs (diffusers' layer-wise casting),
    so the file needs about its own size in memory, not twice or four times it."""
    fp8 = other = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        if info["dtype"] == "F8_E4M3":
            fp8 += end - start
        else:
            other += end - start
    return fp8 > other


def keep_fp8(module: Any, path: Path, dtype: torch.dtype) -> Any:
    """Layer-wise casting for a module read from an fp8 file (its weights round-trip exactly:
    every e4m3 value is a bf16/fp16/fp32 value)."""
    import torch
    from diffusers.hooks import apply_layerwise_casting

    if dtype is None or dtype == torch.float8_e4m3fn or not is_fp8(read_safetensors_header(path)):
        return module
    apply_layerwise_casting(module, storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype,
                            skip_modules_pattern=FP8_SKIP,
                            skip_modules_classes=(torch.nn.Embedding,))
    return module


def _load_transformer(entry: ModelEntry, config: Path, dtype: torch.dtype) -> Any:
    import diffusers
    from safetensors.torch import load_file

    family = entry.family
    cls = getattr(diffusers, {"flux": "FluxTransformer2DModel",
                              "sd3": "SD3Transformer2DModel"}[family])
    base = json.loads((config / "transformer" / "config.json").read_text(encoding="utf-8"))
    overrides = transformer_overrides(model_header(entry.path), family, base)
    gguf = entry.path.suffix.lower() == ".gguf"
    if gguf:  # quantized weights stay quantized; each layer is dequantized as it runs
        from diffusers import GGUFQuantizationConfig
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        state = load_gguf_checkpoint(str(entry.path))
        overrides["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype)
    else:
        state = load_file(str(entry.path))
    state = _flux_state(state) if family == "flux" else _strip_prefix(state)
    model = cls.from_single_file(state, config=str(config), subfolder="transformer",
                                 local_files_only=True, torch_dtype=dtype, **overrides)
    return model if gguf else keep_fp8(model, entry.path, dtype)


def _load_text_encoder(cls_name: str, folder: Path, path: Path, dtype: torch.dtype) -> Any:
    import transformers
    from safetensors.torch import load_file

    cls = getattr(transformers, cls_name)
    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    state = load_file(str(path))
    if cls_name == "T5EncoderModel":  # the embedding is saved under either of its tied names
        for a, b in (("shared.weight", "encoder.embed_tokens.weight"),
                     ("encoder.embed_tokens.weight", "shared.weight")):
            if a not in state and b in state:
                state[a] = state[b]
    model = cls.from_pretrained(None, config=config, state_dict=state, dtype=dtype)
    return keep_fp8(model.eval(), path, dtype)


def find_t5_tokenizer(config: Path, sub: str) -> Path:
    """The T5 tokenizer folder: beside the configs (tests, overrides), else in the HF cache."""
    if (config / sub / "tokenizer_config.json").is_file():
        return config / sub
    from studio.library.hf_cache import hf_cache_repos, hf_snapshots

    wanted = dict(T5_TOKENIZER_SOURCES)
    for repo in hf_cache_repos():
        if repo.repo_id not in wanted:
            continue
        for snap in hf_snapshots(repo):
            folder = snap / wanted[repo.repo_id] if wanted[repo.repo_id] else snap
            if any((folder / f).is_file() for f in ("spiece.model", "tokenizer.json")):
                return folder
    raise UserFacingError(f"The T5 text encoder needs its tokenizer, which is too large to ship "
                          f"with Studio and is not in your Hugging Face cache; get it with "
                          f"'{T5_DOWNLOAD}' (a few MB), then try again.")


def _load_tokenizer(role: str, config: Path, sub: str) -> Any:
    import transformers

    if role == "t5xxl":
        return transformers.AutoTokenizer.from_pretrained(str(find_t5_tokenizer(config, sub)),
                                                         local_files_only=True)
    return transformers.CLIPTokenizer.from_pretrained(str(config / sub), local_files_only=True)


def load_split_pipeline(entry: ModelEntry, dtype: torch.dtype, paths: Paths) -> Any:
    """The pipeline of a split-files entry; a sentence names a missing or mismatched part."""
    import diffusers

    from studio.library.single_file_configs import single_file_config_dir

    family = entry.family
    if entry.needs:
        root = comfy_models_root(entry.path)
        where = f" (ComfyUI's folders under {root})" if root else ""
        raise UserFacingError(f"{entry.name} is a {family_label(family)} diffusion model that "
                              f"{entry.needs}{where}: put the file there, or choose one.")
    for role, file in entry.parts.items():
        check_part(role, file, family, entry.path)
    if family not in FAMILY_PARTS:  # Qwen-Image, Z-Image, FLUX.2
        from studio.pipelines.diffusion.split_families import load_family_pipeline

        return load_family_pipeline(entry, dtype, paths)
    config = single_file_config_dir(family, paths)
    index = json.loads((config / "model_index.json").read_text(encoding="utf-8"))
    components: dict[str, Any] = {"transformer": _load_transformer(entry, config, dtype)}
    components["vae"] = diffusers.AutoencoderKL.from_single_file(
        str(entry.parts["vae"]), config=str(config), subfolder="vae", local_files_only=True,
        torch_dtype=dtype)
    for part in FAMILY_PARTS[family]:
        if part.role == "vae":
            continue
        encoder, tokenizer = COMPONENTS[family][part.role]
        path = entry.parts.get(part.role)
        if path is None:  # an optional part (SD 3.5's T5): the pipeline runs without it
            components[encoder] = components[tokenizer] = None
            continue
        components[encoder] = _load_text_encoder(index[encoder][1], config / encoder, path,
                                                 dtype)
        components[tokenizer] = _load_tokenizer(part.role, config, tokenizer)
    components["scheduler"] = flow_scheduler(config, family, components["transformer"])
    cls = getattr(diffusers, index["_class_name"])
    return cls(**components)


def flow_scheduler(config: Path, family: str, transformer: Any) -> Any:
    """The shipped flow-matching scheduler of ``config``; FLUX.1 schnell's (no guidance embedder)
    without the shift dev's config has."""
    import diffusers

    kwargs = {}
    if family == "flux" and not transformer.config.guidance_embeds:
        kwargs = {"shift": 1.0, "use_dynamic_shifting": False}  # schnell
    return diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(
        str(config), subfolder="scheduler", local_files_only=True, **kwargs)
