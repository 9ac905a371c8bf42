"""Run Studio from a source checkout: python main.py"""

from __future__ import annotations

import multiprocessing

if __name__ == "__main__":
    # The Train workspace runs its trainer in a spawned child process, which imports this file
    # again as __mp_main__: the guard keeps the child from opening a second window, and
    # freeze_support lets a frozen (PyInstaller) build start that child.
    multiprocessing.freeze_support()
    from studio.app import main

    raise SystemExit(main())
