"""ComfyUI split files: a diffusion-model file plus text-encoder and VAE files, as one model.

ComfyUI keeps FLUX.1, SD 3.5 and Chroma (and Qwen-Image, Z-Image, FLUX.2: :mod:`split_families`)
as separate files: the transformer in ``models/diffusion_models``
(or ``models/unet``), the text encoders (``clip_l``, ``clip_g``, ``t5xxl``) in
``models/text_encoders`` (or ``models/clip``) and the VAE (FLUX's ``ae``) in ``models/vae``. This
module tells from a file's safetensors header which part it is, finds the other parts a
diffusion-model file needs in its sibling folders, and says in a sentence which are missing
("needs t5xxl in models/text_encoders"). The user's own choice of a part (the Models workspace or
``studio models parts``) is kept in settings (``split_parts``) and wins over the guess. A part an
all-in-one file carries itself (:mod:`studio.library.all_in_one`) is found in that file.

Reading headers only: no weights are loaded, no torch here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.jobs import UserFacingError
from studio.library import split_families
from studio.library.detect import header_fact, read_safetensors_header
from studio.library.families import label as family_label

log = logging.getLogger(__name__)

#: ComfyUI's folders, relative to its ``models`` folder
DIFFUSION_FOLDERS = ("diffusion_models", "unet")
TEXT_ENCODER_FOLDERS = ("text_encoders", "clip")
VAE_FOLDERS = ("vae",)
SPLIT_SUFFIXES = (".safetensors", ".gguf")

_PREFIX = "model.diffusion_model."


@dataclass(frozen=True)
class Part:
    """One file a split model needs besides its diffusion model."""

    role: str  # clip_l | clip_g | t5xxl | text_encoder | vae: the slot it fills
    folder: str  # where ComfyUI keeps it ("text_encoders")
    required: bool = True
    #: words a file name of this part usually holds, to prefer among several candidates
    hints: tuple[str, ...] = ()
    #: the kind of file the slot takes (part_role's answer), when not the role itself
    kind: str = ""
    #: the text encoder's hidden width the diffusion model needs (0: any)
    width: int = 0

    @property
    def need(self) -> str:
        return self.kind or self.role


_CLIP_L = Part("clip_l", "text_encoders", hints=("clip_l", "clip-l", "clipl"))
_CLIP_G = Part("clip_g", "text_encoders", hints=("clip_g", "clip-g", "clipg"))
_T5 = Part("t5xxl", "text_encoders", hints=("t5",))

#: how the library names each kind of part file
PART_TITLES = {"clip_l": "CLIP-L text encoder", "clip_g": "CLIP-G text encoder",
               "t5xxl": "T5-XXL text encoder", "vae": "16-channel VAE (FLUX.1 / SD 3.5)",
               **split_families.TITLES}

#: family → the parts its diffusion-model file needs, in the pipeline's order
FAMILY_PARTS: dict[str, tuple[Part, ...]] = {
    "flux": (_CLIP_L, _T5, Part("vae", "vae", hints=("ae", "flux"))),
    # SD 3.5 runs without T5 (the pipeline gives zeros in its place), as its downloads allow
    "sd3": (_CLIP_L, _CLIP_G, Part("t5xxl", "text_encoders", required=False, hints=("t5",)),
            Part("vae", "vae", hints=("sd3", "sd35", "sd3.5"))),
    # Chroma (chroma-unlocked-v*, Chroma1-HD): a T5 encoder alone, and FLUX.1's 16-channel ae
    "chroma": (_T5, Part("vae", "vae", hints=("ae", "flux", "chroma"))),
}


def parts_for(family: str, header: dict[str, Any] | None = None) -> tuple[Part, ...]:
    """The parts a ``family`` diffusion model needs; for Qwen-Image, Z-Image and FLUX.2 read
    from its ``header`` (which text encoder, how wide), else the family's usual ones."""
    if family in FAMILY_PARTS:
        return FAMILY_PARTS[family]
    width = split_families.text_width_needed(header or {}, family)
    if family == "qwen-image":
        return (Part("text_encoder", "text_encoders", kind="qwen25vl", width=width,
                     hints=("qwen_2.5_vl", "qwen2.5")),
                Part("vae", "vae", kind="qwen_vae", hints=("qwen",)))
    if family == "z-image":
        return (Part("text_encoder", "text_encoders", kind="qwen3", width=width,
                     hints=("qwen_3_4b", "qwen3")),
                Part("vae", "vae", hints=("ae", "flux")))
    if family == "flux2":
        kind = split_families.flux2_encoder_kind(header or {})
        hints = ("mistral",) if kind == "mistral3" else ("qwen_3", "qwen3")
        return (Part("text_encoder", "text_encoders", kind=kind, width=width, hints=hints),
                Part("vae", "vae", kind="flux2_vae", hints=("flux2", "flux.2")))
    raise KeyError(family)


