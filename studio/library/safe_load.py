"""Loading weight files without running code from them.

``.safetensors`` holds only tensors. ``.ckpt/.pt/.pth/.bin`` are Python pickles, which can run
arbitrary code when unpickled; they are loaded only with ``torch.load(weights_only=True)``, which
accepts tensors and plain containers and refuses everything else. A file that needs more is
refused with an explanation (DESIGN: safe by default) — never loaded "just this once".
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from studio.jobs import UserFacingError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def load_state_dict(path: Path) -> dict[str, Any]:
    """Tensors of a weight file on the CPU; refuses files that would need arbitrary code."""
    import torch

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise UserFacingError(f"{path.name} is truncated or corrupt ({exc}).") from exc
    if suffix not in PICKLE_SUFFIXES:
        raise UserFacingError(f"{path.name}: unsupported weight file type {suffix or '(none)'}; "
                              "use .safetensors.")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserFacingError(
            f"{path.name} was refused for safety: loading it would need to run arbitrary code "
            "stored in the file (it contains more than plain tensors). Use a .safetensors version "
            f"of this model instead. ({str(exc).splitlines()[0][:200]})"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise UserFacingError(f"{path.name} is truncated or corrupt ({exc}).") from exc
    if not isinstance(state, dict):
        raise UserFacingError(f"{path.name} does not contain a dictionary of weights.")
    return state
