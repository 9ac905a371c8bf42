"""What a weight file or model folder is, from its header or config alone (no weights loaded).

The model library lists *every* file it finds, so besides the checkpoints :mod:`detect` knows it
recognises LoRAs (kohya ``lora_unet_``/``lora_te_`` keys, diffusers/PEFT ``.lora_A``/``lora.down``
keys, LyCORIS) and for which base they were made (the width of a cross-attention ``to_k``
projection: 768 → SD 1.x, 1024 → SD 2.x, 2048 → SDXL; SDXL's second text encoder ``te2``; the
transformer families — FLUX.1, FLUX.2, Chroma, SD 3.5, Qwen-Image, Z-Image — by their blocks'
names and widths in :mod:`.lora_families`), TAESD and TAEF2 (and TAEHV, named as not usable)
preview decoders, and the precision of safetensors files from their dtypes. Whatever is none of
these gets a reason, so the library can show it as unknown instead of hiding it. No torch here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.files import read_json_dict
from studio.core.jobs import UserFacingError
from studio.library.detect import detect_from_header, header_fact
from studio.library.families import by_lora_context_dim, tae_families
from studio.library.families import family as family_of
from studio.library.lora_families import is_xlabs, original_layout, transformer_lora_base
from studio.library.taef2_files import is_taef2_name

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pth", ".pt", ".bin")
_DTYPES = {"F16": "fp16", "BF16": "bf16", "F32": "fp32", "F64": "fp64", "F8_E4M3": "fp8",
           "F8_E5M2": "fp8", "I8": "int8", "U8": "uint8"}
_LORA_MARKERS = (".lora_down.", ".lora_up.", ".lora_A.", ".lora_B.", ".lora.down.", ".lora.up.",
                 "lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
#: LyCORIS networks by the key that marks them; Studio applies them itself (diffusion/lycoris.py)
_LYCORIS_KINDS = (("LoHa", (".hada_w1_a", ".hada_w2_a")), ("LoKr", (".lokr_w1", ".lokr_w2")))
#: the ``format`` of a LyCORIS file: LoHa, LoKr, "LyCORIS" (both mixed, or a LoCon with Tucker
#: cores), or "LyCORIS full" (full/diff: ΔW itself)
LYCORIS_FORMATS = ("LoHa", "LoKr", "LyCORIS", "LyCORIS full")
_TO_K = re.compile(r"attn2[._](processor[._])?to_k.*(lora_down|lora_A|lora\.down|hada_w1_b)")
#: the attention-processor layout diffusers' training scripts wrote until 2024
#: (``….attn2.processor.to_k_lora.down.weight``, ``….q_proj.lora_linear_layer.down.weight``)
OLD_DIFFUSERS = "diffusers (2023)"
_OLD_DIFFUSERS_KEY = re.compile(r"\.processor\.to_(q|k|v|out)_lora\.(down|up)\.weight$"
                                r"|_proj\.lora_linear_layer\.(down|up)\.weight$")


@dataclass(frozen=True)
class FileKind:
    """What one weight file is: ``kind`` image | lora | embedding | preview | unknown, with its base
    family."""

    kind: str
    family: str = ""  # a family key (sd1, sdxl, flux, qwen-image …); "" when not known
    precision: str = ""  # fp16 | bf16 | fp32 | "fp16 + fp32" ...; "" for pickles (not read)
    reason: str = ""  # why we think so, or why the file is unknown
    format: str = ""  # kohya | diffusers | LoHa | LoKr | … (is_lora_header) for LoRAs; "" else


def _dtype_bytes(header: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """The bytes of each dtype in a safetensors header, in the order the dtypes first appear."""
    share: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        dtype = _DTYPES.get(str(info.get("dtype", "")), str(info.get("dtype", "")).lower())
        try:
            start, end = (int(x) for x in info.get("data_offsets", (0, 0)))
        except (TypeError, ValueError):
            start, end = 0, 0
        share[dtype] = share.get(dtype, 0) + max(end - start, 0)
    return tuple(share.items())


def _major_dtypes(share: dict[str, int]) -> str:
    total = sum(share.values()) or 1
    # Norms kept in fp32 inside an fp16 file are noise; name only dtypes holding ≥5% of the bytes.
    major = [d for d, n in sorted(share.items(), key=lambda kv: -kv[1]) if n / total >= 0.05]
    return " + ".join(major)


def header_precision(header: dict[str, Any]) -> str:
    """The precision of a safetensors file: its dtypes, the largest share of bytes first."""
    return _major_dtypes(dict(_dtype_bytes(header)))


def files_precision(files: list[Path]) -> str:
    """The combined precision of several safetensors files (headers only); '' when unreadable.
    Each file's bytes per dtype are worked out once while it is unchanged (``header_fact``)."""
    share: dict[str, int] = {}
    for path in files:
        try:
            counted = header_fact(path, "dtype_bytes", _dtype_bytes)
        except (OSError, UserFacingError):
            continue
        for dtype, n in counted:
            share[dtype] = share.get(dtype, 0) + n
    return _major_dtypes(share)


