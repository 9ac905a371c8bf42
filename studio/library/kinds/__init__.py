"""The kinds of model the library knows, one small module each, and the one answer to "which
kind is this path?" (issue 13).

A kind module (``chat.py``, ``controlnet.py`` …) defines ``KINDS``: one :class:`ModelKind` or
several (``image.py`` has the text-to-image models and the GAN and DDPM models Train exports,
which its one scanner finds). A kind says what it is called, where the window and the command
line use it, how to list every model of it (``scan``) and whether a given file or folder is one
(``describe``: its entry, or None). LoRAs, embeddings, preview decoders and split-model parts
are recognised from a file's header as the library walks its folders
(:func:`~studio.library.kinds.files.walk_entry`); their kinds here give their names and uses.

The registry asks each kind in turn which one a path is (:func:`describe_path`) and words the
"X is a <kind> model, not …" sentences (:func:`wrong_kind_message`) that the kinds' own
resolvers (``resolve_model``, ``resolve_chat_model``, ``resolve_cyclegan``) raise. The catalog
(:mod:`studio.library.catalog`, the library's whole list) asks this registry too, and neither
the kind modules nor the resolvers import the catalog (an import-linter contract in
pyproject.toml proves it), so adding a kind is one file here plus its tests.

The kind modules are imported on first use (:func:`all_kinds`), so a resolver that a kind
module imports can import this registry at its top.

No Qt, no torch.
"""

from __future__ import annotations

import functools
import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError
from studio.library.classify import folder_size
from studio.library.entry import LibraryEntry
from studio.library.kinds.base import ModelKind
from studio.library.kinds.files import walk_entry

__all__ = ["ModelKind", "all_kinds", "chosen_path", "describe_path", "probing_kinds", "scanned",
           "scanners", "wrong_kind_message", "wrong_kind_text"]

A = TypeVar("A")
E = TypeVar("E")


@functools.cache
def all_kinds() -> dict[str, ModelKind]:
    """Every kind, in the library's order (each module of this package's ``KINDS``)."""
    found: list[ModelKind] = []
    for module in pkgutil.iter_modules(__path__):
        kinds = getattr(importlib.import_module(f"{__name__}.{module.name}"), "KINDS", ())
        found += [k for k in kinds if isinstance(k, ModelKind)]
    return {k.key: k for k in sorted(found, key=lambda k: k.order)}


def __getattr__(name: str) -> dict[str, ModelKind]:
    if name == "KINDS":  # every kind, in the library's order, loaded on first use
        return all_kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def scanners() -> list[Callable[[Settings, Paths], list[LibraryEntry]]]:
    """How each kind that lists its own models lists them, in the library's order."""
    return [k.scan for k in all_kinds().values() if k.scan is not None]


def chosen_path(spec: str, none_chosen: str) -> tuple[str, Path]:
    """What a resolver is asked for, stripped, and the path it would be; ``none_chosen`` (a
    sentence) as the error when it is empty."""
    spec = str(spec).strip()
    if not spec:
        raise UserFacingError(none_chosen)
    return spec, Path(spec).expanduser()


def scanned(items: Iterable[A], make: Callable[[A], E | None], log: logging.Logger, *,
            name: Callable[[A], object] = lambda item: item, level: int = logging.WARNING,
            errors: tuple[type[Exception], ...] = (OSError, UserFacingError)) -> list[E]:
    """The entries ``make`` makes of ``items`` (its Nones left out), in order. An item it fails
    on with one of ``errors`` is logged to ``log`` ("skipping NAME: why") and passed over: one
    broken file never hides the rest of a scan."""
    found: list[E] = []
    for item in items:
        try:
            entry = make(item)
        except errors as exc:
            log.log(level, "skipping %s: %s", name(item), exc)
            continue
        if entry is not None:
            found.append(entry)
    return found


def probing_kinds() -> list[ModelKind]:
    """The kinds that recognise a given path, in the order they are asked."""
    return sorted((k for k in all_kinds().values() if k.describe is not None),
                  key=lambda k: k.probe)


def describe_path(path: Path, source: str, paths: Paths) -> LibraryEntry:
    """What one file or folder is, as a library entry (kind ``unknown`` with the reason when it
    is not a model Studio knows). Each kind is asked in turn (:func:`probing_kinds`); a kind
    that finds the path broken answers with the reason. Used by import, before anything is
    copied or registered, and by the resolvers' "X is a <kind> model" sentences."""
    path = Path(path)
    for kind in probing_kinds():
        try:
            found = kind.describe(path, source) if kind.describe is not None else None
        except UserFacingError as exc:
            return LibraryEntry(path.stem, "unknown", path, source,
                                path.suffix.lstrip(".") or "folder",
                                path.stat().st_size if path.is_file() else 0, detail=str(exc))
        if found is not None:
            return found
    if path.is_dir() and not ((path / "config.json").is_file()
                              or (path / "model_index.json").is_file()):
        return LibraryEntry(path.name, "unknown", path, source, "folder", folder_size(path),
                            detail="an empty folder or one without a model "
                                   "(no model_index.json or config.json)"
                            if not any(path.iterdir()) else "no model_index.json or config.json")
    return walk_entry(path, source, paths)


def _cli_use(entry: LibraryEntry, spec: str) -> str:
    """Which command takes ``entry``, as a sentence with the exact command."""
    quoted = f'"{spec}"' if " " in spec else spec
    kind = all_kinds().get(entry.kind)
    return kind.cli_use.format(spec=quoted, name=entry.name) if kind is not None else ""


def wrong_kind_text(entry: LibraryEntry, wanted: str | tuple[str, ...], command: str = "",
                    spec: str = "") -> str:
    """"X is a <kind> model …": what ``entry`` is and where it is used, and what was wanted.

    Without ``command`` the sentence is for the window (workspace names, each kind's
    ``wanted``); with it, for that command line (``studio transform``): what the command takes
    (each kind's ``cli_wanted``) and the command that takes X.
    """
    kinds = all_kinds()
    title = entry.kind_title
    article = "an" if title[:1].lower() in "aeiou" else "a"
    wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    if command:
        takes = " and ".join(kinds[k].cli_wanted for k in wanted
                             if k in kinds and kinds[k].cli_wanted)
        return (f"{spec or entry.name} is {article} {title} model, and {command} takes "
                f"{takes}. {_cli_use(entry, spec or entry.spec)}").strip()
    where = (" — use it in " + " or ".join(entry.workspaces)) if entry.workspaces else ""
    kind = kinds.get(entry.kind)
    if kind is not None and kind.where:
        where = kind.where.format(name=entry.name)
    first = kinds.get(wanted[0])
    return (f"{spec or entry.name} is {article} {title} model{where}. "
            f"{first.wanted if first is not None else ''}.")


def wrong_kind_message(path: Path, wanted: str | tuple[str, ...], paths: Paths,
                       command: str = "") -> str:
    """A sentence saying that ``path`` is a model of another kind and where it is used, or ''
    when it is not a model Studio recognises (the caller then says what is missing).
    ``command`` words it for that command line (see :func:`wrong_kind_text`)."""
    try:
        entry = describe_path(Path(path), "file", paths)
    except (OSError, UserFacingError):
        return ""
    wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    if entry.kind == "unknown" or entry.kind in wanted:
        return ""
    return wrong_kind_text(entry, wanted, command, Path(path).name if not command
                           else str(path))
