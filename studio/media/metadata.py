"""Generation metadata in image files: write Studio's, read Studio's and other apps'. No Qt, no torch.

Studio writes two PNG text chunks into every image (see :mod:`studio.media.outputs`):

- ``parameters``: AUTOMATIC1111-compatible text (:func:`build_parameters`), so other tools and
  sites show the prompt and settings;
- ``studio``: JSON ``{"request": Txt2ImgRequest.to_dict(), "seed": <this image's seed>,
  "version": ...}``, the exact request, so "reuse parameters" rebuilds it without loss.

:func:`read_image_metadata` reads those, AUTOMATIC1111's ``parameters`` (PNG text or JPEG/WebP EXIF
UserComment), ComfyUI's ``prompt`` / ``workflow`` graphs and InvokeAI's metadata into one
:class:`ImageMetadata`; :func:`to_request` turns any of them into a :class:`Txt2ImgRequest`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.requests import (
    HIRES_UPSCALERS,
    MAX_HIRES_SCALE,
    MAX_STEPS,
    SCHEDULERS,
    SEED_MAX,
    Img2ImgRequest,
    Txt2ImgRequest,
)
from studio.media import foreign_metadata
from studio.media.image_text import read_image_text
from studio.media.infotext import (
    format_infotext,
    format_number,
    infotext_params,
    parse_infotext,
)

#: The AUTOMATIC1111 ``(Sampler, Schedule type)`` names of each Studio scheduler key, for writers
#: that know no better name. "default" depends on the model, so it has none.
A1111_SAMPLERS: dict[str, tuple[str, str]] = {
    "euler": ("Euler", "Automatic"),
    "euler_a": ("Euler a", "Automatic"),
    "dpmpp_2m": ("DPM++ 2M", "Automatic"),
    "dpmpp_2m_karras": ("DPM++ 2M", "Karras"),
    "ddim": ("DDIM", "Automatic"),
    "unipc": ("UniPC", "Automatic"),
    "lcm": ("LCM", "Automatic"),
}

# Sampler names of A1111, ComfyUI and InvokeAI, squashed by _squash(), to Studio scheduler keys.
_SAMPLER_ALIASES: dict[str, str] = {
    "euler": "euler", "eulerk": "euler", "eulerkarras": "euler",
    "eulera": "euler_a", "eulerancestral": "euler_a", "eulerak": "euler_a",
    "dpmpp2m": "dpmpp_2m", "dpmsolvermultistep": "dpmpp_2m",
    "dpmpp2mkarras": "dpmpp_2m_karras", "dpmpp2mk": "dpmpp_2m_karras",
    "ddim": "ddim",
    "unipc": "unipc", "unipcbh2": "unipc",
    "lcm": "lcm",
}

#: Every ``ImageMetadata.source`` and how to name it to a user.
SOURCE_NAMES: dict[str, str] = {
    "studio": "Studio", "a1111": "AUTOMATIC1111 / Forge", "comfyui": "ComfyUI",
    "invokeai": "InvokeAI", "fooocus": "Fooocus", "swarmui": "SwarmUI", "novelai": "NovelAI",
    "drawthings": "Draw Things", "none": "Unknown (no parameters in the file)"}
SOURCES = tuple(SOURCE_NAMES)
_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([-\d.]+))?[^>]*>")


@dataclass
class ImageMetadata:
    """What an image file says about how it was made.

    ``params`` uses Studio's names: steps, cfg, seed, width, height, sampler, scheduler (the
    A1111 schedule type / ComfyUI scheduler), model, model_hash, version — each only when known.
    ``request`` is set only for Studio images: the exact request that produced the batch.
    """

    source: str = "none"  # one of SOURCES
    prompt: str = ""
    negative_prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    request: Txt2ImgRequest | None = None
    #: What a user should know before reusing these settings (a seed Studio cannot take...).
    notes: list[str] = field(default_factory=list)


def describe_value(value: Any) -> str:
    """A parameter as a person reads it: LoRAs as ``name (weight), …``, other lists and dicts as
    JSON, the rest as text (``studio params`` and the reuse dialog)."""
    if isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value):
        return ", ".join(f"{v['name']} ({v.get('weight', 1)})" for v in value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def build_parameters(request: Txt2ImgRequest | Img2ImgRequest, seed: int, *, sampler: str, schedule_type: str,
                     model_name: str, model_hash: str, version: str,
                     extra: dict | None = None, prompt: str | None = None) -> str:
    """The AUTOMATIC1111-style ``parameters`` text for one image of ``request`` (seed ``seed``).

    ``prompt`` replaces ``request.prompt`` in the text (the prompt with a ``<lora:…>`` tag for
    each LoRA picked outside it); ``extra`` keys (``Lora hashes``, ``Denoising strength``…) come
    before ``Version``, which A1111 writes last."""
    params: dict[str, Any] = {
        "Steps": request.steps,
        "Sampler": sampler,
        "Schedule type": schedule_type,
        "CFG scale": format_number(request.cfg),
        "Seed": seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": model_hash,
        "Model": model_name,
    }
    for key, value in (extra or {}).items():
        if key not in params and key != "Version":
            params[key] = format_number(value) if isinstance(value, float) else value
    params["Version"] = version
    text = request.prompt if prompt is None else prompt
    return format_infotext(text, request.negative_prompt, params)


def parse_parameters(text: str) -> dict[str, str]:
    """Parse a ``parameters`` text like A1111's ``parse_generation_parameters``.

    Keys: ``Prompt``, ``Negative prompt`` and each ``Key`` of the settings line (string values,
    JSON-quoted ones unquoted); ``Size: WxH`` gives ``Size-1`` (width) and ``Size-2`` (height).
    """
    return parse_infotext(text)


def _squash(name: Any) -> str:
    text = str(name or "").lower().replace("++", "pp")
    text = re.sub(r"[^a-z0-9]", "", text)
    text = text.removeprefix("sample")  # k-diffusion function names: sample_dpmpp_2m
    return text[1:] if text.startswith("k") and text[1:] in _SAMPLER_ALIASES else text


def scheduler_key(sampler: Any, schedule: Any = "") -> str:
    """The Studio scheduler key for another tool's sampler (+ schedule type); "default" if none.

    Understands A1111 ("DPM++ 2M" + "Karras", "Euler a"), ComfyUI ("dpmpp_2m" + "karras",
    "euler_ancestral", "uni_pc"), InvokeAI ("dpmpp_2m_k", legacy "k_euler_a") and Studio's own
    keys and display names.
    """
    labels = {label.lower(): k for k, label in SCHEDULERS.items()}
    if sampler in SCHEDULERS:
        key = str(sampler)
    elif str(sampler or "").strip().lower() in labels:
        key = labels[str(sampler).strip().lower()]
    else:
        key = _SAMPLER_ALIASES.get(_squash(sampler), "default")
    if key == "dpmpp_2m" and _squash(schedule) == "karras":
        return "dpmpp_2m_karras"
    return key


def _to_int(value: Any) -> int:
    """An int, exactly: Fooocus writes seeds such as ``"5862398752394781234"`` as strings, which a
    float would round."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value if isinstance(value, int) else int(float(value))


