"""The welcome shown once, the first time Studio starts (no settings file yet).

It says where models go (the default folder, with "Choose…" to pick another), where to get them
(the Models workspace when the window has one, else the Hugging Face cache and ``hf download``),
and that the Train lessons need nothing at all. Everything in it works with no network. However
it is dismissed — Get started, a workspace button, Esc or the close box — the settings are saved,
which creates the settings file, so it does not come back.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.config import Paths
from studio.ui.context import AppContext
from studio.ui.widgets.basics import muted_label, section_label
from studio.ui.workspaces import Workspace

log = logging.getLogger(__name__)

MODELS_KEY = "models"
TRAIN_KEY = "train"


def is_first_start(base_paths: Paths) -> bool:
    """True until a settings file exists (the welcome, or any settings change, writes one)."""
    return not base_paths.settings_file.exists()


class WelcomeDialog(QDialog):
    """First-start welcome: models folder, where models come from, the lessons."""

    def __init__(self, ctx: AppContext, workspaces: list[Workspace],
                 open_workspace: Callable[[str], object] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._open_workspace = open_workspace
        self._default_models = dataclasses.replace(ctx.settings, models_dir="") \
            .resolved_paths(ctx.base_paths).models_dir
        keys = {w.key for w in workspaces}
        self.setWindowTitle("Welcome to Studio")
        self.setObjectName("welcome")
        self.setMinimumWidth(560)

        title = QLabel("Welcome to Studio")
        title.setProperty("heading", True)
        intro = QLabel("Studio makes images, transforms photos, chats and trains small models "
                       "entirely on this computer. Nothing you make or type leaves it, and it "
                       "works offline once a model is on disk.")
        intro.setWordWrap(True)

        self.models_edit = QLineEdit(str(ctx.paths.models_dir))
        self.models_edit.setReadOnly(True)
        self.models_edit.setObjectName("welcome-models-dir")
        self.choose_button = QPushButton("Choose…")
        self.choose_button.clicked.connect(self.choose_models_dir)
        self.default_button = QPushButton("Default")
        self.default_button.setToolTip(str(self._default_models))
        self.default_button.clicked.connect(self.use_default_models_dir)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.models_edit, 1)
        folder_row.addWidget(self.choose_button)
        folder_row.addWidget(self.default_button)

        self.has_models_workspace = MODELS_KEY in keys
        if self.has_models_workspace:
            where = ("Open the <b>Models</b> workspace to download recommended models and to "
                     "see every model already on this computer, including your Hugging Face "
                     "cache and any AUTOMATIC1111 or ComfyUI folders you add in Settings.")
        else:
            where = ("Put a diffusers folder or a <b>.safetensors</b> checkpoint in the folder "
                     "above. Models already in your Hugging Face cache are found as they are. "
                     "With a network, <code>hf download stabilityai/sd-turbo</code> fetches a "
                     "small, fast image model and <code>hf download "
                     "HuggingFaceTB/SmolLM2-360M-Instruct</code> a chat model (the README's "
                     "“Getting a model” lists more).")
        self.models_text = QLabel(where)
        self.models_text.setWordWrap(True)
        self.models_text.setTextFormat(Qt.TextFormat.RichText)
        self.train_text = QLabel("No model yet? The <b>Train</b> workspace needs none: eight "
                                 "lessons learn live on data that ships with Studio — optimizers "
                                 "racing, a GAN, a VAE, a small diffusion model.")
        self.train_text.setWordWrap(True)
        self.train_text.setTextFormat(Qt.TextFormat.RichText)

        buttons = QHBoxLayout()
        self.models_button = QPushButton("Open Models")
        self.models_button.setVisible(self.has_models_workspace)
        self.models_button.clicked.connect(lambda: self._go(MODELS_KEY))
        self.train_button = QPushButton("Open Train lessons")
        self.train_button.setVisible(TRAIN_KEY in keys)
        self.train_button.clicked.connect(lambda: self._go(TRAIN_KEY))
        self.start_button = QPushButton("Get started")
        self.start_button.setProperty("accent", True)
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.accept)
        buttons.addWidget(self.models_button)
        buttons.addWidget(self.train_button)
        buttons.addStretch(1)
        buttons.addWidget(self.start_button)

        column = QVBoxLayout(self)
        column.setContentsMargins(28, 24, 28, 20)
        column.setSpacing(10)
        column.addWidget(title)
        column.addWidget(intro)
        column.addSpacing(6)
        column.addWidget(section_label("Models folder"))
        column.addLayout(folder_row)
        column.addWidget(muted_label("Image, chat and CycleGAN models you add go here. You can "
                                     "change it later in Settings.", wrap=True))
        column.addSpacing(6)
        column.addWidget(section_label("Getting models"))
        column.addWidget(self.models_text)
        column.addSpacing(6)
        column.addWidget(section_label("Learning"))
        column.addWidget(self.train_text)
        column.addSpacing(10)
        column.addLayout(buttons)

    # -- the models folder ---------------------------------------------------------------------
    def chosen_models_dir(self) -> Path:
        return Path(self.models_edit.text())

    @Slot()
    def choose_models_dir(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Choose the models folder",
                                                  self.models_edit.text())
        if chosen:
            self.models_edit.setText(str(Path(chosen)))

    @Slot()
    def use_default_models_dir(self) -> None:
        self.models_edit.setText(str(self._default_models))

    # -- leaving -------------------------------------------------------------------------------
    def _go(self, key: str) -> None:
        self.accept()
        if self._open_workspace is not None:
            self._open_workspace(key)

    def done(self, result: int) -> None:  # noqa: D401 - Qt override: every way out ends here
        self._save()
        super().done(result)

    def _save(self) -> None:
        folder = self.chosen_models_dir()
        value = "" if folder == self._default_models else str(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)  # so "Open models folder" finds it
        except OSError as exc:
            log.warning("cannot create the models folder %s: %s", folder, exc)
        # Saving writes the settings file: that is what marks the first start as done.
        self.ctx.update_settings(dataclasses.replace(self.ctx.settings, models_dir=value))


def show_welcome(window) -> WelcomeDialog:
    """Open the welcome over ``window`` (a MainWindow), non-modal to the event loop."""
    dialog = WelcomeDialog(window.ctx, window.workspaces, window.show_workspace, window)
    window.welcome_dialog = dialog  # keep it alive, and reachable for tests
    dialog.open()
    return dialog
