"""Studio: a desktop studio for generative AI that runs on your own machine.

Nothing heavy is imported here: `studio --version` and the window's start-up must not pay for torch.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

__version__ = "0.1.0"

# diffusers and transformers import torchao whenever it is installed (their quantizers): on a CPU
# build its CUDA kernels "fail to load" and torch notes two enum registrations, four lines on the
# terminal of every `studio generate` and in the window's log; diffusers' torchao quantizer warns
# that torchao 0.18 lacks the tensor classes of older checkpoints (Studio loads none). Real errors
# still show.
for _name in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def _assets_dir() -> Path:
    # A PyInstaller bundle unpacks its data next to the code in sys._MEIPASS (onedir: the
    # "_internal" folder; a macOS .app: Contents/Frameworks or Resources). The spec puts assets/
    # there, so the frozen app never looks for the source tree.
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        for base in (Path(bundle), Path(bundle).parent / "Resources"):
            if (base / "assets").is_dir():
                return base / "assets"
        return Path(bundle) / "assets"
    return Path(__file__).resolve().parent.parent / "assets"


#: Files that ship with the app (model configs, tokenizer data, catalogs, icons).
ASSETS_DIR = _assets_dir()
