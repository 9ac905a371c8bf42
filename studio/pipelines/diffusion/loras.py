"""LoRAs in image generation: A1111 prompt tags, finding the files, applying them with diffusers.

A job's LoRAs come from two places, in this order: ``<lora:NAME:WEIGHT>`` tags in the positive
prompt (AUTOMATIC1111's syntax; the tags are removed from the text that is encoded, as A1111 does)
and the request's ``loras`` list (what the user picked, or ``studio generate --lora``). A name is a
library name (a LoRA file's stem, case-insensitive) or a file path. The same file named twice is
applied once with the *later* weight and a warning: A1111 would apply it twice at the last weight,
which doubles it and is never what the user meant; "later wins" also keeps the image the same
when it is made again from its A1111 text, where the picked LoRAs follow the typed tags.

An unknown name in a tag is a warning (the image is made without it, as A1111 does); an unknown
name the user picked is an error naming where LoRAs are looked for. A LoRA made for another model
family (an SDXL LoRA on an SD 1.5 model) is refused with a message saying which to pick.

Applying goes through diffusers (``load_lora_weights`` / ``set_adapters``, PEFT underneath; kohya
and diffusers/PEFT key formats); LyCORIS LoHa/LoKr/full files, which diffusers cannot read, are
added to the layers' weights by :mod:`.lycoris` (as A1111 and ComfyUI do) and taken out again
exactly, with the same weights-per-tag, several-at-once and unload behaviour. ``.safetensors`` files are read by diffusers from their folder
with no network; pickles (``.pt``/``.ckpt``/``.bin``) only through
:func:`studio.library.safe_load.load_state_dict`. What is loaded is remembered on the pipeline:
the same files again only change the weights; other files replace them; no LoRAs unloads them, so
an image without LoRAs stays bit-for-bit plain diffusers. img2img / inpaint pipelines made with
``from_pipe`` share the UNet and text encoders, so LoRAs applied to the cached pipeline apply there.

The hashes written into ``Lora hashes`` are A1111's: the first 12 hex digits of the SHA-256 of a
safetensors file's tensor data (after its header; "AutoV3" on CivitAI), or of a pickle's whole
file, or the ``sshs_model_hash`` a trainer stored in the header. torch/diffusers are imported
only when a LoRA is applied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.config import Paths, Settings
from studio.core.files import atomic_write_text, read_json_dict
from studio.core.jobs import UserFacingError
from studio.core.requests import MAX_LORA_WEIGHT
from studio.core.wording import count_of
from studio.library.classify import LYCORIS_FORMATS
from studio.library.families import FAMILIES, lora_fits
from studio.library.safe_load import PICKLE_SUFFIXES
from studio.media.infotext import format_number
from studio.pipelines.diffusion.lora_formats import convert_old_diffusers, file_converts, prepared

if TYPE_CHECKING:
    from studio.library.entry import LibraryEntry
    from studio.pipelines.diffusion.lycoris import LycorisPatches

__all__ = ["convert_old_diffusers"]  # it lived here; tests and callers import it from here

log = logging.getLogger(__name__)

FAMILY_LABELS = {f.key: f.lora_label for f in FAMILIES.values()}
LORA_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
HASH_DIGITS = 12  # A1111's NetworkOnDisk.shorthash
# A1111's extra-network syntax (modules/extra_networks.py: re_extra_net): <kind:arguments>.
_TAG = re.compile(r"<(\w+):([^>]+)>")
_LORA_FOLDERS = ("lora", "loras", "lycoris")
_STATE_ATTR = "_studio_loras"  # what is loaded into a pipeline, see apply_loras
_hash_lock = threading.Lock()


@dataclass(frozen=True)
class LoraMention:
    """One LoRA as the user named it: a prompt tag or an entry of ``request.loras``."""

    name: str
    weight: float
    source: str  # "prompt" | "request"


@dataclass
class LoraChoice:
    """A LoRA file found for a mention."""

    name: str  # as mentioned (what the tag / the hashes field show)
    weight: float
    path: Path
    source: str  # "prompt" | "request"
    family: str = ""  # sd1 | sd2 | sdxl | "" (not recognisable from the header)
    format: str = ""  # kohya | diffusers | LoHa | LoKr | … | "" (a pickle, known once loaded)
    hash: str = ""  # A1111's short hash, filled in by :func:`add_hashes`

    @property
    def tag_name(self) -> str:
        """The name a ``<lora:…>`` tag can carry: the stem of a path, the library name else."""
        as_path = _looks_like_path(self.name) or Path(self.name).suffix.lower() in LORA_SUFFIXES
        name = Path(self.name).stem if as_path else self.name
        return name.replace(":", "").replace(">", "")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "path": str(self.path),
                "hash": self.hash, "source": self.source}


@dataclass
class LoraPlan:
    """The LoRAs of one job, the prompt to encode, and what the user should be told."""

    prompt: str  # the positive prompt without its extra-network tags
    loras: list[LoraChoice] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def infotext_prompt(self, prompt: str) -> str:
        """The prompt for the A1111 ``parameters`` text: as typed (tags and all), with a tag
        appended for each picked LoRA, so A1111 and Studio's reuse apply the same LoRAs."""
        tags = [f"<lora:{c.tag_name}:{format_number(c.weight)}>" for c in self.loras
                if c.source == "request"]
        if not tags:
            return prompt
        sep = " " if prompt and not prompt[-1].isspace() else ""
        return prompt + sep + " ".join(tags)

    def hashes_text(self) -> str:
        """A1111's ``Lora hashes`` value: ``name: hash, name2: hash2`` ("" without LoRAs)."""
        return ", ".join(f"{c.name.replace(':', '').replace(',', '')}: {c.hash}"
                         for c in self.loras if c.hash)

    def used(self) -> list[dict[str, Any]]:
        """The applied LoRAs as plain dicts (results, ``--json``)."""
        return [c.to_json() for c in self.loras]


