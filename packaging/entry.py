"""The frozen app's entry point: ``Studio`` / ``studio`` in an installer build run this.

It is the ``studio`` command: no arguments opens the window, ``studio self-test`` checks the
install, every other sub-command works as from a pip install.
"""

from __future__ import annotations

import multiprocessing
import sys

if __name__ == "__main__":
    # The Train workspace runs lessons in spawned child processes; in a frozen app the child is
    # this same executable, and freeze_support() turns it into the worker instead of a new app.
    multiprocessing.freeze_support()
    from studio.__main__ import main

    sys.exit(main())
