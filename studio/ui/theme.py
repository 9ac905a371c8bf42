"""Dark (default) and light themes: a QPalette for the Fusion style plus a modest style sheet.

Widgets that need a theme colour outside the style sheet (the job state colours, the vector
icons) read :func:`colors`, which always answers for the theme applied last.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import QPointF, Qt, QTemporaryDir
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPalette, QPen
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class ThemeColors:
    """The handful of colours every widget of the window is painted with."""

    name: str
    window: str  # behind the panels
    sidebar: str  # the workspace rail and the status bar
    surface: str  # cards, docks, dialogs
    raised: str  # inputs, buttons
    border: str
    text: str
    muted: str  # secondary text, idle icons
    accent: str
    accent_hover: str
    accent_text: str  # text on an accent background
    queued: str
    running: str
    done: str
    failed: str
    cancelled: str
    info_bg: str
    warning_bg: str
    error_bg: str

    def state(self, state: str) -> str:
        """The colour of a job state name (queued / running / done / failed / cancelled)."""
        return getattr(self, state, self.muted)


DARK = ThemeColors(
    name="dark", window="#17181d", sidebar="#111216", surface="#1e2027", raised="#272a33",
    border="#323644", text="#e7e8ee", muted="#959bab", accent="#7c6cff",
    accent_hover="#8f82ff", accent_text="#ffffff", queued="#d9a441", running="#5aa2ff",
    done="#46c28e", failed="#f2676a", cancelled="#8a90a0", info_bg="#263154",
    warning_bg="#4a3a17", error_bg="#4d2326",
)

LIGHT = ThemeColors(
    name="light", window="#f4f5f8", sidebar="#e9ebf0", surface="#ffffff", raised="#ffffff",
    border="#d3d7e0", text="#1c1e24", muted="#5c6272", accent="#5b4be0",
    accent_hover="#6d5ef0", accent_text="#ffffff", queued="#a86f00", running="#1f6fd6",
    done="#17885a", failed="#c9343a", cancelled="#6d7383", info_bg="#dde6ff",
    warning_bg="#fbeccb", error_bg="#fbd9da",
)

THEMES: dict[str, ThemeColors] = {"dark": DARK, "light": LIGHT}
_current: ThemeColors = DARK


def colors() -> ThemeColors:
    """The colours of the theme applied last (dark before any is applied)."""
    return _current


def _palette(c: ThemeColors) -> QPalette:
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: c.window,
        QPalette.ColorRole.WindowText: c.text,
        QPalette.ColorRole.Base: c.raised,
        QPalette.ColorRole.AlternateBase: c.surface,
        QPalette.ColorRole.ToolTipBase: c.surface,
        QPalette.ColorRole.ToolTipText: c.text,
        QPalette.ColorRole.PlaceholderText: c.muted,
        QPalette.ColorRole.Text: c.text,
        QPalette.ColorRole.Button: c.raised,
        QPalette.ColorRole.ButtonText: c.text,
        QPalette.ColorRole.BrightText: c.failed,
        QPalette.ColorRole.Highlight: c.accent,
        QPalette.ColorRole.HighlightedText: c.accent_text,
        QPalette.ColorRole.Link: c.accent_hover,
        QPalette.ColorRole.Light: c.border,
        QPalette.ColorRole.Midlight: c.border,
        QPalette.ColorRole.Mid: c.border,
        QPalette.ColorRole.Dark: c.sidebar,
        QPalette.ColorRole.Shadow: "#000000",
    }
    for role, value in roles.items():
        pal.setColor(role, QColor(value))
    disabled = QColor(c.muted)
    disabled.setAlpha(150)
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text,
                 QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return pal


def style_sheet(c: ThemeColors) -> str:
    """The application style sheet for a theme. Object names and properties it styles:

    ``#Sidebar``, ``#WorkspaceButton``, ``#Card``, ``[accent="true"]`` buttons,
    ``[muted="true"]`` labels, ``[heading="true"]`` labels, ``#Banner[kind=...]``,
    ``[buttonless="true"]`` spin boxes (see ``input_policy.hide_spin_buttons``). Dialog button
    boxes show no icons: the platform's stock icons do not match the app's own.
    """
    arrows = _arrow_images(c)
    return f"""
QWidget {{ color: {c.text}; }}
QMainWindow, QDialog {{ background: {c.window}; }}
QToolTip {{ background: {c.surface}; color: {c.text}; border: 1px solid {c.border};
    padding: 4px 6px; }}
QLabel[muted="true"] {{ color: {c.muted}; }}
QLabel[heading="true"] {{ font-size: 15px; font-weight: 600; }}
QLabel[section="true"] {{ color: {c.muted}; font-size: 11px; font-weight: 600;
    letter-spacing: 1px; }}