# -- prompt tags --------------------------------------------------------------------------------
def _weight(text: str, tag: str, name: str) -> float:
    try:
        weight = float(text.strip())
    except ValueError:
        raise UserFacingError(f"The prompt tag {tag} has a weight that is not a number "
                              f"({text.strip()!r}); write it as <lora:{name}:0.8>.") from None
    if not math.isfinite(weight) or abs(weight) > MAX_LORA_WEIGHT:
        raise UserFacingError(f"The prompt tag {tag}: a LoRA weight must be between "
                              f"-{MAX_LORA_WEIGHT:g} and {MAX_LORA_WEIGHT:g}.")
    return weight


def _lora_tag(args: str, tag: str, warnings: list[str]) -> LoraMention:
    items = args.split(":")
    name = items[0].strip()
    if not name:
        raise UserFacingError(f"The prompt tag {tag} names no LoRA; write it as "
                              "<lora:name:0.8>.")
    positional = [i for i in items[1:] if "=" not in i]
    named = dict(i.split("=", 1) for i in items[1:] if "=" in i)
    named = {k.strip().lower(): v for k, v in named.items()}
    raw = positional[0] if positional else named.get("te", "1")
    weight = _weight(raw, tag, name)
    if len(positional) > 1 or set(named) - {"te"}:
        warnings.append(f"{tag}: Studio gives a LoRA one weight, so {format_number(weight)} "
                        "is used for its text encoder and UNet alike (separate text-encoder/"
                        "UNet weights are not supported).")
    return LoraMention(name, weight, "prompt")


def parse_prompt_loras(prompt: str) -> tuple[str, list[LoraMention], list[str]]:
    """``(prompt without extra-network tags, the <lora:…> mentions, warnings)``.

    Every ``<word:…>`` tag is removed from the text, as A1111 does; ``<lyco:…>`` (the LyCORIS
    extension's tag, an alias of ``lora`` in A1111's built-in LoRA support) is a LoRA; other tags
    (hypernetworks, …) are not applied and a warning says so.
    """
    mentions: list[LoraMention] = []
    warnings: list[str] = []

    def found(match: re.Match) -> str:
        kind, args, tag = match.group(1), match.group(2), match.group(0)
        if kind.lower() in ("lora", "lyco"):
            mentions.append(_lora_tag(args, tag, warnings))
        else:
            warnings.append(f"{tag} was removed from the prompt: Studio does not apply "
                            f"<{kind}:…> networks (only <lora:…>).")
        return ""

    return _TAG.sub(found, prompt or ""), mentions, warnings


