"""PyInstaller runtime hook: give a windowed build real ``sys.stdout`` / ``sys.stderr``.

A windowed executable (Windows without a console, a macOS .app started from Finder) starts with
both set to None; tqdm, logging's default handler and ``print`` then raise AttributeError on the
first write. Writers to os.devnull keep them working and silent.
"""

import os
import sys

for _name in ("stdout", "stderr"):
    if getattr(sys, _name) is None:
        setattr(sys, _name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - lives as long as the app
