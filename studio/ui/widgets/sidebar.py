"""The workspace rail on the left of the window: one icon-over-label button per workspace, plus
the queue and settings buttons at the bottom."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath
from PySide6.QtWidgets import QButtonGroup, QFrame, QToolButton, QVBoxLayout, QWidget

from studio.ui.icons import DRAWINGS, icon, paint_drawing
from studio.ui.theme import colors

RAIL_WIDTH = 76
RAIL_MARGIN = 6  # left and right, around the logo and the buttons


class _Logo(QWidget):
    """The app mark: an accent tile with a sparkle."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedSize(RAIL_WIDTH - 2 * RAIL_MARGIN, 58)  # inside the rail's margins
        self.setToolTip("Studio")

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        tile = QRectF((self.width() - 36) / 2, 14, 36, 36)
        path = QPainterPath()
        path.addRoundedRect(tile, 10, 10)
        p.fillPath(path, QColor(colors().accent))
        paint_drawing(p, tile.adjusted(7, 7, -7, -7), DRAWINGS["generate"](),
                      QColor(colors().accent_text))
        p.end()


class Sidebar(QFrame):
    """Emits ``workspaceChosen(key)``; ``queueToggled`` and ``settingsRequested`` for the rest."""

    workspaceChosen = Signal(str)
    queueToggled = Signal()
    settingsRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Sidebar")
        self.setFixedWidth(RAIL_WIDTH)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(RAIL_MARGIN, 0, RAIL_MARGIN, 10)
        self._layout.setSpacing(4)
        self._layout.addWidget(_Logo(self), 0, Qt.AlignmentFlag.AlignHCenter)
        self._layout.addSpacing(8)
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        self.buttons: dict[str, QToolButton] = {}
        self._end_of_workspaces = self._layout.count()
        self._layout.addStretch(1)

        self.queue_button = self._make_button("Queue", "queue", checkable=True)
        self.queue_button.setToolTip("Job queue (Ctrl+J)")
        self.queue_button.clicked.connect(self.queueToggled)
        self._layout.addWidget(self.queue_button)
        self.settings_button = self._make_button("Settings", "settings", checkable=False)
        self.settings_button.setToolTip("Settings (Ctrl+,)")
        self.settings_button.clicked.connect(self.settingsRequested)
        self._layout.addWidget(self.settings_button)

    def _make_button(self, title: str, icon_name: str, checkable: bool,
                     object_name: str = "RailButton") -> QToolButton:
        button = QToolButton(self)
        button.setObjectName(object_name)
        button.setText(title)
        button.setIcon(icon(icon_name))
        button.setIconSize(QSize(24, 24))
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        button.setCheckable(checkable)
        button.setFixedSize(RAIL_WIDTH - 12, 58)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        return button

    def add_workspace(self, key: str, title: str, icon_name: str, shortcut_hint: str = "",
                      tooltip: str = "") -> QToolButton:
        button = self._make_button(title, icon_name, checkable=True,
                                   object_name="WorkspaceButton")
        tip = tooltip or title
        button.setToolTip(f"{tip} ({shortcut_hint})" if shortcut_hint else tip)
        button.clicked.connect(lambda _=False, k=key: self.workspaceChosen.emit(k))
        self._group.addButton(button)
        self._layout.insertWidget(self._end_of_workspaces, button)
        self._end_of_workspaces += 1
        self.buttons[key] = button
        return button

    def set_current(self, key: str) -> None:
        if key in self.buttons:
            self.buttons[key].setChecked(True)

    def current(self) -> str:
        return next((k for k, b in self.buttons.items() if b.isChecked()), "")
