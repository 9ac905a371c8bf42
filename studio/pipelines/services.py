"""The one registry of job kinds: which request runs on which service, on which lane.

The window (``studio.app``), every command (``studio.cli``), ``studio serve`` and the self-test
call :func:`build_engine`; nothing else wires handlers. Adding a kind of job is one
:class:`~studio.core.engine.ServiceSpec` here, a request dataclass and a service with ``run``
(GPU lane) or ``arun`` (I/O lane). The imports inside the builders run on the lane the first
time a job needs the service: torch and diffusers never load at start-up. No Qt here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from studio.core.config import Paths, Settings
from studio.core.engine import GPU, IO, Engine, ServiceSpec
from studio.core.gallery_requests import GalleryIndexRequest, GallerySearchRequest
from studio.core.jobs import Handler, JobListener
from studio.core.lanes import LoopSource
from studio.core.requests import (
    GanWalkRequest,
    Img2ImgRequest,
    TransformRequest,
    Txt2ImgRequest,
    UnloadRequest,
    UpscaleRequest,
)
from studio.core.shrink_requests import ImageShrinkRequest, ShrinkRequest
from studio.library.download_jobs import FileDownloadRequest, HubDownloadRequest
from studio.pipelines.chat.remote import is_remote_spec
from studio.pipelines.chat.types import AttentionRequest, ChatRequest, EmbedRequest

if TYPE_CHECKING:
    from studio.library.download_jobs import DownloadService
    from studio.pipelines.chat.service import AttentionService, ChatService, EmbedService
    from studio.pipelines.chat.shrink import ShrinkService
    from studio.pipelines.cyclegan.service import TransformService
    from studio.pipelines.diffusion.img2img import Img2ImgService
    from studio.pipelines.diffusion.shrink import ImageShrinkService
    from studio.pipelines.diffusion.txt2img import Txt2ImgService
    from studio.pipelines.gallery_clip import GalleryClipService
    from studio.pipelines.gan.service import GanWalkService
    from studio.pipelines.model_cache import UnloadService
    from studio.pipelines.upscale.service import UpscaleService


def _txt2img(engine: Engine) -> Txt2ImgService:
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    # The hires fix borrows the upscale service's loaded models (one cache for both).
    return Txt2ImgService(engine.settings, engine.paths,
                          upscalers=lambda: engine.service("upscale"))


def _img2img(engine: Engine) -> Img2ImgService:
    from studio.pipelines.diffusion.img2img import Img2ImgService

    # One model cache for Generate and Transform: a model loaded by either serves both.
    return Img2ImgService(engine.settings, engine.paths, engine.service("txt2img").cache,
                          upscalers=lambda: engine.service("upscale"))  # SD upscale's models


def _transform(engine: Engine) -> TransformService:
    from studio.pipelines.cyclegan.service import TransformService

    return TransformService(engine.settings, engine.paths)


def _upscale(engine: Engine) -> UpscaleService:
    from studio.pipelines.upscale.service import UpscaleService

    return UpscaleService(engine.settings, engine.paths)


def _gan_walk(engine: Engine) -> GanWalkService:
    from studio.pipelines.gan.service import GanWalkService

    return GanWalkService(engine.settings, engine.paths)


def _chat(engine: Engine) -> ChatService:
    from studio.pipelines.chat.service import ChatService

    return ChatService(engine.settings, engine.paths)


def _embed(engine: Engine) -> EmbedService:
    from studio.pipelines.chat.service import EmbedService

    return EmbedService(engine.service("chat"))


def _attention(engine: Engine) -> AttentionService:
    from studio.pipelines.chat.service import AttentionService

    return AttentionService(engine.service("chat"))


def _gallery_index(engine: Engine) -> GalleryClipService:
    from studio.pipelines.gallery_clip import GalleryClipService

    return GalleryClipService(engine.settings, engine.paths)


def _gallery_search(engine: Engine) -> GalleryClipService:
    return engine.service("gallery-index")  # one loaded CLIP model for indexing and searching


def _shrink(engine: Engine) -> ShrinkService:
    from studio.pipelines.chat.shrink import ShrinkService

    return ShrinkService(engine.settings, engine.paths)


def _image_shrink(engine: Engine) -> ImageShrinkService:
    from studio.pipelines.diffusion.shrink import ImageShrinkService

    return ImageShrinkService(engine.settings, engine.paths)


def _unload(engine: Engine) -> UnloadService:
    from studio.pipelines.model_cache import UnloadService

    return UnloadService()


def _downloads(engine: Engine) -> DownloadService:
    from studio.library.download_jobs import DownloadService

    return DownloadService(engine.paths)


def _chat_lane(request: ChatRequest) -> str:
    # A remote server's reply only waits: it must never queue behind an image on the GPU.
    return IO if is_remote_spec(request.model) else GPU


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("txt2img", Txt2ImgRequest, _txt2img, "Loading the image engine…"),
    ServiceSpec("img2img", Img2ImgRequest, _img2img, "Loading the image engine…"),
    ServiceSpec("transform", TransformRequest, _transform, "Loading the translation engine…"),
    ServiceSpec("upscale", UpscaleRequest, _upscale, "Loading the upscaler…"),
    ServiceSpec("gan-walk", GanWalkRequest, _gan_walk, "Loading the GAN…"),
    ServiceSpec("chat", ChatRequest, _chat, "Starting the chat engine…", lane=_chat_lane),
    ServiceSpec("embed", EmbedRequest, _embed, "Starting the chat engine…"),
    ServiceSpec("attention", AttentionRequest, _attention, "Starting the chat engine…"),
    ServiceSpec("gallery-index", GalleryIndexRequest, _gallery_index, "Loading the image search…"),
    ServiceSpec("gallery-search", GallerySearchRequest, _gallery_search,
                "Loading the image search…"),
    ServiceSpec("shrink", ShrinkRequest, _shrink, "Loading the model to make smaller…"),
    ServiceSpec("image-shrink", ImageShrinkRequest, _image_shrink,
                "Loading the image model to make smaller…"),
    ServiceSpec("unload", UnloadRequest, _unload, "Unloading all models…"),
    ServiceSpec("download", HubDownloadRequest, _downloads, "Starting the download…", lane=IO),
    ServiceSpec("file-download", FileDownloadRequest, _downloads, "Starting the download…",
                lane=IO),
)


def build_engine(settings: Callable[[], Settings], paths: Callable[[], Paths], *,
                 io_loop: LoopSource = None,
                 handlers: dict[str, Handler] | None = None,
                 listener: JobListener | None = None, name: str = "studio") -> Engine:
    """The engine over every service (``handlers`` replaces some kinds' services: tests)."""
    return Engine(SERVICES, settings, paths, io_loop=io_loop, handlers=handlers,
                  listener=listener, name=name)
