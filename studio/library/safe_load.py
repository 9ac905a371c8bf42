"""Loading weight files without running code from them.

``.safetensors`` holds only tensors. ``.ckpt/.pt/.pth/.bin`` are Python pickles, which can run
arbitrary code when unpickled; they are loaded only with ``torch.load(weights_only=True)``, which
accepts tensors and plain containers and refuses everything else. A file that needs more is
refused with an explanation (DESIGN: safe by default) — never loaded "just this once".
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from studio.core.jobs import UserFacingError

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
        raise refused(path.name, exc) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise UserFacingError(f"{path.name} is truncated or corrupt ({exc}).") from exc
    if not isinstance(state, dict):
        raise UserFacingError(f"{path.name} does not contain a dictionary of weights.")
    return state


_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def refused(name: str, exc: BaseException) -> UserFacingError:
    """The refusal of a pickle that ``torch.load(weights_only=True)`` would not unpickle.

    torch's own message tells the reader how to load the file unsafely; ours says what the file
    asked for instead and points to a safe format."""
    text = _ANSI.sub("", str(exc))
    wanted = _GLOBAL.search(text)
    why = (f"it asks to call {wanted.group(1)}, which is not part of plain weights" if wanted
           else "it uses pickle instructions that plain weights never need")
    return UserFacingError(
        f"{name} was refused for safety: loading it would need to run arbitrary code stored in "
        "the file (it contains more than plain tensors; "
        f"{why}). Use a .safetensors version of this model instead.")


def refusal_in(exc: BaseException, name: str) -> UserFacingError | None:
    """The refusal for a library's load (diffusers, transformers) that failed because a pickle
    needed arbitrary code, found anywhere in ``exc``'s chain of causes; None otherwise.

    Both libraries read ``.bin`` with ``weights_only=True``, so the code never ran — but diffusers
    wraps the refusal in "Unable to load weights", which reads like a damaged download."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        if isinstance(node, pickle.UnpicklingError):
            return refused(name, node)
        seen.add(id(node))
        node = node.__cause__ or node.__context__
    return None


def check_pickle(path: Path) -> None:
    """Raise :class:`UserFacingError` when a pickled weight file would need arbitrary code.

    Runs the same ``weights_only`` unpickler the loaders use, so import refuses exactly what a
    load would refuse. A zip-format file (every ``torch.save`` since torch 1.6) is memory-mapped:
    only its small pickle is read, not the tensor data, so checking a 7 GB checkpoint is quick."""
    import torch

    path = Path(path)
    try:
        torch.load(str(path), map_location="cpu", weights_only=True,
                   mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise refused(path.name, exc) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise UserFacingError(f"{path.name} is truncated or corrupt ({exc}).") from exc


def loaded_pickles(path: Path) -> list[Path]:
    """The pickled weight files a loader would read from ``path``: the file itself, or in a model
    folder and in each of its component folders (diffusers' ``unet/``, ``vae/``…) the pickles of
    a folder that has no ``.safetensors`` (the libraries prefer those and never open the pickle).
    """
    path = Path(path)
    if path.is_file():
        return [path] if path.suffix.lower() in PICKLE_SUFFIXES else []
    found: list[Path] = []
    for folder in [path, *sorted(p for p in path.iterdir()
                                 if p.is_dir() and not p.name.startswith("."))]:
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if any(p.suffix.lower() == ".safetensors" for p in files):
            continue
        found += [p for p in files if p.suffix.lower() in PICKLE_SUFFIXES
                  and p.name != "training_args.bin"]  # the Trainer's settings, never loaded
    return found