def _normalise(params: dict[str, Any]) -> dict[str, Any]:
    """Coerce numeric params to numbers; drop values that are not what they claim to be."""
    out = dict(params)
    for key, conv in (("steps", int), ("seed", int), ("width", int), ("height", int),
                      ("cfg", float), ("variation_seed", int), ("variation_strength", float),
                      ("hires_scale", float), ("hires_steps", int),
                      ("denoising_strength", float)):
        if key in out:
            try:
                out[key] = _to_int(out[key]) if conv is int else conv(out[key])
            except (TypeError, ValueError, OverflowError):
                del out[key]
    for key in ("sampler", "scheduler", "model", "model_hash", "version", "hires_upscaler"):
        if key in out and not isinstance(out[key], str):
            out[key] = str(out[key])
    return out


def _from_studio(raw: dict[str, str]) -> ImageMetadata | None:
    try:
        data = json.loads(raw["studio"])
        request = Txt2ImgRequest.from_dict(data["request"])
        seed = int(data.get("seed", request.seed))
    except (KeyError, ValueError, TypeError):
        return None
    params: dict[str, Any] = {}
    if "parameters" in raw:  # sampler names / model hash as written for other tools
        params.update(infotext_params(parse_infotext(raw["parameters"])))
    params.update(steps=request.steps, cfg=float(request.cfg), seed=seed, width=request.width,
                  height=request.height, model=request.model)
    if data.get("version") and "version" not in params:
        params["version"] = f"Studio {data['version']}"
    return ImageMetadata("studio", request.prompt, request.negative_prompt, params, raw, request)