#Sidebar {{ background: {c.sidebar}; border-right: 1px solid {c.border}; }}
#WorkspaceButton {{ background: transparent; border: none; border-radius: 10px;
    color: {c.muted}; font-size: 11px; padding: 6px 2px 4px 2px; }}
#WorkspaceButton:hover {{ background: {c.raised}; color: {c.text}; }}
#WorkspaceButton:checked {{ background: {_alpha(c.accent, 0.20)}; color: {c.text}; }}
#RailButton {{ background: transparent; border: none; border-radius: 10px;
    color: {c.muted}; font-size: 11px; padding: 6px 2px 4px 2px; }}
#RailButton:hover {{ background: {c.raised}; color: {c.text}; }}
#RailButton:checked {{ color: {c.accent}; }}

QPushButton, QToolButton {{ background: {c.raised}; border: 1px solid {c.border};
    border-radius: 7px; padding: 5px 12px; }}
QPushButton:hover, QToolButton:hover {{ border-color: {c.accent}; }}
QPushButton:pressed {{ background: {c.surface}; }}
QPushButton:disabled, QToolButton:disabled {{ color: {c.muted}; border-color: {c.border};
    background: {c.surface}; }}
QPushButton[accent="true"] {{ background: {c.accent}; color: {c.accent_text};
    border: 1px solid {c.accent}; font-weight: 600; }}
QPushButton[accent="true"]:hover {{ background: {c.accent_hover}; }}
QPushButton[accent="true"]:disabled {{ background: {c.surface}; color: {c.muted};
    border-color: {c.border}; }}
QPushButton[flat="true"], QToolButton[flat="true"] {{ background: transparent;
    border: none; padding: 2px 6px; }}
QPushButton[flat="true"]:hover, QToolButton[flat="true"]:hover {{ background: {c.raised}; }}
QToolButton[chevron="true"] {{ padding-right: 26px; }}
QToolButton[chevron="true"]::menu-indicator {{ image: url("{arrows['down']}");
    subcontrol-origin: padding; subcontrol-position: center right; right: 8px; width: 10px;
    height: 10px; }}
QPushButton#QueueButton {{ color: {c.muted}; }}
QPushButton#QueueButton:hover {{ color: {c.text}; }}

QLineEdit, QSpinBox, QDoubleSpinBox, QComboBox, QPlainTextEdit, QTextEdit, QListWidget {{
    background: {c.raised}; border: 1px solid {c.border}; border-radius: 7px;
    padding: 5px 8px; selection-background-color: {c.accent};
    selection-color: {c.accent_text}; }}
QLineEdit:focus, QSpinBox:focus, QDoubleSpinBox:focus, QComboBox:focus,
QPlainTextEdit:focus, QTextEdit:focus {{ border-color: {c.accent}; }}
QLineEdit:disabled, QSpinBox:disabled, QDoubleSpinBox:disabled, QComboBox:disabled {{
    color: {c.muted}; background: {c.surface}; }}
QComboBox::drop-down {{ border: none; width: 24px; }}
QComboBox::down-arrow {{ image: url("{arrows['down']}"); width: 10px; height: 10px; }}
QSpinBox, QDoubleSpinBox {{ padding-right: 22px; }}
QSpinBox::up-button, QDoubleSpinBox::up-button {{ subcontrol-origin: border;
    subcontrol-position: top right; width: 20px; border: none; background: transparent; }}
QSpinBox::down-button, QDoubleSpinBox::down-button {{ subcontrol-origin: border;
    subcontrol-position: bottom right; width: 20px; border: none; background: transparent; }}
QSpinBox::up-arrow, QDoubleSpinBox::up-arrow {{ image: url("{arrows['up']}"); width: 8px;
    height: 8px; }}
QSpinBox::down-arrow, QDoubleSpinBox::down-arrow {{ image: url("{arrows['down']}"); width: 8px;
    height: 8px; }}
QSpinBox::up-button:hover, QSpinBox::down-button:hover, QDoubleSpinBox::up-button:hover,
QDoubleSpinBox::down-button:hover {{ background: {c.border}; border-radius: 4px; }}
QAbstractSpinBox[buttonless="true"] {{ padding-right: 8px; }}
QAbstractSpinBox[buttonless="true"]::up-button,
QAbstractSpinBox[buttonless="true"]::down-button {{ width: 0px; border: none; }}
QAbstractSpinBox[buttonless="true"]::up-arrow,
QAbstractSpinBox[buttonless="true"]::down-arrow {{ image: none; width: 0px; height: 0px; }}
QComboBox QAbstractItemView {{ background: {c.surface}; border: 1px solid {c.border};
    selection-background-color: {_alpha(c.accent, 0.35)}; }}
