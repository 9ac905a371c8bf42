"""The contract between the Train workspace and a lesson's view."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QWidget

from studio.ui.theme import colors

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage


class LessonView(QWidget):
    """Draws one lesson's snapshots; may offer lesson-specific controls.

    The workspace calls :meth:`show_snapshot` on the GUI thread with the dict the trainer's
    ``snapshot()`` returned (throttled to the frame rate) and :meth:`reset` when a run starts over.
    A view never touches the trainer: it asks the workspace through its signals.
    """

    #: change a live knob: (name, value)
    setParamRequested = Signal(str, object)
    #: start over with these config overrides (e.g. a dataset the user drew)
    resetRequested = Signal(dict)
    #: run only one part of a step, one of the trainer's ``step_parts`` (e.g. "D")
    stepPartRequested = Signal(str)
    #: the lesson wrote a model into the library (its path): the pickers scan again
    modelWritten = Signal(str)

    #: the view has its own buttons for the trainer's ``step_parts`` (the control bar then shows
    #: none: two sets of "Step D"/"Step G" would crowd the bar until its buttons are clipped)
    offers_step_parts = False

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lesson_key = lesson_key
        self._theme = colors().name  # a view takes its colours from the theme it is built in

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        from studio.ui.panels.train.plotting import theme_changed

        if theme_changed(self, event):
            self.apply_theme()

    def apply_theme(self) -> None:
        """Repaint in the current theme (:func:`studio.ui.theme.colors`): called when the theme
        changes while the view is on screen. A view that takes colours from the theme when it
        is built sets them here too (and calls this from ``__init__``), so both paths agree."""

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """A new run started: forget history (sample grids, trails)."""

    def export_items(self) -> dict[str, QWidget]:
        """Named plots the user can export as PNG ("Loss", "Samples", …)."""
        return {}

    def export_frames(self) -> list[PILImage]:
        """How the picture evolved during training, as PIL images for an animated GIF (oldest
        first); empty when the view keeps no history."""
        return []