#: Readers of other tools' chunks, tried in order after ``parameters`` (which is SwarmUI's or
#: Fooocus's JSON, else A1111 text: see :func:`_read`).
_FOREIGN = (
    ("novelai", foreign_metadata.read_novelai),
    ("comfyui", lambda raw: foreign_metadata.read_comfyui_prompt(raw.get("prompt"))),
    ("comfyui", lambda raw: foreign_metadata.read_comfyui_workflow(raw.get("workflow"))),
    ("invokeai", foreign_metadata.read_invokeai),
    ("drawthings", foreign_metadata.read_drawthings),
)


def _a1111(raw: dict[str, str]) -> ImageMetadata:
    parsed = parse_infotext(raw["parameters"])
    params = infotext_params(parsed)
    loras = [{"name": name, "weight": float(weight) if weight else 1.0}
             for name, weight in _LORA_TAG.findall(parsed["Prompt"])]
    if loras:
        params["loras"] = loras
    for key, value in parsed.items():  # everything else the line holds, under its own name
        if key not in _A1111_KNOWN:
            params.setdefault(key, value)
    return ImageMetadata("a1111", parsed["Prompt"], parsed["Negative prompt"],
                         _normalise(params), raw)


_A1111_KNOWN = {"Prompt", "Negative prompt", "Steps", "CFG scale", "Seed", "Size-1", "Size-2",
                "Sampler", "Schedule type", "Model", "Model hash", "Version",
                "Denoising strength", "Hires upscale", "Hires steps", "Hires upscaler",
                "Outpaint left", "Outpaint right", "Outpaint top", "Outpaint bottom",
                "Outpaint fill", "SD upscale", "SD upscale upscaler", "SD upscale tile",
                "SD upscale overlap"}


def _read(raw: dict[str, str]) -> ImageMetadata:
    if "studio" in raw:
        meta = _from_studio(raw)
        if meta:
            return meta
    parameters = raw.get("parameters")
    if parameters:
        json_found = foreign_metadata.read_json_parameters(parameters)
        if json_found is not None:  # JSON in "parameters" is not A1111 text
            source, (prompt, negative, params) = json_found
            return ImageMetadata(source, prompt, negative, _normalise(params), raw)
        return _a1111(raw)
    for source, reader in _FOREIGN:
        found = reader(raw)
        if found is not None:
            return ImageMetadata(source, found[0], found[1], _normalise(found[2]), raw)
    return ImageMetadata("none", raw=raw)


def _control_units(params: dict[str, Any]) -> dict[str, str]:
    """The params :func:`studio.core.control.from_infotext` reads, as text: its units are the
    ``ControlNet 0``, ``ControlNet 1`` … keys, so only those go to it (the other keys it never
    looks at), and a file without any does not call it."""
    return {k: str(v) for k, v in params.items() if k.startswith("ControlNet ")}


def _add_notes(meta: ImageMetadata) -> ImageMetadata:
    seed = meta.params.get("seed")
    if isinstance(seed, int) and not 0 <= seed <= SEED_MAX:
        meta.notes.append(
            f"Seed {seed} is outside Studio's seed range (0 to {SEED_MAX}); reusing these "
            f"settings uses seed {seed % (SEED_MAX + 1)} instead, so the picture will differ.")
    units = _control_units(meta.params) if meta.source == "a1111" else None
    if units:
        from studio.core.control import from_infotext

        guided = from_infotext(units)
        if guided:
            names = ", ".join(u["model"] for u in guided)
            meta.notes.append(
                f"ControlNet guided this image ({names}); its control image is not stored in "
                "the file, so reusing these settings leaves the ControlNet out — add it again "
                "with its image ('studio generate --controlnet MODEL:IMAGE').")
    upscaler = meta.params.get("hires_upscaler")
    if meta.source != "studio" and isinstance(upscaler, str) and "hires_scale" in meta.params \
            and upscaler not in HIRES_UPSCALERS:
        meta.notes.append(
            f"The hires fix used {upscaler!r}, which Studio does not have; reusing these "
            f"settings upscales with Latent instead, so the picture will differ."
            if upscaler.startswith("Latent") else
            f"The hires fix used the upscaler model {upscaler!r}: reusing these settings needs "
            f"a model file of that name in the models folder's 'upscalers' folder.")
    return meta