QListWidget::item {{ padding: 4px 2px; }}
QListWidget::item:selected {{ background: {_alpha(c.accent, 0.30)}; color: {c.text}; }}

QDialogButtonBox {{ dialogbuttonbox-buttons-have-icons: 0; }}

QProgressBar {{ background: {c.border}; border: none; border-radius: 3px; max-height: 6px; }}
QProgressBar::chunk {{ background: {c.accent}; border-radius: 3px; }}

#Card {{ background: {c.surface}; border: 1px solid {c.border}; border-radius: 10px; }}
QDockWidget {{ color: {c.text}; }}
#DrawerTitle {{ background: {c.surface}; border-bottom: 1px solid {c.border}; }}
#DrawerBody {{ background: {c.window}; }}
QScrollArea {{ border: none; background: transparent; }}
QStatusBar {{ background: {c.sidebar}; border-top: 1px solid {c.border}; color: {c.muted}; }}
QStatusBar::item {{ border: none; }}
QStatusBar QLabel {{ color: {c.muted}; padding: 0 6px; }}

#Banner {{ border-bottom: 1px solid {c.border}; }}
#Banner[kind="info"] {{ background: {c.info_bg}; }}
#Banner[kind="warning"] {{ background: {c.warning_bg}; }}
#Banner[kind="error"] {{ background: {c.error_bg}; }}
#Banner QLabel {{ background: transparent; }}

QScrollBar:vertical {{ background: transparent; width: 10px; margin: 2px; }}
QScrollBar::handle:vertical {{ background: {c.border}; border-radius: 3px; min-height: 24px; }}
QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 2px; }}
QScrollBar::handle:horizontal {{ background: {c.border}; border-radius: 3px; min-width: 24px; }}
QScrollBar::add-line, QScrollBar::sub-line {{ width: 0; height: 0; }}
QScrollBar::add-page, QScrollBar::sub-page {{ background: none; }}
QGroupBox {{ border: 1px solid {c.border}; border-radius: 10px; margin-top: 14px;
    padding: 12px 10px 8px 10px; background: {c.surface}; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 12px; padding: 0 4px;
    color: {c.muted}; font-weight: 600; }}
QTabWidget::pane {{ border: 1px solid {c.border}; border-radius: 8px; }}
QTabBar::tab {{ background: transparent; padding: 6px 12px; color: {c.muted}; }}
QTabBar::tab:selected {{ color: {c.text}; border-bottom: 2px solid {c.accent}; }}
"""


_arrow_dir: QTemporaryDir | None = None


def _arrow_images(c: ThemeColors) -> dict[str, str]:
    """Chevrons for combo boxes and spin boxes, drawn now: a style sheet can only name files."""
    global _arrow_dir
    if _arrow_dir is None:
        _arrow_dir = QTemporaryDir()
    out = {}
    for name, points in (("down", [(2, 5), (8, 11), (14, 5)]), ("up", [(2, 11), (8, 5), (14, 11)])):
        path = f"{_arrow_dir.path()}/{name}-{c.muted.lstrip('#')}.png"
        if not os.path.exists(path):
            image = QImage(16, 16, QImage.Format.Format_ARGB32_Premultiplied)
            image.fill(Qt.GlobalColor.transparent)
            p = QPainter(image)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            p.setPen(QPen(QColor(c.muted), 2.0, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                          Qt.PenJoinStyle.RoundJoin))
            p.drawPolyline([QPointF(x, y) for x, y in points])
            p.end()
            image.save(path)
        out[name] = path
    return out


def _alpha(hex_color: str, alpha: float) -> str:
    q = QColor(hex_color)
    return f"rgba({q.red()}, {q.green()}, {q.blue()}, {int(alpha * 255)})"


def apply_theme(app: QApplication, name: str = "dark") -> ThemeColors:
    """Apply a theme to the whole application at once (no restart needed)."""
    global _current
    _current = THEMES.get(name, DARK)
    if not app.property("studio_fusion"):
        # The same look on every OS (the native styles ignore much of the QSS). Once per app:
        # setStyle deletes the style every widget is drawn with and makes a new one, and doing
        # that at each theme switch, with the Train lessons' plots live, crashed Qt once in CI.
        app.setStyle("Fusion")
        app.setProperty("studio_fusion", True)
    app.setPalette(_palette(_current))
    font = QFont(app.font())
    if font.pointSizeF() < 10:
        font.setPointSizeF(10)
    app.setFont(font)
    app.setStyleSheet(style_sheet(_current))
    return _current
