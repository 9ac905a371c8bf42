"""One pipeline from an all-in-one FLUX.1 / SD 3.5 file, or from Chroma's split files, offline.

An all-in-one file (:mod:`studio.library.all_in_one`) carries the transformer, the text encoders
and the VAE under their own key prefixes; Chroma comes as a transformer-only file used with a T5
and FLUX.1's ae, found beside it or chosen like FLUX's split parts. Each part is read from the
file that holds it (only its keys, through ``safe_open``) and built the way the split path builds
it (:mod:`studio.pipelines.diffusion.split_loading`): the transformer and the VAE through
diffusers' ``from_single_file`` with the shipped config folder (what the file says about layer
counts and widths overrides it), the text encoders through transformers' ``from_pretrained(
config=…, state_dict=…)``, the CLIP tokenizers from the shipped merges, the T5 tokenizer from the
Hugging Face cache. A part stored in fp8 (e4m3fn) stays fp8, each layer upcast while it runs.

Why not diffusers' pipeline-level ``FluxPipeline.from_single_file`` / ``StableDiffusion3Pipeline.
from_single_file``? diffusers 0.42 reads these prefixes, but (checked against it) it leaves the
T5 encoder's ``encoder.embed_tokens`` on the meta device when the file stores the embedding as
``shared.weight`` (as these files do), replaces SD 3.5's CLIP-L projection with the identity even
when the file carries one, assumes FLUX's 3072 width in its transformer converter and takes no
per-file config overrides at pipeline level. The model-level ``from_single_file`` it uses for the
transformer and the VAE is used here as well. torch and diffusers are imported inside the
functions (DESIGN rule 7).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studio.core.config import Paths
from studio.core.jobs import UserFacingError
from studio.library.all_in_one import (
    DENOISER_PREFIX,
    embedded_parts,
    is_all_in_one,
    sub_header,
)
from studio.library.families import label as family_label
from studio.library.models import ModelEntry
from studio.library.split_files import (
    FAMILY_PARTS,
    PART_TITLES,
    check_part,
    comfy_models_root,
    model_header,
)
from studio.pipelines.diffusion.split_loading import (
    _FLUX_WIDTH,
    COMPONENTS,
    FP8_SKIP,
    _flux_state,
    _load_tokenizer,
    flow_scheduler,
    is_fp8,
    transformer_overrides,
)

TRANSFORMER_CLASSES = {"flux": "FluxTransformer2DModel", "sd3": "SD3Transformer2DModel",
                       "chroma": "ChromaTransformer2DModel"}


def loads_entry(entry: ModelEntry) -> bool:
    """Whether this module loads ``entry``: an all-in-one file, or a Chroma split set."""
    return entry.format == "split" and (entry.family == "chroma" or is_all_in_one(entry))


def part_bytes(entry: ModelEntry, role: str, run_bytes: int) -> int:
    """The memory planner's bytes for one component of a split entry ("transformer", or a
    part's role): the file it has alone, or its share of an all-in-one file's header."""
    from studio.pipelines.diffusion.planner import header_bytes, tensor_bytes

    path = Path(entry.path if role == "transformer" else entry.parts[role])
    if path != Path(entry.path) or path.suffix.lower() != ".safetensors":
        return tensor_bytes([path], run_bytes)
    header = model_header(path)
    inside = embedded_parts(header)
    if not inside:  # a transformer-only file
        return header_bytes(header, run_bytes)
    prefix = DENOISER_PREFIX if role == "transformer" else inside[role]
    return header_bytes(sub_header(header, prefix), run_bytes)


def _read(path: Path, prefix: str) -> dict:
    """The tensors of a safetensors file under ``prefix``, the prefix taken off."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}


def _strip(state: dict) -> dict:
    return {k.removeprefix(DENOISER_PREFIX): v for k, v in state.items()}


def chroma_overrides(header: dict[str, Any]) -> dict[str, Any]:
    """What a Chroma file says about its transformer's shape, over the shipped config."""
    keys = {k.removeprefix(DENOISER_PREFIX): v for k, v in header.items() if k != "__metadata__"}

    def count(prefix: str, at: int = 1) -> int:
        return len({k.split(".")[at] for k in keys if k.startswith(prefix)})

    approximator = keys["distilled_guidance_layer.in_proj.weight"]["shape"]
    return {"num_layers": count("double_blocks."),
            "num_single_layers": count("single_blocks."),
            "in_channels": keys["img_in.weight"]["shape"][1],
            "joint_attention_dim": keys["txt_in.weight"]["shape"][1],
            "approximator_num_channels": approximator[1],
            "approximator_hidden_dim": approximator[0],
            "approximator_layers": count("distilled_guidance_layer.layers.", 2)}


def _chroma_state(state: dict) -> dict:
    """Chroma's original keys as diffusers' converter reads them; at another width than
    FLUX.1's 3072 (the tests' tiny model) the fused single-block ``linear1`` is split here, as
    :func:`split_loading._flux_state` does for FLUX."""
    import torch
    from diffusers.loaders.single_file_utils import (
        convert_chroma_transformer_checkpoint_to_diffusers,
    )

    state = _strip(state)
    width = state["img_in.weight"].shape[0]
    if width == _FLUX_WIDTH:
        return state
    pieces, names = {}, ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
    sizes = (width, width, width, 4 * width)
    for key in [k for k in state if k.startswith("single_blocks.") and ".linear1." in k]:
        i, kind = key.split(".")[1], key.rsplit(".", 1)[1]
        for name, piece in zip(names, state.pop(key).split(sizes, dim=0), strict=True):
            pieces[f"single_transformer_blocks.{i}.{name}.{kind}"] = piece
        state[key] = torch.zeros(1).expand(7 * _FLUX_WIDTH)  # never read: replaced below
    converted = convert_chroma_transformer_checkpoint_to_diffusers(state)
    converted.update(pieces)
    return converted


