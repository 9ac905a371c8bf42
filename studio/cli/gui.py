"""``studio gui`` (and plain ``studio``): open the window.

Without a display (Linux: no ``DISPLAY`` nor ``WAYLAND_DISPLAY``) it prints ``studio: error:
cannot connect to a display (…)`` and exits 1 before Qt or the window is loaded.
"""

from __future__ import annotations

import argparse

NAME = "gui"
HELP = "open the Studio window (the default)"
EXIT_STATUS = ("Exit status: the window's (0 when it is closed normally); 1 when no window can "
               "open: no display to connect to (DISPLAY and WAYLAND_DISPLAY unset, or a display "
               "that does not answer), or Qt's platform plugin cannot load.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The window takes no options."""


def run(args: argparse.Namespace) -> int:
    from studio.ui.startup_failure import NO_DISPLAY_EXIT, display_problem

    problem = display_problem()
    if problem:  # said before Qt and the window's modules are even imported
        import sys

        print(problem, file=sys.stderr, flush=True)
        return NO_DISPLAY_EXIT
    # Imported here: Qt (and the window) load only when the window is wanted.
    from studio.app import main as app_main

    return int(app_main() or 0)
