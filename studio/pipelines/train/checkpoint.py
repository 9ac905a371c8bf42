"""Save and load a trainer's ``state_dict()`` without pickle: tensors in safetensors, the rest JSON.

A state dict is a tree of dicts, lists and tuples whose leaves are tensors, numpy arrays, numbers,
strings, bools or None (model weights, ``torch.optim`` state, RNG states as uint8 tensors). The
tree is written as JSON in which every tensor is replaced by ``{"__tensor__": key}`` pointing into
the safetensors file; dicts with non-string keys (``torch.optim`` keys its state by parameter index)
and tuples are tagged so they come back exactly as they went in. Loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from studio.core.files import atomic_write_bytes, atomic_write_text

TENSORS_NAME = "checkpoint.safetensors"
JSON_NAME = "checkpoint.json"
_NEW = ".new-"  # ``<folder>.new-<id>``: a checkpoint being written (complete once renamed)
_OLD = ".old-"  # ``<folder>.old-<id>``: the previous checkpoint, moved aside during the swap


def _flatten(node: Any, tensors: dict[str, Any], path: str) -> Any:
    import numpy as np
    import torch

    if isinstance(node, torch.Tensor):
        key = path or "root"
        tensors[key] = node.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(node, np.ndarray):
        key = path or "root"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(node))
        return {"__ndarray__": key}
    if isinstance(node, dict):
        if all(isinstance(k, str) for k in node):
            return {"__dict__": {k: _flatten(v, tensors, f"{path}/{k}") for k, v in node.items()}}
        return {"__items__": [[k, _flatten(v, tensors, f"{path}/{i}")]
                              for i, (k, v) in enumerate(node.items())]}
    if isinstance(node, tuple):
        return {"__tuple__": [_flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(node)]}
    if isinstance(node, list):
        return [_flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(node)]
    if isinstance(node, (np.integer, np.floating, np.bool_)):
        return node.item()
    if node is None or isinstance(node, (str, int, float, bool)):
        return node
    raise TypeError(f"cannot store a {type(node).__name__} in a checkpoint")


def _unflatten(node: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_unflatten(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        return tensors[node["__tensor__"]]
    if "__ndarray__" in node:
        return tensors[node["__ndarray__"]].numpy().copy()
    if "__dict__" in node:
        return {k: _unflatten(v, tensors) for k, v in node["__dict__"].items()}
    if "__items__" in node:
        return {k: _unflatten(v, tensors) for k, v in node["__items__"]}
    if "__tuple__" in node:
        return tuple(_unflatten(v, tensors) for v in node["__tuple__"])
    raise ValueError(f"unknown checkpoint node {sorted(node)}")


def save_state(state: dict[str, Any], tensors_path: Path, json_path: Path,
               extra: dict[str, Any] | None = None) -> None:
    """Write ``state`` as ``tensors_path`` (safetensors) + ``json_path``, each atomically.

    Both carry the same random token and the JSON is written last, so a crash between the two
    writes is detected on load (the tokens differ) instead of mixing two checkpoints.
    """
    from safetensors.torch import save

    tensors: dict[str, Any] = {}
    tree = _flatten(state, tensors, "")
    token = uuid.uuid4().hex
    atomic_write_bytes(tensors_path, save(tensors, metadata={"token": token}))
    doc = {"format": "studio-train-checkpoint/1", "tensors": tensors_path.name, "token": token,
           "tensor_keys": sorted(tensors), "state": tree, **(extra or {})}
    atomic_write_text(json_path, json.dumps(doc, indent=1))


def load_state(json_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_state`: (state, the JSON document's other keys)."""
    from safetensors import SafetensorError, safe_open

    doc = json.loads(Path(json_path).read_text(encoding="utf-8"))
    if doc.get("format") != "studio-train-checkpoint/1":
        raise ValueError(f"{json_path} is not a Studio training checkpoint")
    tensors_path = Path(json_path).parent / doc["tensors"]
    try:
        opened = safe_open(str(tensors_path), framework="pt")
    except (SafetensorError, OSError) as exc:
        raise _not_a_checkpoint(tensors_path) from exc
    with opened as fh:
        if (fh.metadata() or {}).get("token") != doc.get("token"):
            raise ValueError("the checkpoint is incomplete (it was being written when the "
                             "program stopped); start the run again from its beginning")
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    missing = set(doc["tensor_keys"]) - set(tensors)
    if missing:
        raise ValueError(f"the checkpoint is incomplete: {len(missing)} tensors are missing")
    state = _unflatten(doc.pop("state"), tensors)
    for key in ("format", "tensors", "tensor_keys", "token"):
        doc.pop(key, None)
    return state, doc


