"""The workspaces the sidebar lists, in order. A later workspace appends one entry here.

A factory imports its panel module when it is called, not when this module is imported, so the
window starts without loading every panel (and whatever those panels import).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from studio.ui.context import AppContext


@dataclass(frozen=True)
class Workspace:
    """One entry of the sidebar: ``icon`` names a drawing in :mod:`studio.ui.icons`."""

    key: str
    title: str
    icon: str
    factory: Callable[[AppContext], QWidget]
    tooltip: str = ""


def _generate(ctx: AppContext) -> QWidget:
    from studio.ui.panels.generate import GeneratePanel

    return GeneratePanel(ctx)


def _gallery(ctx: AppContext) -> QWidget:
    from studio.ui.panels.gallery import GalleryPanel

    return GalleryPanel(ctx)


def _chat(ctx: AppContext) -> QWidget:
    from studio.ui.panels.chat import ChatPanel

    return ChatPanel(ctx)


def _transform(ctx: AppContext) -> QWidget:
    from studio.ui.panels.transform import TransformPanel

    return TransformPanel(ctx)


def _train(ctx: AppContext) -> QWidget:
    from studio.ui.panels.train import TrainPanel

    return TrainPanel(ctx)


def _models(ctx: AppContext) -> QWidget:
    from studio.ui.panels.models import ModelsPanel

    return ModelsPanel(ctx)


WORKSPACES: list[Workspace] = [
    Workspace("generate", "Generate", "generate", _generate, "Text to image"),
    Workspace("gallery", "Gallery", "gallery", _gallery, "Everything you made"),
    Workspace("transform", "Transform", "transform", _transform,
              "Image to image: CycleGAN styles, img2img and inpainting"),
    Workspace("chat", "Chat", "chat", _chat, "Talk to local and remote language models"),
    Workspace("train", "Train", "train", _train, "Watch optimizers, GANs, VAEs and diffusion "
              "models learn"),
    Workspace("models", "Models", "models", _models, "The model library: download, import, "
              "inspect and remove models"),
]