def read_gguf_header(path: Path) -> dict[str, Any]:
    """A GGUF file's tensors as a safetensors-like header — name → {"shape" (torch order),
    "dtype" (the GGML type: "Q8_0", "F16" …)} — plus "__metadata__" with its architecture.
    Only the header is read (the ``gguf`` package maps the file); any file in a scanned folder
    may be hostile, so every failure is a :class:`UserFacingError`."""
    try:
        import gguf

        reader = gguf.GGUFReader(str(path))
        header: dict[str, Any] = {
            t.name: {"shape": [int(d) for d in reversed(list(t.shape))],
                     "dtype": t.tensor_type.name} for t in reader.tensors}
        field = reader.fields.get("general.architecture")
        arch = bytes(field.parts[field.data[0]]).decode("utf-8", "replace") if field else ""
    except Exception as exc:  # noqa: BLE001 - a crafted file may break the parser anywhere
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UserFacingError(f"{Path(path).name} is not a readable GGUF file ({why}).") from None
    header["__metadata__"] = {"architecture": arch[:100]}
    return header


def gguf_precision(header: dict[str, Any]) -> str:
    """"GGUF Q8_0": the GGML type of most of a GGUF file's weights (by element count)."""
    counts: dict[str, int] = {}
    for name, info in header.items():
        if name != "__metadata__":
            n = 1
            for d in info["shape"]:
                n *= d
            counts[info["dtype"]] = counts.get(info["dtype"], 0) + n
    return f"GGUF {max(counts, key=lambda k: counts[k])}" if counts else "GGUF"


def model_header(path: Path) -> dict[str, Any]:
    """The header of a diffusion-model file: safetensors, or GGUF."""
    if Path(path).suffix.lower() == ".gguf":
        return read_gguf_header(path)
    return read_safetensors_header(path)


def file_family(path: Path) -> str:
    """:func:`denoiser_family` of a diffusion-model file; for a safetensors file, worked out once
    while it is unchanged (a library scan asks it of every checkpoint it does not know, LoRAs
    included, and a rescan asks again)."""
    if Path(path).suffix.lower() == ".gguf":
        return denoiser_family(read_gguf_header(path))
    return header_fact(path, "denoiser_family", denoiser_family)


def _strip(keys) -> set[str]:
    return {k[len(_PREFIX):] if k.startswith(_PREFIX) else k for k in keys if k != "__metadata__"}


def denoiser_family(header: dict[str, Any]) -> str:
    """"flux", "sd3" or "chroma" when the header is a FLUX.1 / SD 3.x / Chroma transformer in its
    original (BFL / Stability / lodestones) or ComfyUI layout, alone or in an all-in-one file
    (Qwen-Image, Z-Image, FLUX.2: :mod:`split_families`); "" otherwise."""
    newer = split_families.denoiser_family(header)
    if newer:
        return newer
    keys = _strip(header)
    if "double_blocks.0.img_attn.norm.key_norm.scale" in keys:
        if any(k.startswith("distilled_guidance_layer.") for k in keys):
            return "chroma"  # FLUX's blocks without their modulation, and no guidance_in
        return "flux"
    if "joint_blocks.0.context_block.adaLN_modulation.1.bias" in keys:
        return "sd3"
    return ""


def _shape(header: dict[str, Any], key: str) -> list[int]:
    info = header.get(key)
    return list(info.get("shape", [])) if isinstance(info, dict) else []


