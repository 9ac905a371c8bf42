"""What one kind of model is (:class:`ModelKind`), apart from the registry that lists them
(:mod:`studio.library.kinds`), so that the kind modules and the registry import it without
importing each other. No Qt, no torch."""

from __future__ import annotations

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
    #: the folder walk's header reading, :func:`studio.library.kinds.files.walk_entry`)
    scan: Callable[[Settings, Paths], list[LibraryEntry]] | None = None
    #: is this file or folder one of these? Its entry, or None; a UserFacingError says it
    #: looks like one and is broken
    describe: Callable[[Path, str], LibraryEntry | None] | None = None
    #: the order ``describe`` is asked in (lower first): the most specific kinds first
    probe: int = 50