def lora_base(header: dict[str, Any]) -> tuple[str, str]:
    """(family, reason) of the base model a LoRA was made for, from its key names and shapes:
    the transformer families by their blocks (:mod:`.lora_families`), SD 1.x/2.x/SDXL by the
    cross-attention width."""
    transformer = transformer_lora_base(header)
    if transformer is not None:
        return transformer
    keys = [k for k in header if k != "__metadata__"]
    for key in keys:
        if _TO_K.search(key):
            shape = list(header[key].get("shape", []))
            if len(shape) == 2 and by_lora_context_dim(shape[1]):
                return by_lora_context_dim(shape[1]), f"cross-attention width {shape[1]}"
    if any(k.startswith(("lora_te2_", "text_encoder_2.", "lora_te2.")) for k in keys):
        return "sdxl", "has a second text encoder (SDXL)"
    meta = header.get("__metadata__") or {}
    base = str(meta.get("ss_base_model_version", "") or meta.get("modelspec.architecture", ""))
    if "xl" in base.lower():
        return "sdxl", f"metadata says {base}"
    if base.startswith(("sd_v1", "stable-diffusion-v1")):
        return "sd1", f"metadata says {base}"
    return "", "base model not recognisable from its keys"


def is_lora_header(header: dict[str, Any]) -> str:
    """'kohya', 'diffusers' (ai-toolkit's and SimpleTuner's too), 'diffusers (2023)', 'BFL' /
    'ComfyUI' (the original model's names under ``diffusion_model.``), 'XLabs', or a LyCORIS
    kind ('LoHa', 'LoKr', 'LyCORIS' for both, 'LyCORIS full') when the header is a LoRA's,
    else ''."""
    keys = [k for k in header if k != "__metadata__"]
    lycoris = [kind for kind, marks in _LYCORIS_KINDS
               if any(m in k for k in keys for m in marks)]
    if lycoris:
        return lycoris[0] if len(lycoris) == 1 else "LyCORIS"
    if any(k.startswith(("lora_unet_", "lora_te")) and k.endswith(".diff") for k in keys):
        return "LyCORIS full"
    if any(k.endswith(".lora_mid.weight") for k in keys):
        return "LyCORIS"  # LoCon with Tucker cores: diffusers does not read lora_mid
    if any(_OLD_DIFFUSERS_KEY.search(k) for k in keys):
        return OLD_DIFFUSERS
    if is_xlabs(keys):
        return "XLabs"
    if any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        return "kohya"
    if any(m in k for k in keys for m in _LORA_MARKERS):
        return original_layout(keys) or "diffusers"
    return ""


