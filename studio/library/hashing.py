"""Model hashes, as A1111 writes them into image metadata ("Model hash: 0123456789").

The hash is the first 10 hex digits of the SHA-256 of the checkpoint file (A1111's "new" hash);
for a diffusers folder, of the UNet weights file. Hashing a 7 GB file takes a while, so results
are cached in ``<data_dir>/cache/hashes.json`` keyed by absolute path, size and mtime: a file that
changes is hashed again, one that does not is never re-read. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

from studio.core.config import Paths, default_paths
from studio.core.files import atomic_write_text, read_json_dict

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 2**20
_lock = threading.Lock()
_UNET_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
               "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin")


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def hashed_file(path: Path) -> Path:
    """The file whose hash stands for the model: the file itself, or a folder's UNet weights."""
    path = Path(path)
    if path.is_dir():
        for denoiser in ("unet", "transformer"):  # SD 3.5, FLUX: a transformer
            for name in _UNET_FILES:
                candidate = path / denoiser / name
                if candidate.is_file():
                    return candidate
            shards = sorted((path / denoiser).glob("*.safetensors"))
            if shards:
                return shards[0]
        raise FileNotFoundError(f"no UNet or transformer weights in {path}")
    return path


def _cache_file(paths: Paths) -> Path:
    return paths.data_dir / "cache" / "hashes.json"


def _read_cache(file: Path) -> dict[str, dict]:
    return read_json_dict(file)


def cached_sha256(path: Path, paths: Paths | None = None) -> str | None:
    """The cached SHA-256 of a model if its file has not changed since it was hashed, else None."""
    paths = paths or default_paths()
    target = hashed_file(path).resolve()
    stat = target.stat()
    with _lock:
        cached = _read_cache(_cache_file(paths)).get(str(target))
    if cached and cached.get("size") == stat.st_size and cached.get("mtime") == stat.st_mtime:
        return str(cached["sha256"])
    return None


def full_sha256(path: Path, paths: Paths | None = None) -> str:
    """The SHA-256 of a model's hashed file, from the cache when the file has not changed."""
    paths = paths or default_paths()
    cached = cached_sha256(path, paths)
    if cached is not None:
        return cached
    target = hashed_file(path).resolve()
    stat = target.stat()
    key = str(target)
    cache_file = _cache_file(paths)
    digest = sha256_file(target)
    with _lock:  # re-read so concurrent hashing of other files is not lost
        data = _read_cache(cache_file)
        data[key] = {"size": stat.st_size, "mtime": stat.st_mtime, "sha256": digest}
        try:
            atomic_write_text(cache_file, json.dumps(data, indent=1, sort_keys=True))
        except OSError as exc:
            log.warning("cannot write the hash cache %s: %s", cache_file, exc)
    return digest


def model_hash(path: Path, paths: Paths | None = None) -> str:
    """A1111's "Model hash": the first 10 hex digits of the SHA-256."""
    return full_sha256(path, paths)[:10]
