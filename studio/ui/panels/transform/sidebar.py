"""The Transform workspace's left column: the picture, the mode tabs with each mode's settings,
and the run / cancel buttons with the job's status under them (always visible; the settings
scroll when the window is short)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTabBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.ui.widgets.basics import section_label, vertical_scroll

SIDEBAR_WIDTH = 372


class TransformSidebar(QWidget):
    """Lays out the given pickers and options; owns the image buttons, tabs and run buttons."""

    def __init__(self, cyclegan: QWidget, cyclegan_options: QWidget, sd_picker: QWidget,
                 diffusion: QWidget, upscale: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.open_button = QPushButton("Open image…")
        self.folder_button = QPushButton("Batch folder…")
        self.source_label = QLabel("No image")
        self.source_label.setProperty("muted", True)
        self.source_label.setWordWrap(True)
        self.tabs = QTabBar()
        self.tabs.setExpanding(True)
        self.tabs.setDrawBase(False)
        for title in ("CycleGAN", "img2img", "Inpaint", "Upscale", "Edit"):
            self.tabs.addTab(title)
        self.tabs.setTabToolTip(4, "Edit with instructions: a picture and “make it winter” "
                                   "(FLUX.1 Kontext, Qwen-Image-Edit)")
        # five modes in the sidebar's width: tighter tabs, never hidden behind scroll arrows
        self.tabs.setStyleSheet("QTabBar::tab { padding: 6px 7px; }")
        self.tabs.setUsesScrollButtons(False)
        self.tabs.setElideMode(Qt.TextElideMode.ElideRight)
        cyc = QWidget()
        cyc_col = QVBoxLayout(cyc)
        cyc_col.setContentsMargins(0, 0, 0, 0)
        cyc_col.addWidget(section_label("Model"))
        cyc_col.addWidget(cyclegan)
        cyc_col.addWidget(cyclegan_options)
        cyc_col.addStretch(1)
        dif = QWidget()
        dif_col = QVBoxLayout(dif)
        dif_col.setContentsMargins(0, 0, 0, 0)
        dif_col.addWidget(section_label("Model"))
        dif_col.addWidget(sd_picker)
        self.sd_picker_home = dif_col  # the picker visits the Upscale tab's SD upscale mode
        dif_col.addWidget(diffusion)
        dif_col.addStretch(1)
        up = QWidget()
        up_col = QVBoxLayout(up)
        up_col.setContentsMargins(0, 0, 0, 0)
        up_col.addWidget(upscale)
        up_col.addStretch(1)
        self.pages = QStackedWidget()
        self.pages.addWidget(cyc)
        self.pages.addWidget(dif)
        self.pages.addWidget(up)

        self.run_button = QPushButton("Transform")
        self.run_button.setObjectName("transformButton")
        self.run_button.setProperty("accent", True)  # the house's primary button (theme.py)
        self.run_button.setMinimumHeight(42)
        self.run_button.setToolTip("Run (Ctrl+Enter); Esc cancels")
        font = self.run_button.font()
        font.setPointSizeF(font.pointSizeF() * 1.1)
        font.setBold(True)
        self.run_button.setFont(font)
        self.cancel_button = QToolButton(text="Cancel")
        self.cancel_button.setMinimumHeight(42)
        self.cancel_button.setEnabled(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setProperty("muted", True)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #ff8a80;")
        self.error_label.hide()
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(6)
        self.bar.hide()

        side_inner = QWidget()
        side = QVBoxLayout(side_inner)
        side.setContentsMargins(16, 16, 16, 16)
        side.setSpacing(8)
        side.addWidget(section_label("Image"))
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.folder_button)
        side.addLayout(row)
        side.addWidget(self.source_label)
        side.addSpacing(6)
        side.addWidget(self.tabs)
        side.addWidget(self.pages, 1)
        scroll = vertical_scroll(side_inner)
        bottom = QVBoxLayout()
        bottom.setContentsMargins(16, 8, 16, 16)
        bottom.addWidget(self.error_label)
        bottom.addWidget(self.bar)
        bottom.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.cancel_button)
        bottom.addLayout(buttons)
        self.setFixedWidth(SIDEBAR_WIDTH)
        sidebar_col = QVBoxLayout(self)
        sidebar_col.setContentsMargins(0, 0, 0, 0)
        sidebar_col.addWidget(scroll, 1)
        sidebar_col.addLayout(bottom)

