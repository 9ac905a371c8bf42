"""The kinds of model the library knows, one small module each (issue 13).

A kind module (``chat.py``, ``controlnet.py`` …) defines ``KINDS``: one :class:`ModelKind` or
several (``image.py`` has the text-to-image models and the GAN and DDPM models Train exports,
which its one scanner finds). A kind says what it is called, where the window and the command
line use it, how to list every model of it (``scan``) and whether a given file or folder is one
(``describe``: its entry, or None). The catalog (:mod:`studio.library.catalog`) asks this
registry instead of importing each kind, and no kind module imports the catalog, so adding a
kind is one file here plus its tests. LoRAs, embeddings and preview decoders are recognised from
a file's header by :mod:`studio.library.classify` as the catalog walks the folders; their kinds
here give their names and uses.

No Qt, no torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studio.core.config import Paths, Settings
from studio.library.entry import LibraryEntry


@dataclass(frozen=True)
class ModelKind:
    """What the library knows about one kind of model."""

    key: str
    title: str
    #: where it sorts in the library's list (lower first)
    order: int
    #: the window's sentence when a workspace needs a model of this kind ("" when none asks)
    wanted: str = ""
    #: what a command line's ``--model`` of this kind takes ("" when no command takes one)
    cli_wanted: str = ""
    #: the command that uses an entry: a format string with ``{spec}`` (quoted when it has a
    #: space) and ``{name}``
    cli_use: str = ""
    #: where the window says such a model is used, replacing "use it in <workspaces>" (a format
    #: string with ``{name}``)
    where: str = ""
    #: every model of this kind the library holds (None: found by another kind's scan or by
    #: the catalog's walk)
    scan: Callable[[Settings, Paths], list[LibraryEntry]] | None = None
    #: is this file or folder one of these? Its entry, or None; a UserFacingError says it
    #: looks like one and is broken
    describe: Callable[[Path, str], LibraryEntry | None] | None = None
    #: the order ``describe`` is asked in (lower first): the most specific kinds first
    probe: int = 50


def _load() -> dict[str, ModelKind]:
    found: list[ModelKind] = []
    for module in pkgutil.iter_modules(__path__):
        kinds = getattr(importlib.import_module(f"{__name__}.{module.name}"), "KINDS", ())
        found += [k for k in kinds if isinstance(k, ModelKind)]
    return {k.key: k for k in sorted(found, key=lambda k: k.order)}


#: every kind, in the library's order
KINDS: dict[str, ModelKind] = _load()


def scanners() -> list[Callable[[Settings, Paths], list[LibraryEntry]]]:
    """How each kind that lists its own models lists them, in the library's order."""
    return [k.scan for k in KINDS.values() if k.scan is not None]


def probing_kinds() -> list[ModelKind]:
    """The kinds that recognise a given path, in the order they are asked."""
    return sorted((k for k in KINDS.values() if k.describe is not None), key=lambda k: k.probe)