def _not_a_checkpoint(path: Path) -> Exception:
    """Why a run's tensors file cannot be read; a pickle put in its place is named as such."""
    from studio.core.jobs import UserFacingError

    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError as exc:
        return UserFacingError(f"The run's checkpoint {path} cannot be read ({exc.strerror or exc})"
                               "; start the run again from its beginning.")
    if head[:1] == b"\x80" or head == b"PK":  # a pickle, or torch.save's zip of one
        return UserFacingError(
            f"The run's checkpoint {path.name} was refused for safety: it was replaced by a Python "
            "pickle, which could run arbitrary code when loaded, and Studio never unpickles "
            "checkpoints. It was not loaded; start the run again from its beginning.")
    return UserFacingError(f"The run's checkpoint {path.name} is damaged (not a safetensors "
                           "file); start the run again from its beginning.")


# -- a checkpoint folder swapped in whole ---------------------------------------------------------
# Replacing the two files one after the other loses the previous checkpoint if the program dies in
# between (the tensors are new, the JSON old: neither loads). So a checkpoint is a folder,
# ``<folder>/checkpoint.safetensors`` + ``checkpoint.json``, written complete and fsynced beside
# the live one as ``<folder>.new-<id>``, then swapped in by two renames (old aside, new in). A
# SIGKILL at any point leaves at least one complete folder, which :func:`settle_folder` puts back
# in place and whose leftovers it removes.


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows; rename is durable
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _siblings(folder: Path, marker: str) -> list[Path]:
    try:
        names = os.listdir(folder.parent)
    except OSError:
        return []
    return sorted(folder.parent / n for n in names if n.startswith(folder.name + marker))


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds both files of one checkpoint (same token), without loading it."""
    from safetensors import SafetensorError, safe_open

    try:
        doc = json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))
        token = doc["token"]
        with safe_open(str(folder / str(doc["tensors"])), framework="pt") as fh:
            return token is not None and (fh.metadata() or {}).get("token") == token
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return False


def has_folder(folder: Path) -> bool:
    """Whether a checkpoint exists at ``folder`` or can be recovered from an interrupted swap."""
    return ((folder / JSON_NAME).is_file()
            or any((p / JSON_NAME).is_file() for p in _siblings(folder, _NEW) + _siblings(folder, _OLD)))


def settle_folder(folder: Path) -> None:
    """Finish or undo a swap a crash interrupted, then remove every leftover beside ``folder``.

    The live folder wins when it is complete; otherwise a complete new one (the swap got as far
    as moving the old aside), else the old one. Only the process that owns the run calls this.
    """
    folder = Path(folder)
    news, olds = _siblings(folder, _NEW), _siblings(folder, _OLD)
    if not news and not olds:
        return
    if not is_complete(folder):
        for candidate in [*news, *olds]:
            if is_complete(candidate):
                if folder.exists():
                    shutil.rmtree(folder, ignore_errors=True)
                os.replace(candidate, folder)
                _fsync_dir(folder.parent)
                break
    for leftover in _siblings(folder, _NEW) + _siblings(folder, _OLD):
        shutil.rmtree(leftover, ignore_errors=True)


def save_folder(state: dict[str, Any], folder: Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``state`` as the checkpoint folder ``folder``, replacing the previous one atomically."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    settle_folder(folder)
    tag = uuid.uuid4().hex[:12]
    new, old = folder.with_name(folder.name + _NEW + tag), folder.with_name(folder.name + _OLD + tag)
    new.mkdir()
    try:
        save_state(state, new / TENSORS_NAME, new / JSON_NAME, extra)
        _fsync_dir(new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    moved = False
    if folder.exists():
        os.replace(folder, old)
        moved = True
    os.replace(new, folder)
    _fsync_dir(folder.parent)
    if moved:
        shutil.rmtree(old, ignore_errors=True)


def load_folder(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the checkpoint folder ``folder`` (after settling an interrupted swap)."""
    settle_folder(Path(folder))
    return load_state(Path(folder) / JSON_NAME)
