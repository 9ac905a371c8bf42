"""Text-to-image models (SD 1.x/2.x/SDXL, SD 3.5, FLUX, Chroma …), and the GAN and DDPM models
Train exports: one scanner (:func:`studio.library.models.find_txt2img_models`) finds all three,
as Generate's model picker lists them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError
from studio.core.wording import count_of
from studio.library.bnb_folders import precision_label, saved_quantization
from studio.library.classify import diffusers_weight_files, files_precision
from studio.library.entry import LibraryEntry
from studio.library.families import label as family_label
from studio.library.kinds import ModelKind
from studio.library.models import ddpm_class_names, ddpm_shape, entry_for_path, find_txt2img_models
from studio.library.shrunk import PRECISION_LABELS, shrink_info


def _ddpm_detail(folder: Path) -> str:
    """"16×16 grey, 10 classes" for a model the ddpm lesson saved."""
    size, channels = ddpm_shape(folder)
    colour = {1: " grey", 3: " colour"}.get(channels, "")
    try:
        classes = ddpm_class_names(folder)
    except UserFacingError:
        classes = []
    what = count_of(len(classes), "class", "classes") if classes else "unconditional"
    return f"Pixel diffusion trained in Train: {size}×{size}{colour}, {what}"


def _gan_entry(m) -> LibraryEntry:
    from studio.library.gan_models import WEIGHTS_FILE, describe, read_gan_info

    weights = m.path / WEIGHTS_FILE
    return LibraryEntry(m.name, "gan", m.path, m.source, "safetensors", m.size_bytes,
                        files_precision([weights]), "", "", describe(read_gan_info(m.path)),
                        ("Generate",), files=[weights, m.path / "gan.json"])


def entries_for(models: list) -> Iterator[LibraryEntry]:
    """Library entries for the picker's models (``ModelEntry``)."""
    for m in models:
        if m.format == "gan":
            yield _gan_entry(m)
            continue
        if m.family == "ddpm":
            yield LibraryEntry(m.name, "ddpm", m.path, m.source, m.format, m.size_bytes,
                               files_precision(diffusers_weight_files(m.path)), m.family,
                               m.repo_id, _ddpm_detail(m.path), ("Generate",))
            continue
        shrunk = shrink_info(m.path) if m.format == "diffusers" else None
        if m.format == "diffusers":
            precision = files_precision(diffusers_weight_files(m.path))
            if any((m.path / "unet").glob("*.fp16.safetensors")) and "fp16" not in precision:
                precision = f"{precision}, fp16 variant" if precision else "fp16 variant"
            if shrunk is not None:  # made smaller in Studio: say how, not the dtypes
                precision = PRECISION_LABELS[shrunk["method"]]
            saved = precision_label(saved_quantization(m.path))
            if saved:  # saved quantized by bitsandbytes: NF4 / int8 components
                precision = saved
        elif m.path.suffix.lower() == ".gguf":
            from studio.library.split_files import gguf_precision, read_gguf_header

            precision = gguf_precision(read_gguf_header(m.path))
        elif m.format == "split" and m.path.suffix == ".safetensors":
            from studio.library.all_in_one import denoiser_precision

            precision = denoiser_precision(m.path)  # an all-in-one's transformer, not its VAE
        else:
            precision = files_precision([m.path]) if m.path.suffix == ".safetensors" else ""
        detail = {"sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x",
                  "sdxl": "Stable Diffusion XL"}.get(m.family) or family_label(
                      m.family, "a pickled checkpoint")
        if m.format == "split":
            detail = split_detail(m, precision)
        if shrunk is not None:
            detail = f"{detail}, made smaller from {shrunk.get('source', 'another model')}"
        yield LibraryEntry(m.name, "image", m.path, m.source, m.format, m.size_bytes,
                           precision, m.family, m.repo_id, detail, ("Generate", "Transform"))


def split_detail(m, precision: str = "") -> str:
    """'FLUX.1 diffusion model (split files) with clip_l: clip_l.safetensors, …; needs t5xxl in
    …/text_encoders', or 'FLUX.1 all-in-one checkpoint (…) with clip_l: inside the file, …'."""
    from studio.library.all_in_one import is_all_in_one
    from studio.library.families import label

    found = ", ".join(f"{role}: {'inside the file' if path == m.path else path.name}"
                      for role, path in m.parts.items())
    text = f"{label(m.family)} diffusion model (split files)"
    if is_all_in_one(m):
        text = f"{label(m.family)} all-in-one checkpoint (text encoders and VAE in the one file)"
    if precision.startswith("fp8"):
        text += ", fp8 e4m3fn weights kept in fp8 (upcast a layer at a time)"
    elif precision.startswith("GGUF"):
        text += f", {precision} quantized"
    text += f" with {found}" if found else ""
    return f"{text}; {m.needs}" if m.needs else text


def scan(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    return list(entries_for(find_txt2img_models(settings, paths)))


def describe(path: Path, source: str) -> LibraryEntry | None:
    """A text-to-image model (or a Train GAN/DDPM) at ``path``; a UserFacingError when it looks
    like one and cannot be used."""
    found = entry_for_path(path, source)
    return next(entries_for([found])) if found is not None else None


KINDS = (
    ModelKind("image", "Image generation", 0,
              wanted="Generate needs a Stable Diffusion model (a diffusers folder or a "
                     ".safetensors checkpoint)",
              cli_wanted="Stable Diffusion models (a diffusers folder, a .safetensors "
                         "checkpoint or a repo id in the Hugging Face cache)",
              cli_use="Diffusion image-to-image is 'studio img2img --model {spec}'; text to "
                      "image is 'studio generate --model {spec}'.",
              scan=scan, describe=describe, probe=0),
    ModelKind("gan", "GAN (trained in Studio)", 1,
              cli_use="Draw with it from a seed: 'studio generate --model {spec} --seed 1'."),
    # found by the folder walk (kinds/files.walk_entry): what split diffusion models use
    ModelKind("part", "Text encoder / VAE (split files)", 11,
              cli_use="A part of ComfyUI split diffusion models: see or choose it with "
                      "'studio models parts MODEL'."),
    ModelKind("ddpm", "Trained diffusion (DDPM)", 2,
              cli_use="Draw with it: 'studio generate --model {spec} [--prompt CLASS]'."),
)