def part_role(header: dict[str, Any], name: str = "") -> str:
    """Which part a text-encoder or VAE file is: clip_l, clip_g, t5xxl, vae (16 latent channels),
    vae4 (an SD 1.x/SDXL VAE) or "" when it is none of them. CLIP-L and CLIP-G are told apart by
    their width (768, 1280), and by the file's name for other widths. Qwen-Image's, Z-Image's
    and FLUX.2's parts are :func:`split_families.part_kind`'s kinds (qwen3, qwen_vae …)."""
    newer, _width = split_families.part_kind(header, name)
    if newer:
        return newer
    keys = _strip(header)
    for prefix in ("", "first_stage_model.", "vae."):
        conv = _shape(header, f"{prefix}decoder.conv_in.weight")
        if len(conv) == 4:
            return "vae" if conv[1] == 16 else "vae4"
    if "encoder.block.0.layer.0.SelfAttention.q.weight" in keys:
        return "t5xxl"
    norm = _shape(header, "text_model.final_layer_norm.weight")
    if norm:
        width = norm[0]
        if width == 768:
            return "clip_l"
        if width == 1280:
            return "clip_g"
        lowered = name.lower()
        for part in (_CLIP_G, _CLIP_L):
            if any(h in lowered for h in part.hints):
                return part.role
        return "clip_l"
    return ""


@dataclass
class SplitParts:
    """A diffusion-model file and the parts found (or not) for it."""

    family: str
    chosen: dict[str, Path] = field(default_factory=dict)  # role → the file used
    candidates: dict[str, list[Path]] = field(default_factory=dict)  # role → every file found
    missing: list[Part] = field(default_factory=list)  # required parts without a file
    parts: tuple[Part, ...] = ()  # every part the model takes, in the pipeline's order
    #: the roles read from the diffusion-model file itself (an all-in-one checkpoint)
    inside: set[str] = field(default_factory=set)

    def sentence(self, models_root: Path | None) -> str:
        """What is missing, with where to put it; "" when everything is there."""
        if not self.missing:
            return ""
        where = "models" if models_root is None else str(models_root)
        needs = ", ".join(f"{_needed(p)} in {where}/{p.folder}" for p in self.missing)
        return f"needs {needs}"

    def describe(self) -> str:
        found = ", ".join(f"{role}: {'inside the file' if role in self.inside else path.name}"
                          for role, path in self.chosen.items())
        return found or "no parts found"


def _needed(part: Part) -> str:
    """How a missing part is named: its role, and for these families' what it must be."""
    if not part.kind:
        return part.role
    size = split_families.SIZES.get((part.kind, part.width))
    title = f"{size} text encoder" if size else \
        split_families.TITLES.get(part.kind, part.kind).split(" (")[0]
    if part.kind == "vae":
        title = "FLUX.1 VAE (ae)"
    return f"{part.role} ({title})"


def comfy_models_root(path: Path) -> Path | None:
    """The ``models`` folder of a ComfyUI layout holding ``path`` (its diffusion-model file)."""
    parent = Path(path).parent
    return parent.parent if parent.name in DIFFUSION_FOLDERS else None


def _files_in(folders: list[Path]) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        try:
            found += sorted(p for p in folder.rglob("*")
                            if p.suffix.lower() == ".safetensors" and p.is_file())
        except OSError as exc:
            log.info("cannot list %s: %s", folder, exc)
    return found


def _roles_of(files: list[Path]) -> tuple[dict[str, list[Path]], dict[Path, int]]:
    """Kind → files of it, and each text encoder's width."""
    roles: dict[str, list[Path]] = {}
    widths: dict[Path, int] = {}
    for f in files:
        try:
            header = read_safetensors_header(f)
        except (OSError, UserFacingError) as exc:
            log.info("skipping part %s: %s", f, exc)
            continue
        role = part_role(header, f.name)
        if role:
            roles.setdefault(role, []).append(f)
            widths[f] = split_families.part_kind(header, f.name)[1]
    return roles, widths


def _prefer(part: Part, files: list[Path]) -> Path:
    """Among several files of one role, the first whose name has the part's hint, preferring
    16-bit over fp8 copies (the same weights, more exact)."""
    def rank(p: Path) -> tuple[int, int, str]:
        n = p.name.lower()
        return (0 if any(h in n for h in part.hints) else 1, 1 if "fp8" in n else 0, n)

    return sorted(files, key=rank)[0]


