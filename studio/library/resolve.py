"""The one answer to "which model does this ``--model`` mean?", for every command line.

A command names a model in one of three ways, tried in this order:

1. a path to a model file or folder (``~/models/dreamshaper_8.safetensors``);
2. a name exactly as ``studio models list`` prints it (``tiny-chat``; case does not matter
   when only one model has the name), or a Hugging Face repo id in the cache
   (``stabilityai/sd-turbo``), which is how ``models list`` names those;
3. a repo id that is not in the cache: refused with the command that downloads it.

The kind's own resolver (:func:`studio.library.models.resolve_model`, :func:`~studio.library.
chat_models.resolve_chat_model`, :func:`~studio.library.cyclegan_models.resolve_cyclegan`) then
checks the model itself, so the command line, the window and the server refuse the same things.
A model of another kind is refused with what the command takes and which command takes it.
Only headers and JSON are read; no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError
from studio.library.catalog import (
    ambiguous_message,
    find_entry,
    kind_entries,
    list_models,
    matching_entries,
)
from studio.library.hf_cache import looks_like_repo_id, one_hf_cache_scan
from studio.library.kinds import describe_path, wrong_kind_text

KINDS = ("image", "chat", "transform")


@dataclass
class ResolvedModel:
    """A model a command named: ``spec`` is what its request carries (a repo id in the Hugging
    Face cache, else an absolute path), ``entry`` the kind's own entry."""

    kind: str  # image | gan | chat | transform
    spec: str
    name: str
    # ModelEntry | ChatModelEntry | CycleGANModel. Any: each caller asked for its kinds and reads
    # that kind's fields (``family``…); the union would need an isinstance at every call site.
    entry: Any


def _resolvers() -> dict[str, Callable[[str, Settings, Paths], Any]]:
    from studio.library.chat_models import resolve_chat_model
    from studio.library.cyclegan_models import resolve_cyclegan
    from studio.library.models import resolve_model

    return {"image": resolve_model, "gan": resolve_model, "chat": resolve_chat_model,
            "gguf": resolve_chat_model,
            "transform": lambda spec, settings, paths: resolve_cyclegan(spec)}


def _request_spec(spec: str) -> str:
    local = Path(spec).expanduser()
    # An absolute path in the request (and the image's metadata) lets "reuse parameters" find
    # the model again from any folder.
    return str(local.resolve()) if local.exists() else spec


def _resolve_as(kind: str, spec: str, settings: Settings, paths: Paths) -> ResolvedModel:
    kind = "image" if kind == "ddpm" else kind  # a trained DDPM is drawn by the image engine
    kind = "chat" if kind == "gguf" else kind  # a GGUF file chats through the chat engine
    entry = _resolvers()[kind](spec, settings, paths)
    return ResolvedModel(kind, _request_spec(spec), entry.name, entry)


def _by_spec(spec: str, kinds: tuple[str, ...], settings: Settings, paths: Paths,
             command: str) -> ResolvedModel:
    """A path or repo id: the first kind whose resolver takes it."""
    reasons: list[str] = []
    for kind in kinds:
        try:
            return _resolve_as(kind, spec, settings, paths)
        except UserFacingError as exc:
            reasons.append(str(exc))
    wrong = _wrong_kind(spec, kinds, settings, paths, command)
    if wrong:
        raise UserFacingError(wrong)
    if len(kinds) == 1:
        raise UserFacingError(reasons[0])
    titles = " nor a ".join({"image": "text-to-image", "chat": "chat",
                             "transform": "CycleGAN"}[k] for k in kinds)
    raise UserFacingError(f"{spec} is neither a {titles} model ("
                          + " / ".join(dict.fromkeys(reasons)) + ")")


def _wrong_kind(spec: str, kinds: tuple[str, ...], settings: Settings, paths: Paths,
                command: str) -> str:
    """"X is a <kind> model, and <command> takes …" when ``spec`` names a model of another kind
    (a path, a repo id or a library name), else ''."""
    path = Path(spec).expanduser()
    try:
        if path.exists():
            entry = describe_path(path, "file", paths)
        else:
            entry = find_entry(spec, list_models(settings, paths))
    except (OSError, UserFacingError):
        return ""
    if entry.kind == "unknown" or entry.kind in kinds:
        return ""
    return wrong_kind_text(entry, kinds, command or "this command", spec)


def _not_found(spec: str, kinds: tuple[str, ...]) -> str:
    what = " or ".join({"image": "image", "chat": "chat", "transform": "CycleGAN"}[k]
                       for k in kinds)
    return (f"{spec} does not exist: it is not a file or folder, and no {what} model in the "
            "library has that name ('studio models list' shows the names).")


def resolve_named(spec: str, kinds: str | tuple[str, ...], settings: Settings, paths: Paths,
                  *, command: str = "") -> ResolvedModel:
    """The model ``spec`` names, as one of ``kinds`` (tried in order); raises
    :class:`UserFacingError` with a sentence a person can act on. ``command`` (``studio
    transform``) words the message about a model of another kind for that command."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    spec = str(spec).strip()
    with one_hf_cache_scan():  # the cache is scanned once, however many kinds ask
        if not spec or Path(spec).expanduser().exists():
            return _by_spec(spec, kinds, settings, paths, command)
        listed = kinds + (("gguf",) if "chat" in kinds else ())  # GGUF files chat too
        hits = matching_entries(spec, kind_entries(listed, settings, paths))
        if len(hits) > 1:
            raise UserFacingError(ambiguous_message(spec, hits))
        if hits:
            return _resolve_as(hits[0].kind, hits[0].spec, settings, paths)
        if looks_like_repo_id(spec):
            return _by_spec(spec, kinds, settings, paths, command)
        wrong = _wrong_kind(spec, kinds, settings, paths, command)
        raise UserFacingError(wrong or _not_found(spec, kinds))