def request_mentions(loras: list[dict[str, Any]]) -> list[LoraMention]:
    """The mentions of ``request.loras`` (already validated by ``validate_loras``)."""
    return [LoraMention(str(item["name"]).strip(), float(item.get("weight", 1.0)), "request")
            for item in loras or []]


# -- finding the files --------------------------------------------------------------------------
def _looks_like_path(name: str) -> bool:
    return any(c in name for c in "/\\")


def _in_lora_folder(path: Path) -> bool:
    return any(p.name.lower() in _LORA_FOLDERS for p in path.parents)


class LoraFinder:
    """Finds LoRA files by path or library name; lists the library once, and only if needed."""

    def __init__(self, settings: Settings, paths: Paths) -> None:
        self.settings, self.paths = settings, paths
        self._entries: list[LibraryEntry] | None = None

    def entries(self) -> list[LibraryEntry]:
        """Library entries that can be LoRAs: LoRA files, and pickles (their keys are only known
        once loaded) that are not a model of another kind."""
        if self._entries is None:
            from studio.library.catalog import list_models

            self._entries = [
                e for e in list_models(self.settings, self.paths)
                if e.kind == "lora" or (
                    e.path.suffix.lower() in PICKLE_SUFFIXES and e.path.is_file()
                    and (e.kind == "unknown" or _in_lora_folder(e.path)))]
        return self._entries

    def find(self, name: str, warnings: list[str]) -> Path | None:
        """The file ``name`` means, or None."""
        path = Path(name).expanduser()
        if path.is_file():
            return path
        if _looks_like_path(name):  # a path that is not there: never a library name
            return None
        stem = Path(name).stem if Path(name).suffix.lower() in LORA_SUFFIXES else name
        entries = self.entries()
        hits = [e for e in entries if e.name == stem] or \
            [e for e in entries if e.name.lower() == stem.lower()]
        if not hits:
            return None
        if len(hits) > 1:
            warnings.append(f"LoRA '{name}' matches {count_of(len(hits), 'file')}; using {hits[0].path} "
                            "(name it by its path to pick another).")
        return Path(hits[0].path)

    def not_found(self, name: str) -> str:
        """The message for a LoRA the user picked that is nowhere to be found."""
        path = Path(name).expanduser()
        if _looks_like_path(name):
            return f"The LoRA file {path} does not exist."
        return (f"No LoRA called '{name}' in your library. LoRAs are looked for in the Studio "
                f"models folder ({self.paths.models_dir}), in the extra model folders set in "
                "Settings (an A1111 install's models/Lora, a ComfyUI install's models/loras) and "
                "among the models you imported; 'studio models list' shows them. A LoRA file can "
                "also be named by its path.")


def _describe(choice: LoraChoice) -> None:
    """Fill in the family and format of a safetensors LoRA from its header; refuse non-LoRAs."""
    if choice.path.suffix.lower() != ".safetensors":
        if choice.path.suffix.lower() not in PICKLE_SUFFIXES:
            raise UserFacingError(f"LoRA '{choice.name}' ({choice.path.name}) is not a weight "
                                  "file Studio reads (.safetensors, .pt, .ckpt, .bin).")
        return
    from studio.library.classify import classify_file

    kind = classify_file(choice.path)  # raises UserFacingError for a corrupt file
    if kind.kind != "lora":
        raise UserFacingError(f"'{choice.name}' ({choice.path.name}) is not a LoRA file: "
                              f"{kind.reason or kind.kind}.")
    choice.family, choice.format = kind.family, kind.format