def _taesd_file(path: Path, header: dict[str, Any]) -> FileKind | None:
    keys = [k for k in header if k != "__metadata__"]
    if not keys:
        return None
    name = path.name.lower()
    precision = header_precision(header)
    if "decoder.22.weight" in header and all(_TAEHV_KEY.match(k) for k in keys):
        return _taehv_file(name, header, precision)
    diffusers_layout = all(k.startswith(("decoder.layers.", "encoder.layers.")) for k in keys)
    comfy_layout = name.startswith(("taesd", "taef")) and all(
        k.split(".", 1)[0].isdigit() for k in keys)
    if not (diffusers_layout or comfy_layout):
        return None
    if any(".pool." in k for k in keys):  # TAEF2's blocks: AutoencoderTiny plus a pool branch
        return FileKind("preview", "flux2", precision, TAEF2_REASON)
    fam = "sdxl" if name.startswith("taesdxl") else "sd1" if name.startswith("taesd_") else ""
    return FileKind("preview", fam, precision,
                    "a TAESD decoder file (Studio's previews use the diffusers TAESD folder)")


#: what the library says of a TAEF2 file
TAEF2_REASON = "TAEF2, FLUX.2's tiny preview decoder (madebyollin)"

#: madebyollin/taehv's tiny video decoders (TAEHV, TAEW2.1 …): ``encoder.N.…`` / ``decoder.N.…``
_TAEHV_KEY = re.compile(r"(encoder|decoder)\.\d+\.")


def _taehv_file(name: str, header: dict[str, Any], precision: str) -> FileKind:
    """A TAEHV-layout tiny video decoder: TAEW2.1 (``taew2_1``, ``lighttaew2_1``) decodes Wan 2.1's
    latents, which Qwen-Image shares; none of them is a class diffusers builds yet."""
    if "taew2_1" in name:
        qwen = family_of("qwen-image")
        return FileKind("preview", "qwen-image", precision,
                        qwen.tae_missing if qwen is not None else "TAEW2.1 (Qwen-Image)")
    shape = (header.get("decoder.1.weight") or {}).get("shape") or [0, 0]
    channels = shape[1] if len(shape) > 1 else 0
    return FileKind("preview", "", precision,
                    f"a TAEHV tiny video decoder ({channels}-channel latents, madebyollin/taehv): "
                    "an architecture diffusers cannot build yet, so Studio's previews do not use it")


#: Text-encoder widths of the model families an embedding can be for.
_EMBEDDING_WIDTHS = {768: "sd1", 1024: "sd2"}