def _keep_fp8(module: Any, header: dict[str, Any], dtype: Any) -> Any:
    """Layer-wise casting for a part whose weights are stored in fp8 (see split_loading)."""
    import torch
    from diffusers.hooks import apply_layerwise_casting

    if dtype is None or dtype == torch.float8_e4m3fn or not header or not is_fp8(header):
        return module
    apply_layerwise_casting(module, storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype,
                            skip_modules_pattern=FP8_SKIP,
                            skip_modules_classes=(torch.nn.Embedding,))
    return module


def _transformer(entry: ModelEntry, config: Path, dtype: Any) -> Any:
    import diffusers

    family, path = entry.family, entry.path
    header = model_header(path)
    inside = bool(embedded_parts(header))
    own = sub_header(header, DENOISER_PREFIX) if inside else header
    base = json.loads((config / "transformer" / "config.json").read_text(encoding="utf-8"))
    overrides = (chroma_overrides(own) if family == "chroma"
                 else transformer_overrides(own, family, base))
    gguf = path.suffix.lower() == ".gguf"
    if gguf:  # a Chroma GGUF: quantized weights stay quantized, dequantized as each layer runs
        from diffusers import GGUFQuantizationConfig
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        state = load_gguf_checkpoint(str(path))
        overrides["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype)
    else:
        state = _read(path, DENOISER_PREFIX if inside else "")
    convert = {"flux": _flux_state, "chroma": _chroma_state}.get(family, _strip)
    cls = getattr(diffusers, TRANSFORMER_CLASSES[family])
    model = cls.from_single_file(convert(state), config=str(config), subfolder="transformer",
                                 local_files_only=True, torch_dtype=dtype, **overrides)
    return model if gguf else _keep_fp8(model, own, dtype)


def _part(entry: ModelEntry, role: str) -> tuple[Any, dict[str, Any]]:
    """(the part's weights — a state dict, or the path of its own file —, its header)."""
    path = entry.parts[role]
    if Path(path) == Path(entry.path):
        prefix = embedded_parts(model_header(path))[role]
        return _read(path, prefix), sub_header(model_header(path), prefix)
    from studio.library.detect import read_safetensors_header

    return path, read_safetensors_header(path)


def _text_encoder(cls_name: str, folder: Path, weights: Any, dtype: Any) -> Any:
    import torch
    import transformers
    from safetensors.torch import load_file

    state = weights if isinstance(weights, dict) else load_file(str(weights))
    cls = getattr(transformers, cls_name)
    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    if cls_name == "T5EncoderModel":  # the embedding is saved under either of its tied names
        for a, b in (("shared.weight", "encoder.embed_tokens.weight"),
                     ("encoder.embed_tokens.weight", "shared.weight")):
            if a not in state and b in state:
                state[a] = state[b]
    if cls_name == "CLIPTextModelWithProjection" and "text_projection.weight" not in state:
        # Stability's SD 3.5 files leave CLIP-L's projection out; ComfyUI and diffusers then
        # use the identity, and so does Studio (a file that carries one keeps its own)
        state["text_projection.weight"] = torch.eye(config.projection_dim, config.hidden_size)
    return cls.from_pretrained(None, config=config, state_dict=state, dtype=dtype).eval()


def _refuse_incomplete(entry: ModelEntry) -> None:
    family = family_label(entry.family)
    root = comfy_models_root(entry.path)
    where = f" (ComfyUI's folders under {root})" if root else ""
    inside = [PART_TITLES[r] for r, p in entry.parts.items() if Path(p) == Path(entry.path)]
    if inside:
        raise UserFacingError(
            f"{entry.name} is a {family} checkpoint that carries its {', '.join(inside)} but "
            f"not every part it needs: it {entry.needs}{where}. Put the file there, or choose "
            f"one (Models → the model's parts, or 'studio models parts').")
    raise UserFacingError(f"{entry.name} is a {family} diffusion model that {entry.needs}"
                          f"{where}: put the file there, or choose one.")


def load_all_in_one_pipeline(entry: ModelEntry, dtype: Any, paths: Paths) -> Any:
    """The pipeline of an all-in-one file or a Chroma split set; a sentence names a missing or
    mismatched part."""
    import diffusers

    from studio.library.single_file_configs import single_file_config_dir

    family = entry.family
    if entry.needs:
        _refuse_incomplete(entry)
    for role, file in entry.parts.items():
        if Path(file) != Path(entry.path):
            check_part(role, file, family)
    config = single_file_config_dir(family, paths)
    index = json.loads((config / "model_index.json").read_text(encoding="utf-8"))
    components: dict[str, Any] = {"transformer": _transformer(entry, config, dtype)}
    weights, header = _part(entry, "vae")
    vae = diffusers.AutoencoderKL.from_single_file(
        weights if isinstance(weights, dict) else str(weights), config=str(config),
        subfolder="vae", local_files_only=True, torch_dtype=dtype)
    components["vae"] = _keep_fp8(vae, header, dtype)
    for part in FAMILY_PARTS[family]:
        if part.role == "vae":
            continue
        encoder, tokenizer = COMPONENTS[family][part.role]
        if part.role not in entry.parts:  # an optional part (SD 3.5's T5): run without it
            components[encoder] = components[tokenizer] = None
            continue
        weights, header = _part(entry, part.role)
        model = _text_encoder(index[encoder][1], config / encoder, weights, dtype)
        components[encoder] = _keep_fp8(model, header, dtype)
        components[tokenizer] = _load_tokenizer(part.role, config, tokenizer)
    components["scheduler"] = flow_scheduler(config, family, components["transformer"])
    return getattr(diffusers, index["_class_name"])(**components)