def plan_loras(prompt: str, loras: list[dict[str, Any]], settings: Settings,
               paths: Paths) -> LoraPlan:
    """Parse the prompt's tags and find every LoRA file; no weights are read (headers only)."""
    text, mentions, warnings = parse_prompt_loras(prompt)
    mentions += request_mentions(loras)
    plan = LoraPlan(text, warnings=warnings)
    if not mentions:
        return plan
    finder = LoraFinder(settings, paths)
    chosen: dict[Path, LoraChoice] = {}
    for mention in mentions:
        path = finder.find(mention.name, plan.warnings)
        if path is None:
            if mention.source == "prompt":
                plan.warnings.append(f"LoRA '{mention.name}' is not in your library — "
                                     "generated without it.")
                continue
            raise UserFacingError(finder.not_found(mention.name))
        key = path.resolve()
        earlier = chosen.pop(key, None)
        if earlier is not None:
            plan.warnings.append(
                f"LoRA '{mention.name}' is named more than once; the later weight "
                f"{format_number(mention.weight)} is used (not {format_number(earlier.weight)}).")
        choice = LoraChoice(mention.name, mention.weight, path, mention.source)
        _describe(choice)
        chosen[key] = choice
    plan.loras = list(chosen.values())
    return plan


def check_compatible(plan: LoraPlan, family: str, model_name: str) -> None:
    """Refuse a LoRA whose base family is known and differs from the model's."""
    for choice in plan.loras:
        _check_family(choice, family, model_name)


def _article(label: str) -> str:
    """'an' before "SD 1.5" / "SDXL" (es-dee), 'a' before "FLUX.1", "Qwen-Image", "Z-Image"."""
    return "an" if label[:1] in "AEIOUS" else "a"


def _check_family(choice: LoraChoice, family: str, model_name: str) -> None:
    if lora_fits(choice.family, family) or choice.family not in FAMILY_LABELS \
            or family not in FAMILY_LABELS:
        return
    made, model = FAMILY_LABELS[choice.family], FAMILY_LABELS[family]
    raise UserFacingError(f"LoRA '{choice.name}' was made for {made} models; '{model_name}' is "  # plural-ok
                          f"{_article(model)} {model} model — pick {_article(model)} {model} "
                          f"LoRA or {_article(made)} {made} model.")


# -- hashes -------------------------------------------------------------------------------------
def _addnet_sha256(path: Path) -> str:
    """SHA-256 of a safetensors file's data after its header (A1111's addnet_hash_safetensors)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        fh.seek(8 + header_len)
        while block := fh.read(4 * 2**20):
            digest.update(block)
    return digest.hexdigest()


def _hash_cache(paths: Paths) -> Path:
    return paths.data_dir / "cache" / "lora-hashes.json"


def _read_hash_cache(file: Path) -> dict:
    return read_json_dict(file)


def _cached_addnet(path: Path, paths: Paths) -> str:
    target = path.resolve()
    stat = target.stat()
    file = _hash_cache(paths)
    with _hash_lock:
        data = _read_hash_cache(file)
    hit = data.get(str(target))
    if isinstance(hit, dict) and hit.get("size") == stat.st_size \
            and hit.get("mtime") == stat.st_mtime and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    digest = _addnet_sha256(target)
    with _hash_lock:
        data = _read_hash_cache(file)  # again: another job may have added to it meanwhile
        data[str(target)] = {"size": stat.st_size, "mtime": stat.st_mtime, "sha256": digest}
        try:
            atomic_write_text(file, json.dumps(data, indent=1, sort_keys=True))
        except OSError as exc:
            log.warning("cannot write the LoRA hash cache %s: %s", file, exc)
    return digest


def lora_hash(path: Path, paths: Paths) -> str:
    """A1111's short hash of a LoRA file (12 hex digits); cached by path, size and mtime."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from studio.library.detect import read_safetensors_header

        meta = read_safetensors_header(path).get("__metadata__") or {}
        stored = str(meta.get("sshs_model_hash", "")).lower()
        if re.fullmatch(r"[0-9a-f]{12,64}", stored):
            return stored[:HASH_DIGITS]
        return _cached_addnet(path, paths)[:HASH_DIGITS]
    from studio.library.hashing import full_sha256

    return full_sha256(path, paths)[:HASH_DIGITS]