def find_parts(path: Path, family: str, chosen: dict[str, str] | None = None) -> SplitParts:
    """The parts the ``family`` diffusion-model file at ``path`` needs, found beside it in a
    ComfyUI layout (or named in ``chosen``: role → file, the user's choice)."""
    path = Path(path)
    root = comfy_models_root(path)
    wanted = parts_for(family, None if family in FAMILY_PARTS else model_header(path))
    result = SplitParts(family, parts=wanted)
    folders = {"text_encoders": [], "vae": []}  # type: dict[str, list[Path]]
    if root is not None:
        folders["text_encoders"] = [root / f for f in TEXT_ENCODER_FOLDERS if (root / f).is_dir()]
        folders["vae"] = [root / f for f in VAE_FOLDERS if (root / f).is_dir()]
    roles, widths = _roles_of(_files_in(folders["text_encoders"]) + _files_in(folders["vae"]))
    for part in wanted:  # by slot: the files of the kind (and width) it takes
        result.candidates[part.role] = [f for f in roles.get(part.need, [])
                                        if not part.width or widths.get(f) == part.width]
    inside = embedded_roles(path)
    for part in wanted:
        picked = (chosen or {}).get(part.role)
        if picked and Path(picked).is_file():
            result.chosen[part.role] = Path(picked)
        elif part.role in inside:  # an all-in-one file carries it
            result.chosen[part.role] = path
            result.inside.add(part.role)
        elif result.candidates.get(part.role):
            result.chosen[part.role] = _prefer(part, result.candidates[part.role])
        elif part.required:
            result.missing.append(part)
    return result


def embedded_roles(path: Path) -> set[str]:
    """The parts (clip_l, t5xxl, vae …) a diffusion-model file carries itself (all-in-one)."""
    if Path(path).suffix.lower() != ".safetensors":
        return set()
    from studio.library.all_in_one import embedded_parts

    return set(embedded_parts(read_safetensors_header(path)))


def check_part(role: str, path: Path, family: str, model: Path | None = None) -> None:
    """Refuse a chosen file that is not the part it stands for (an SDXL VAE for FLUX's, a
    FLUX.1 ae for Qwen-Image's VAE, a Qwen3 8B where the model needs the 4B). ``model``: the
    diffusion-model file, which says what Qwen-Image, Z-Image and FLUX.2 need."""
    header = read_safetensors_header(path)
    found = part_role(header, path.name)
    if family not in FAMILY_PARTS:
        part = next(p for p in parts_for(family, model_header(model) if model else None)
                    if p.role == role)
        width = split_families.part_kind(header, path.name)[1]
        if found == part.need and (not part.width or width == part.width):
            return
        what = _what(found)
        if found == part.need:
            what += f" {width} wide, where this model's is {part.width} wide"
        need = (split_families.WHAT.get(part.need, "")
                or "the FLUX.1 VAE (ae.safetensors, 16 channels)")
        raise UserFacingError(f"{path.name} is {what}, which does not belong with a "
                              f"{family_label(family)} model: it needs {need} as its {role}.")
    if found == role or (role in ("clip_l", "clip_g") and found in ("clip_l", "clip_g")):
        return
    need = {"vae": "its 16-channel VAE", "t5xxl": "a T5-XXL text encoder",
            "clip_l": "a CLIP-L text encoder", "clip_g": "a CLIP-G text encoder"}[role]
    raise UserFacingError(f"{path.name} is {_what(found)}, which does not belong with a "
                          f"{family_label(family)} model: it needs {need} as its {role}.")


def _what(found: str) -> str:
    """A file's kind as a sentence names it ("a T5 text encoder")."""
    return {"vae4": "a 4-channel VAE (SD 1.x/SDXL)", "vae": "a 16-channel VAE",
            "t5xxl": "a T5 text encoder", "clip_l": "a CLIP-L text encoder",
            "clip_g": "a CLIP-G text encoder", **split_families.WHAT}.get(
                found, "not a text encoder or VAE")
