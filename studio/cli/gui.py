"""``studio gui`` (and plain ``studio``): open the window."""

from __future__ import annotations

import argparse

NAME = "gui"
HELP = "open the Studio window (the default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The window takes no options."""


def run(args: argparse.Namespace) -> int:
    # Imported here: Qt (and the window) load only when the window is wanted.
    from studio.app import main as app_main

    return int(app_main() or 0)