def embedding_header(header: dict[str, Any]) -> tuple[str, str] | None:
    """``(family, why)`` when a safetensors header is a textual-inversion embedding: A1111's
    ``emb_params``, SDXL's ``clip_l`` + ``clip_g``, or diffusers' ``learned_embeds`` (one
    tensor named by its token); None otherwise."""
    tensors = {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    if not tensors or len(tensors) > 2:
        return None
    shapes = {k: list(v.get("shape") or []) for k, v in tensors.items()}
    if not all(1 <= len(s) <= 2 for s in shapes.values()):
        return None
    if set(tensors) == {"clip_l", "clip_g"}:
        return "sdxl", "a textual-inversion embedding for SDXL (clip_l + clip_g)"
    if len(tensors) != 1:
        return None
    (key, shape), = shapes.items()
    if "." in key or len(shape) == 1 and shape[0] > 4096:
        return None  # a weight of a network, not a token's vectors
    family = _EMBEDDING_WIDTHS.get(shape[-1], "")
    layout = "A1111" if key == "emb_params" else "diffusers"
    return family, f"a textual-inversion embedding ({layout} layout, {shape[0] if len(shape) > 1 else 1} vector(s))"


def classify_file(path: Path) -> FileKind:
    """Classify one weight file. Raises :class:`UserFacingError` for a corrupt safetensors."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != ".safetensors":
        if suffix == ".ckpt":
            return FileKind("image", "", "", "a pickled checkpoint; identified when it is loaded")
        if suffix in (".pt", ".bin") and path.parent.name.lower() == "embeddings":
            return FileKind("embedding", "", "", "a textual-inversion embedding (a pickle in an "
                            "embeddings folder; read with weights_only when used)")
        if is_taef2_name(path):  # ComfyUI's vae_approx/taef2_decoder.pth
            return FileKind("preview", "flux2", "", TAEF2_REASON + " (a pickle, read with "
                            "weights_only when used)")
        if suffix in WEIGHT_SUFFIXES:
            return FileKind("unknown", "", "", f"a pickle ({suffix}) that is not a CycleGAN "
                            "generator; its contents are not known without loading it")
        return FileKind("unknown", reason=f"not a weight file ({suffix or 'no suffix'})")
    return header_fact(path, "file_kind", lambda header: _header_kind(path, header))


def _header_kind(path: Path, header: dict[str, Any]) -> FileKind:
    """What a safetensors file is, from its header (and, for TAESD files, its name)."""
    precision = header_precision(header)
    lora = is_lora_header(header)
    if lora:
        family, why = lora_base(header)
        return FileKind("lora", family, precision, why, lora)
    embedding = embedding_header(header)
    if embedding is not None:
        return FileKind("embedding", embedding[0], precision, embedding[1])
    taesd = _taesd_file(path, header)
    if taesd is not None:
        return taesd
    det = detect_from_header(header)
    if det.family != "unknown":
        return FileKind("image", det.family, precision, det.reason)
    return FileKind("unknown", "", precision, det.reason)


def folder_config(folder: Path, name: str) -> dict:
    """A JSON file of a model folder as a dict ({} when absent or unreadable)."""
    return read_json_dict(Path(folder) / name)


def folder_size(folder: Path) -> int:
    """The bytes of every file under ``folder`` (one that cannot be read counts nothing)."""
    total = 0
    for p in folder.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            continue
    return total


def is_taesd_folder(folder: Path) -> bool:
    """A diffusers ``AutoencoderTiny`` folder (madebyollin/taesd, taesdxl, taesd3, taef1) with
    safetensors."""
    return folder_config(folder, "config.json").get("_class_name") == "AutoencoderTiny" and any(
        Path(folder).glob("*.safetensors"))


def taesd_family(name: str) -> tuple[str, bool]:
    """(family, whether previews use it) of a TAESD folder by its repository id or folder name:
    the first family whose tiny decoder it is (taef1 → FLUX.1, taesd3 → SD 3), else SDXL's or
    SD 1.x's by the name, which no preview looks for."""
    used = tae_families(name)
    if used:
        return used[0].key, True
    return ("sdxl" if name.lower().endswith("xl") else "sd1"), False


def unknown_folder_reason(folder: Path) -> str:
    """Why a folder with a config is not a model the library knows."""
    index = folder_config(folder, "model_index.json")
    if index:
        return f"{index.get('_class_name') or 'a diffusers pipeline'} is not a text-to-image " \
               "Stable Diffusion pipeline"
    config = folder_config(folder, "config.json")
    if config:
        archs = ", ".join(a for a in config.get("architectures") or [] if isinstance(a, str))
        what = archs or config.get("_class_name") or config.get("model_type") or "unnamed"
        return f"{what} is not a chat (…ForCausalLM) model, a pipeline or a TAESD decoder"
    return "no model_index.json or config.json"


def diffusers_weight_files(folder: Path) -> list[Path]:
    """The denoiser's (UNet's or transformer's) safetensors of a pipeline folder (full precision
    first), for its precision."""
    unet = Path(folder) / "unet"
    if not unet.is_dir():
        unet = Path(folder) / "transformer"
    files = sorted(unet.glob("*.safetensors"))
    plain = [f for f in files if ".fp16" not in f.name]
    return plain or files
