"""The GPU worker's model cache: one loaded pipeline, switched deliberately, freed on request.

Only the GPU worker thread touches it (DESIGN rule 5). Keeping a single pipeline bounds memory:
switching models frees the old one (and the CUDA allocator's cached blocks) before the new one is
loaded, so two SDXL models never sit in VRAM together.

Every cache registers itself in a module-level weak set, so the model library can ask
:func:`loaded_model_paths` which models are in memory (a loaded model must not be deleted) without
the window having to pass its caches around; a cache that is garbage-collected drops out by itself.
Handing out a model also records its use for the library's "last used" column.
"""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.config import Paths
from studio.library.models import ModelEntry

log = logging.getLogger(__name__)

CacheKey = tuple[str, str, str]
_caches: weakref.WeakSet[ModelCache] = weakref.WeakSet()


def cache_key(entry: ModelEntry, device: str, dtype: Any) -> CacheKey:
    return (str(entry.path.resolve()), device, str(dtype))


class ModelCache:
    """Loads a pipeline once per (path, device, dtype) and keeps the most recent one."""

    def __init__(self, loader: Callable[..., Any] | None = None) -> None:
        self._loader = loader
        self._key: CacheKey | None = None
        self._pipe: Any = None
        self.loads = 0  # how many times a model was actually read from disk (for tests / status)
        _caches.add(self)

    def get(self, entry: ModelEntry, device: str, dtype: Any, paths: Paths | None = None) -> Any:
        """The pipeline for ``entry``, loading it (and unloading the previous one) if needed.

        ``paths`` is passed on to the loader (single files materialise their configs there)."""
        key = cache_key(entry, device, dtype)
        _record_use(entry)
        if key == self._key and self._pipe is not None:
            return self._pipe
        self.unload_all()
        loader = self._loader
        if loader is None:
            from studio.pipelines.loading import load_txt2img_pipeline

            loader = load_txt2img_pipeline
        self._pipe = loader(entry, device, dtype, **({"paths": paths} if paths else {}))
        self._key = key
        self.loads += 1
        return self._pipe

    def unload_all(self) -> None:
        """Free the loaded pipeline and give its memory back."""
        if self._pipe is None:
            return
        log.info("unloading %s", self._key)
        self._pipe = None
        self._key = None
        gc.collect()
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def current(self) -> Any:
        """The loaded pipeline, or None."""
        return self._pipe

    def loaded_keys(self) -> list[CacheKey]:
        return [self._key] if self._key is not None else []


def _record_use(entry: Any) -> None:
    from studio.library.usage import record_use

    try:
        record_use(Path(entry.path))
    except Exception:  # noqa: BLE001 - bookkeeping must never fail a job
        log.exception("could not record the use of %s", getattr(entry, "path", entry))


def loaded_model_paths() -> set[Path]:
    """Resolved paths of the models loaded in any live :class:`ModelCache` of this process."""
    return {Path(key[0]) for cache in list(_caches) for key in cache.loaded_keys()}