def add_hashes(plan: LoraPlan, paths: Paths) -> None:
    """Fill in each LoRA's hash; a file that cannot be read gets none (and is not listed)."""
    for choice in plan.loras:
        try:
            choice.hash = lora_hash(choice.path, paths)
        except (OSError, UserFacingError) as exc:
            log.warning("cannot hash LoRA %s: %s", choice.path, exc)


# -- applying -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Loaded:
    files: tuple[tuple[str, int, int], ...]  # (resolved path, size, mtime_ns) per LoRA
    adapters: tuple[str, ...]  # PEFT adapters, for the LoRAs diffusers loads
    lycoris: LycorisPatches | None = None  # for the LyCORIS files
    patched: tuple[bool, ...] = ()  # per LoRA: applied by lycoris (else a PEFT adapter)


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def loaded_loras(pipe: Any) -> tuple[str, ...]:
    """Resolved paths of the LoRA files loaded into ``pipe`` (none: ``()``)."""
    loaded = getattr(pipe, _STATE_ATTR, None)
    return tuple(f[0] for f in loaded.files) if loaded is not None else ()


def _has_adapters(pipe: Any) -> bool:
    return any(hasattr(getattr(pipe, name, None), "peft_config")
               for name in ("unet", "transformer", "text_encoder", "text_encoder_2"))


def unload_loras(pipe: Any) -> None:
    """Remove every LoRA from ``pipe``: its layers are back to the model's own weights."""
    loaded: _Loaded | None = getattr(pipe, _STATE_ATTR, None)
    if loaded is not None and loaded.lycoris is not None:
        loaded.lycoris.restore()
    if (loaded is not None and loaded.adapters) or _has_adapters(pipe):
        pipe.unload_lora_weights()
    setattr(pipe, _STATE_ATTR, None)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "size mismatch" in line:
            return line[:240]
    return (lines[0] if lines else exc.__class__.__name__)[:240]


def _read_pickle(choice: LoraChoice, family: str, model_name: str) -> dict[str, Any]:
    """A pickled LoRA's tensors (weights_only: refuses files that need code); its format and
    family are known from them."""
    from studio.library.classify import is_lora_header, lora_base
    from studio.library.safe_load import load_state_dict

    state = load_state_dict(choice.path)
    header = {k: {"shape": list(getattr(v, "shape", []))} for k, v in state.items()}
    choice.format = is_lora_header(header)
    if not choice.format:
        raise UserFacingError(f"'{choice.name}' ({choice.path.name}) is not a LoRA file: "
                              "its weights have no LoRA layers.")
    choice.family = lora_base(header)[0]
    _check_family(choice, family, model_name)
    return state


def _load_one(pipe: Any, choice: LoraChoice, adapter: str, family: str, model_name: str,
              state: dict[str, Any] | None = None, warnings: list[str] | None = None) -> None:
    """Load one LoRA as a PEFT adapter (``state``: a pickle's tensors, else None)."""
    from studio.library.classify import OLD_DIFFUSERS
    from studio.library.safe_load import load_state_dict

    kwargs: dict[str, Any] = {}
    if state is None and choice.path.suffix.lower() in PICKLE_SUFFIXES:
        state = _read_pickle(choice, family, model_name)
    if state is None and (choice.format == OLD_DIFFUSERS or file_converts(choice.path, family)):
        state = load_state_dict(choice.path)
    if state is not None:
        source: Any = prepared(pipe, state, choice.format == OLD_DIFFUSERS, choice.name, family,
                               warnings)
    else:
        source = str(choice.path.parent)
        kwargs = {"weight_name": choice.path.name, "local_files_only": True,
                  "use_safetensors": True}
    label = FAMILY_LABELS.get(family, "Stable Diffusion")
    try:
        pipe.load_lora_weights(source, adapter_name=adapter, **kwargs)
    except (ValueError, RuntimeError, KeyError, TypeError, IndexError, OSError) as exc:
        if "PEFT backend" in str(exc):
            raise UserFacingError("Applying LoRAs needs the 'peft' package, which is missing "
                                  "from this installation; reinstall Studio.") from exc
        raise UserFacingError(
            f"LoRA '{choice.name}' does not fit '{model_name}' ({_article(label)} {label} "
            f"model): {_first_line(exc)}. It was probably made for another kind of model — a "
            "LoRA works only with models of the family it was trained on.") from exc
    if not any(adapter in names for names in pipe.get_list_adapters().values()):
        raise UserFacingError(f"LoRA '{choice.name}' matches no layer of '{model_name}' (an "
                              f"{label} model); it was probably made for another kind of model.")