def metadata_from_text(raw: dict[str, str]) -> ImageMetadata:
    """:func:`read_image_metadata` for text chunks already read (never raises)."""
    try:
        return _add_notes(_read(dict(raw)))
    except Exception:  # noqa: BLE001 - odd metadata is no metadata, never a crash
        return ImageMetadata("none", raw=dict(raw))


def read_image_metadata(path: Path) -> ImageMetadata:
    """What the image at ``path`` says about how it was made; ``source="none"`` when nothing.

    Never raises: a missing, corrupt or foreign file gives ``ImageMetadata(source="none")``.
    """
    try:
        raw = read_image_text(Path(path))
    except Exception:  # noqa: BLE001 - see docstring
        return ImageMetadata("none")
    return metadata_from_text(raw)


def to_request(meta: ImageMetadata, model_fallback: str) -> Txt2ImgRequest | None:
    """A request that makes this image again ("reuse parameters"); None without metadata.

    The seed is this image's own seed and ``count`` is 1. For Studio images everything comes from
    the stored request. Other tools name models their own way, so their images use
    ``model_fallback`` (the model picked now), or the recorded model name when that is empty;
    their samplers map to Studio's scheduler keys where one matches, else "default".
    """
    if meta.source == "none":
        return None
    p = meta.params
    if meta.source == "studio" and meta.request is not None:
        # This image's own variation seed (image i of a batch used variation_seed + i).
        return dataclasses.replace(meta.request, seed=int(p.get("seed", meta.request.seed)),
                                   variation_seed=int(p.get("variation_seed",
                                                            meta.request.variation_seed)),
                                   count=1, model=meta.request.model or model_fallback)
    defaults = Txt2ImgRequest(model="")
    seed = int(p.get("seed", 0))
    if not 0 <= seed <= SEED_MAX:
        # ComfyUI seeds go up to 2**64, Fooocus's to 2**63: meta.notes says so (_add_notes).
        seed %= SEED_MAX + 1
    return Txt2ImgRequest(
        model=model_fallback or str(p.get("model", "")),
        prompt=meta.prompt,
        negative_prompt=meta.negative_prompt,
        steps=int(p.get("steps", defaults.steps)),
        cfg=float(p.get("cfg", defaults.cfg)),
        width=int(p.get("width", defaults.width)),
        height=int(p.get("height", defaults.height)),
        seed=seed,
        count=1,
        scheduler=scheduler_key(p.get("sampler", ""), p.get("scheduler", "")),
        **_variation(p),
        **_hires(p),
    )


def _variation(params: dict[str, Any]) -> dict[str, Any]:
    """The request's variation fields from another tool's infotext (absent or odd: off)."""
    strength = params.get("variation_strength")
    seed = params.get("variation_seed")
    if not isinstance(strength, float) or not 0.0 < strength <= 1.0 or not isinstance(seed, int):
        return {}
    return {"variation_seed": seed % (SEED_MAX + 1), "variation_strength": strength}


def _hires(params: dict[str, Any]) -> dict[str, Any]:
    """The request's hires-fix fields from another tool's infotext: on when it names a
    ``Hires upscale`` above 1; an upscaler Studio lacks becomes Latent (the note says so)."""
    scale = params.get("hires_scale")
    if not isinstance(scale, float) or not 1.0 < scale <= MAX_HIRES_SCALE:
        return {}
    out: dict[str, Any] = {"hires": True, "hires_scale": scale}
    steps = params.get("hires_steps")
    if isinstance(steps, int) and 0 <= steps <= MAX_STEPS:
        out["hires_steps"] = steps
    denoise = params.get("denoising_strength")
    if isinstance(denoise, float) and 0.0 < denoise <= 1.0:
        out["hires_denoise"] = denoise
    upscaler = params.get("hires_upscaler")
    if isinstance(upscaler, str) and upscaler.strip():
        # A1111's other latent modes (bicubic, antialiased…) become Latent (the notes say so);
        # any other name is an upscaler model, found by that name when the job runs.
        out["hires_upscaler"] = upscaler if upscaler in HIRES_UPSCALERS \
            or not upscaler.startswith("Latent") else "Latent"
    return out
