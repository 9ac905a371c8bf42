"""The denoising timeline under the finished image: a scrubber through its kept step previews.

One row: ◀ / ▶ and a slider walk the frames (arrow keys, Home/End on the slider too); each move
says which frame it is ("Frame 12 of 31 · Step 12 of 30 · timestep 541 · σ 2.31"; the last
frame is the finished image) for the panel to show in the status line above, which has the
whole width even with the queue open; "Save as GIF/MP4…" writes the film (studio.media.timeline.save_film) off
the GUI thread, beside the image unless the user picks another place. The row is only shown
for an image that has a timeline (txt2img with Settings.timeline_frames above 0); the panel
keeps the timelines of its last few images only (:data:`KEPT`), in memory.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QToolButton,
    QWidget,
)

from studio.core.jobs import UserFacingError
from studio.core.wording import write_failure
from studio.media.timeline import default_film_path, film_path_problem
from studio.workers.lanes import Calls

if TYPE_CHECKING:
    from studio.media.timeline import Timeline, TimelineFrame

KEPT = 8  # the timelines of the last 8 images (a batch of 8) are kept, older ones are dropped
FILTERS = "GIF animation (*.gif);;MP4 video (*.mp4);;Animated PNG (*.png)"


class TimelineStore:
    """The last :data:`KEPT` timelines, by image path (the newest kept; bounded memory)."""

    def __init__(self, limit: int = KEPT) -> None:
        self.limit = limit
        self._items: OrderedDict[str, Timeline] = OrderedDict()

    def add(self, path: str | Path, timeline: Timeline) -> None:
        key = str(path)
        self._items[key] = timeline
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def get(self, path: str | Path | None) -> Timeline | None:
        return self._items.get(str(path)) if path else None

    def __len__(self) -> int:
        return len(self._items)


class TimelineScrubber(QWidget):
    """The scrubber row. ``frameChosen(frame, caption)`` (a TimelineFrame, and the sentence
    that says which) when the user moves it;
    ``saved(path)`` / ``failed(sentence)`` after "Save as GIF/MP4…"."""

    frameChosen = Signal(object, str)
    saved = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("timelineScrubber")
        self._calls = Calls(self)
        self._frames: list[TimelineFrame] = []
        self._caption = ""
        self._image_path: Path | None = None
        self.title = QLabel("Timeline")
        self.title.setProperty("muted", True)
        self.counter = QLabel()  # "12/31"
        self.counter.setProperty("muted", True)
        self.back = QToolButton()
        self.back.setText("◀")
        self.back.setToolTip("The step before (or ← on the slider)")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setMinimum(0)
        self.slider.setPageStep(5)
        self.slider.setMinimumWidth(60)
        self.slider.setToolTip("Walk through the denoising, from noise to the finished image")
        self.forward = QToolButton()
        self.forward.setText("▶")
        self.forward.setToolTip("The step after (or → on the slider)")
        self.save_button = QPushButton("Save as GIF/MP4…")
        self.save_button.setToolTip("Write the timeline as a looping film (GIF), a video (MP4) "
                                    "or an animated PNG, beside the image unless you pick "
                                    "another place")
        row = QHBoxLayout(self)
        row.setContentsMargins(2, 0, 2, 0)
        row.setSpacing(6)
        row.addWidget(self.title)
        row.addWidget(self.back)
        row.addWidget(self.slider, 2)
        row.addWidget(self.forward)
        row.addWidget(self.counter)
        row.addSpacing(6)
        row.addWidget(self.save_button)
        self.back.clicked.connect(lambda: self.slider.setValue(self.slider.value() - 1))
        self.forward.clicked.connect(lambda: self.slider.setValue(self.slider.value() + 1))
        self.slider.valueChanged.connect(self._moved)
        self.save_button.clicked.connect(self.ask_save)
        self.hide()

    # -- what it shows ---------------------------------------------------------------------------
    def set_timeline(self, timeline: Timeline | None, image_path: str | Path | None) -> None:
        """Walk ``timeline``'s frames (None hides the row); it starts at the last frame, the
        finished image, which is what the picture shows."""
        frames = list(timeline.frames) if timeline is not None else []
        self._frames = frames
        self._image_path = Path(image_path) if image_path else None
        if not frames:
            self.hide()
            return
        self.slider.blockSignals(True)
        self.slider.setMaximum(len(frames) - 1)
        self.slider.setValue(len(frames) - 1)
        self.slider.blockSignals(False)
        self._caption = ""
        self._update_caption()
        self.save_button.setEnabled(True)
        self.show()

    def clear(self) -> None:
        self.set_timeline(None, None)

    @property
    def frames(self) -> list[TimelineFrame]:
        return list(self._frames)

    @property
    def index(self) -> int:
        return self.slider.value()

    def show_frame(self, index: int) -> None:
        """Move to frame ``index`` (0-based), as the user would."""
        self.slider.setValue(index)

    def caption_text(self) -> str:
        """Which frame is shown: "Frame 2 of 5 · Step 2 of 4 · timestep 800 · σ 5"."""
        return self._caption

    @Slot(int)
    def _moved(self, index: int) -> None:
        if not self._frames:
            return
        self._update_caption()
        self.frameChosen.emit(self._frames[index], self._caption)

    def _update_caption(self) -> None:
        index = self.slider.value()
        frame = self._frames[index]
        self._caption = f"Frame {index + 1} of {len(self._frames)} · {frame.describe()}"
        self.counter.setText(f"{index + 1}/{len(self._frames)}")
        self.counter.setToolTip(self._caption)
        self.back.setEnabled(index > 0)
        self.forward.setEnabled(index < len(self._frames) - 1)

    # -- saving -------------------------------------------------------------------------------
    @Slot()
    def ask_save(self) -> None:
        """Ask where (beside the image by default), then :meth:`save_to`."""
        start = default_film_path(self._image_path) if self._image_path else Path("timeline.gif")
        target, chosen = QFileDialog.getSaveFileName(self, "Save the denoising timeline",
                                                     str(start), FILTERS)
        if not target:
            return
        path = Path(target)
        if not path.suffix:  # the filter picked says which
            path = path.with_suffix(".png" if "PNG" in chosen else ".mp4" if "MP4" in chosen
                                    else ".gif")
        self.save_to(path)

    def save_to(self, path: Path) -> None:
        """Write the film to ``path`` off the GUI thread; ``saved`` or ``failed`` follows."""
        problem = film_path_problem(Path(path))
        if problem:
            self.failed.emit(problem)
            return
        frames = list(self._frames)
        self.save_button.setEnabled(False)

        def write() -> Path:
            from studio.media.timeline import save_film

            try:
                return save_film(frames, Path(path))
            except OSError as exc:  # the disk is full, a read-only folder …: said in words
                raise UserFacingError(write_failure(exc, "the timeline",
                                                    Path(path).parent)) from exc

        self._calls.run(write, self._saved, self._failed)

    def _saved(self, path: Path) -> None:
        self.save_button.setEnabled(bool(self._frames))
        self.saved.emit(path)

    def _failed(self, sentence: str) -> None:
        self.save_button.setEnabled(bool(self._frames))
        self.failed.emit(sentence)

    def wait(self, ms: int = 10_000) -> None:
        """Wait for a film being written (the panel's shutdown, tests)."""
        self._calls.wait(ms)