def apply_loras(pipe: Any, plan: LoraPlan, family: str, model_name: str) -> None:
    """Make exactly ``plan.loras`` active on ``pipe`` at their weights (none: unload all).

    Loading happens only when the set of files differs from what ``pipe`` holds; the same files
    again only get their weights set. A failure leaves ``pipe`` without LoRAs.
    """
    check_compatible(plan, family, model_name)
    if plan.loras and getattr(pipe, "studio_fp8_storage", False):  # diffusion/shrink.py
        raise UserFacingError(f"'{model_name}' keeps its denoiser in fp8, which LoRAs cannot be "
                              "applied to; use the original model or an int8 copy with LoRAs.")
    loaded: _Loaded | None = getattr(pipe, _STATE_ATTR, None)
    if not plan.loras:
        if loaded is not None or _has_adapters(pipe):
            unload_loras(pipe)
        return
    files = tuple(_file_key(c.path) for c in plan.loras)
    if loaded is None or loaded.files != files:
        unload_loras(pipe)
        try:
            loaded = _load_all(pipe, plan, files, family, model_name)
        except BaseException:
            unload_loras(pipe)
            raise
        _record_use(plan)
    weights = list(zip((float(c.weight) for c in plan.loras), loaded.patched, strict=True))
    try:
        if loaded.adapters:
            pipe.set_adapters(list(loaded.adapters), [w for w, patched in weights if not patched])
        if loaded.lycoris is not None:
            loaded.lycoris.set_weights([w for w, patched in weights if patched])
    except (ValueError, RuntimeError, UserFacingError) as exc:
        unload_loras(pipe)
        if isinstance(exc, UserFacingError):
            raise
        raise UserFacingError(f"The LoRAs could not be applied: {_first_line(exc)}.") from exc


def _load_all(pipe: Any, plan: LoraPlan, files: tuple[tuple[str, int, int], ...], family: str,
              model_name: str) -> _Loaded:
    """Load ``plan``'s LoRAs into ``pipe``: PEFT adapters for what diffusers reads, the LyCORIS
    files resolved against the layers (nothing added to them yet); remembered on ``pipe``."""
    from studio.library.safe_load import load_state_dict
    from studio.pipelines.diffusion.lycoris import LycorisPatches, resolve

    adapters: list[str] = []
    lycoris = []
    patched: list[bool] = []
    for index, choice in enumerate(plan.loras):
        state = None
        if choice.path.suffix.lower() in PICKLE_SUFFIXES:
            state = _read_pickle(choice, family, model_name)
        # SD 1.x/2.x/SDXL (a UNet): added to the weights here. Transformer families' LoKr
        # files (Z-Image, FLUX.2) are PEFT adapters diffusers' own loader makes.
        if choice.format in LYCORIS_FORMATS and getattr(pipe, "unet", None) is not None:
            if state is None:
                state = load_state_dict(choice.path)
            lycoris.append(resolve(pipe, state, choice.name, model_name))
            patched.append(True)
        else:
            adapter = f"studio_{index}"
            _load_one(pipe, choice, adapter, family, model_name, state, plan.warnings)
            adapters.append(adapter)
            patched.append(False)
    loaded = _Loaded(files, tuple(adapters), LycorisPatches(lycoris) if lycoris else None,
                     tuple(patched))
    setattr(pipe, _STATE_ATTR, loaded)
    return loaded


def _record_use(plan: LoraPlan) -> None:
    from studio.library.usage import record_use

    for choice in plan.loras:
        try:
            record_use(choice.path)
        except Exception:  # noqa: BLE001 - bookkeeping must never fail a job
            log.exception("could not record the use of %s", choice.path)
