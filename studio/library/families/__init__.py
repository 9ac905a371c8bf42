"""The image-model families Studio knows, one small module each (issue 15).

A family module (``sd1.py``, ``sdxl.py`` …) defines ``FAMILY = Family(...)``: its names, the size a
fresh form starts at and the size presets, the latent→RGB preview factors and the tiny preview
decoder (TAESD) it uses, the cross-attention width its LoRAs have, and where the shipped configs
for its single-file checkpoints live. Everything that used to keep its own ``{"sd1": …, "sdxl":
…}`` table — the model picker, the LoRA list, size presets, previews, LoRA and single-file
detection — asks this registry, so adding a family is one file here plus its tests.

Detection from a file's header stays in :mod:`studio.library.detect` (it reads tensor names, which
differ per checkpoint layout rather than per family). No torch here.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

#: (width, height, label) of a size preset
Preset = tuple[int, int, str]


@dataclass(frozen=True)
class Family:
    """What Studio knows about one family of image models."""

    key: str  # the family's id in the library ("sd1"), written in model entries
    label: str  # what the window shows ("SD 1.x")
    lora_label: str  # how a LoRA message names it ("made for SD 1.5")
    order: int  # place in lists (oldest first)
    default_size: tuple[int, int]
    presets: tuple[Preset, ...]
    #: latent→RGB approximation: rows are latent channels, columns R, G, B; result in [-1, 1]
    latent_rgb_factors: tuple[tuple[float, float, float], ...]
    latent_rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: the tiny preview decoder's Hugging Face repository (used when it is in the HF cache, or
    #: in the models folder under the repository's name): a diffusers ``AutoencoderTiny`` folder
    #: (FLUX.2's madebyollin/taef2: a file, see studio.library.taef2_files)
    tae_repo: str = ""
    #: for a family without one: the sentence saying why its previews stay the latent→RGB
    #: approximation (its published tiny decoder is no architecture diffusers can build)
    tae_missing: str = ""
    #: the text-conditioning width a LoRA's cross-attention ``to_k`` takes (LoRA detection)
    lora_context_dim: int = 0
    #: the other families whose LoRAs fit it (FLUX.1 Kontext and Chroma take FLUX.1 LoRAs:
    #: the same blocks); its own always fit
    lora_also: tuple[str, ...] = ()
    #: the folder under assets/configs with this family's diffusers configs for single files
    single_file_assets: str = ""
    #: single-file loading: tokenizer sub-folder → its padding token
    tokenizers: dict[str, str] = field(default_factory=dict)
    #: the diffusers text-to-image pipeline class, and the model_index.json ``_class_name``s
    #: that mean this family (UNet families are told apart by their UNet in detect.py instead)
    pipeline_class: str = ""
    diffusers_classes: tuple[str, ...] = ()
    #: the denoiser's sub-folder in a diffusers folder ("unet", or "transformer")
    denoiser: str = "unet"
    #: components a download may leave out and the pipeline runs without (given as None), e.g.
    #: SD 3.5's T5 encoder: the pipeline puts zeros in its place
    optional_components: tuple[str, ...] = ()
    #: A1111 prompt syntax (emphasis, [from:to:when], BREAK, embeddings) is computed for it
    a1111_prompts: bool = True
    #: the sampler keys (studio.core.requests.SCHEDULERS) it can use; empty: all of them
    samplers: tuple[str, ...] = ()
    #: what the CFG number is: "cfg" (classifier-free guidance, with the negative prompt) or
    #: "distilled" (FLUX.1 dev's guidance embedding: one pass per step, no negative prompt)
    guidance: str = "cfg"
    #: the CFG (or distilled guidance) a fresh form starts at for it
    default_cfg: float = 7.0
    negative_prompt: bool = True
    #: the pipeline's latents come packed into a token sequence (FLUX): previews unpack them,
    #: and the hires fix cannot resize them as latents
    packed_latents: bool = False
    #: the pipeline argument the CFG number goes to: "guidance_scale", or Qwen-Image's
    #: "true_cfg_scale" (its guidance_scale is for guidance-distilled transformers only)
    cfg_argument: str = "guidance_scale"
    #: what the Guidance/CFG box's tooltip says for this family ("" : the generic sentence)
    guidance_hint: str = ""
    #: it has an image-to-image (denoising strength) pipeline: img2img and the hires fix
    img2img: bool = True
    #: an instruction-editing model (an image + "make it winter" → the edited image): it runs in
    #: Transform → Edit with instructions, not in Generate
    edit: bool = False


def _load() -> dict[str, Family]:
    found: list[Family] = []
    for module in pkgutil.iter_modules(__path__):
        family = getattr(importlib.import_module(f"{__name__}.{module.name}"), "FAMILY", None)
        if isinstance(family, Family):
            found.append(family)
    return {f.key: f for f in sorted(found, key=lambda f: f.order)}


#: every family, oldest first
FAMILIES: dict[str, Family] = _load()


def family(key: str) -> Family | None:
    """The family ``key`` ("sd1", "sdxl" …), or None for "unknown" and kinds that are not one."""
    return FAMILIES.get(key)


def label(key: str, default: str = "Unknown type") -> str:
    """The window's name for family ``key``."""
    found = FAMILIES.get(key)
    return found.label if found is not None else default


def lora_fits(lora_family: str, model_family: str) -> bool:
    """Whether a LoRA made for ``lora_family`` fits a model of ``model_family``; a family that is
    not known ("" / "unknown") is never refused here (diffusers' loader judges the layers)."""
    model = FAMILIES.get(model_family)
    if lora_family not in FAMILIES or model is None:
        return True
    return lora_family == model_family or lora_family in model.lora_also


def by_lora_context_dim(width: int) -> str:
    """The family whose LoRAs have cross-attention ``to_k`` input ``width`` ("" when none)."""
    return next((f.key for f in FAMILIES.values() if f.lora_context_dim == width), "")


def tae_families(name: str) -> list[Family]:
    """The families whose previews decode through the tiny decoder ``name``: a Hugging Face
    repository id ("madebyollin/taef1") or the models-folder name it downloads to ("taef1")."""
    return [f for f in FAMILIES.values()
            if f.tae_repo and name in (f.tae_repo, f.tae_repo.split("/")[1])]
