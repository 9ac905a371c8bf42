"""Studio: a desktop studio for generative AI that runs on your own machine.

Nothing heavy is imported here: `studio --version` and the window's start-up must not pay for torch.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

#: Files that ship with the app (model configs, tokenizer data, theme).
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
