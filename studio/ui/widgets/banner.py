"""A dismissable coloured strip across the top of the window, for notices the user should read
once: the app runs on the CPU, the settings file was unreadable, and so on."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.ui.icons import icon

KINDS = ("info", "warning", "error")
_ICON_ROLE = {"info": ("info", "running"), "warning": ("warning", "queued"),
              "error": ("warning", "failed")}


class Banner(QFrame):
    """One notice: an icon, a message (selectable, wraps), optional actions and a close button."""

    dismissed = Signal()

    def __init__(self, text: str, kind: str = "info", key: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if kind not in KINDS:
            raise ValueError(f"banner kind must be one of {KINDS}, not {kind!r}")
        self.key = key or text
        self.kind = kind
        self.setObjectName("Banner")
        self.setProperty("kind", kind)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)

        row = QHBoxLayout(self)
        row.setContentsMargins(14, 8, 8, 8)
        row.setSpacing(10)
        name, role = _ICON_ROLE[kind]
        badge = QLabel()
        badge.setPixmap(icon(name, role=role).pixmap(QSize(20, 20)))
        badge.setFixedSize(20, 20)
        row.addWidget(badge, 0, Qt.AlignmentFlag.AlignTop)

        self.label = QLabel(text)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.label, 1)

        self._actions = QHBoxLayout()
        self._actions.setSpacing(6)
        row.addLayout(self._actions)

        self.close_button = QToolButton()
        self.close_button.setIcon(icon("close"))
        self.close_button.setIconSize(QSize(14, 14))
        self.close_button.setProperty("flat", True)
        self.close_button.setToolTip("Dismiss")
        self.close_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.close_button.clicked.connect(self.dismiss)
        row.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)

    @property
    def text(self) -> str:
        return self.label.text()

    def add_action(self, text: str, callback: Callable[[], None],
                   dismiss: bool = True) -> QPushButton:
        """A button on the banner; by default clicking it also dismisses the banner."""
        button = QPushButton(text)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.clicked.connect(callback)
        if dismiss:
            button.clicked.connect(self.dismiss)
        self._actions.addWidget(button)
        return button

    def dismiss(self) -> None:
        self.hide()
        self.dismissed.emit()
        self.deleteLater()


class BannerArea(QWidget):
    """A column of banners, newest at the bottom; a notice with the same key replaces the old one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(0)
        self._banners: list[Banner] = []

    def show_banner(self, text: str, kind: str = "info", key: str = "") -> Banner:
        key = key or text
        self.remove(key)
        banner = Banner(text, kind, key, self)
        banner.dismissed.connect(lambda b=banner: self._forget(b))
        self._banners.append(banner)
        self._layout.addWidget(banner)
        return banner

    def remove(self, key: str) -> None:
        for banner in [b for b in self._banners if b.key == key]:
            banner.dismiss()

    def banners(self) -> list[Banner]:
        return list(self._banners)

    def _forget(self, banner: Banner) -> None:
        if banner in self._banners:
            self._banners.remove(banner)
