"""Job handlers that build their service on the worker thread, the first time a job needs it.

A service (and the model cache it owns) is created once and reused, so a model stays loaded
between jobs; importing a service module imports torch and diffusers/transformers, which must not
happen at start-up (DESIGN rule 7). The GUI, the CLI and ``studio serve`` register these with
their :class:`~studio.core.jobs.JobRunner`. No Qt here.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from studio.core.config import Paths, Settings
from studio.core.jobs import CancelToken, ProgressSink


class LazyServiceHandler:
    """A handler ``(request, progress, cancel) -> result`` backed by ``module:Class``.

    ``Class(settings_getter, paths_getter)`` is built on first use; its ``run`` does the work.
    """

    def __init__(self, service_path: str, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths], loading_message: str = "Starting…") -> None:
        self._service_path = service_path
        self._settings_getter = settings_getter
        self._paths_getter = paths_getter
        self._loading_message = loading_message
        self._lock = threading.Lock()
        self.service: Any = None

    def get_service(self) -> Any:
        """The service, built now if needed (call on the worker thread)."""
        with self._lock:
            if self.service is None:
                module, _, name = self._service_path.partition(":")
                cls = getattr(importlib.import_module(module), name)
                self.service = cls(self._settings_getter, self._paths_getter)
        return self.service

    def __call__(self, request: Any, progress: ProgressSink, cancel: CancelToken) -> Any:
        if self.service is None:
            progress.message(self._loading_message)
        return self.get_service().run(request, progress, cancel)


def chat_handler(settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths]) -> LazyServiceHandler:
    """The ``chat`` job handler (:class:`studio.pipelines.chat.service.ChatService`)."""
    return LazyServiceHandler("studio.pipelines.chat.service:ChatService", settings_getter,
                              paths_getter, "Starting the chat engine…")


def unload_handler(request: Any, progress: ProgressSink, cancel: CancelToken) -> int:
    """The ``unload`` job (an :class:`~studio.pipelines.requests.UnloadRequest`): free every model
    the worker's caches and the TAESD previewer hold; the result is the number of bytes freed.
    Queued like any job, so it never pulls a model from under a running generation."""
    from studio.pipelines.model_cache import unload_all_models

    progress.message("Unloading all models…")
    return unload_all_models()
