"""Job handlers of the Transform workspace (``transform``: CycleGAN; ``img2img``: diffusion).

Both build their service lazily on the worker thread (nothing heavy at start-up). The img2img
service is given the txt2img service's :class:`~studio.pipelines.model_cache.ModelCache`, so the app
keeps one Stable Diffusion model in memory and Generate and Transform share it. No Qt here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from studio.core.config import Paths, Settings
from studio.pipelines.handlers import LazyServiceHandler


class Img2ImgHandler(LazyServiceHandler):
    """The ``img2img`` handler; its service shares ``txt2img``'s model cache."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths], txt2img: LazyServiceHandler) -> None:
        super().__init__("studio.pipelines.diffusion.img2img:Img2ImgService", settings_getter,
                         paths_getter, "Loading the image engine…")
        self._txt2img = txt2img

    def get_service(self) -> Any:
        with self._lock:
            if self.service is None:
                from studio.pipelines.diffusion.img2img import Img2ImgService

                cache = self._txt2img.get_service().cache
                self.service = Img2ImgService(self._settings_getter, self._paths_getter, cache)
        return self.service


def transform_handler(settings_getter: Callable[[], Settings],
                      paths_getter: Callable[[], Paths]) -> LazyServiceHandler:
    """The ``transform`` (CycleGAN) handler."""
    return LazyServiceHandler("studio.pipelines.cyclegan.service:TransformService", settings_getter,
                              paths_getter, "Loading the translation engine…")
