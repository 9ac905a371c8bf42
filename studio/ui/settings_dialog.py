"""The Settings dialog: device, precision, memory budget, chat model loading, folders, the
Hugging Face access token, previews and theme.

OK saves through ``ctx.update_settings`` (every panel hears ``settingsChanged``); Cancel
discards. The theme is previewed as soon as it is picked and put back on Cancel.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from html import escape
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.config import MAX_GGUF_CONTEXT, TIMELINE_MAX_FRAMES, Paths, Settings
from studio.ui.context import AppContext
from studio.ui.icons import icon
from studio.ui.theme import apply_theme
from studio.ui.widgets.basics import ok_cancel_buttons
from studio.workers.lanes import Calls

if TYPE_CHECKING:
    from studio.workers.device_probe import DeviceReport

DEVICE_CHOICES = [("auto", "Automatic (best available)"), ("cuda", "CUDA GPU (NVIDIA)"),
                  ("mps", "Apple Silicon (MPS)"), ("cpu", "CPU")]
PRECISION_CHOICES = [("auto", "Automatic (fp16 on CUDA, fp32 on CPU)"), ("fp16", "fp16"),
                     ("bf16", "bf16"), ("fp32", "fp32 (slowest, most exact)")]
PREVIEW_CHOICES = [("fast", "Fast (every step)"), ("taesd", "TAESD (sharper, when installed)"),
                   ("off", "Off")]
THEME_CHOICES = [("dark", "Dark"), ("light", "Light")]
LOAD_IN_CHOICES = [("auto", "Automatic (full model, at the precision above)"),
                   ("8bit", "8-bit (bitsandbytes, about half the memory)"),
                   ("4bit", "4-bit NF4 (bitsandbytes, about a quarter)")]
NO_BNB = ("8-bit and 4-bit loading need the bitsandbytes package, which is not installed "
          "(pip install bitsandbytes).")
NO_CUDA = "8-bit and 4-bit loading need an NVIDIA GPU with CUDA; Studio runs on {where} here."
LABEL_WIDTH = 140
MAX_BUDGET_GB = 4096  # Settings.validated() accepts up to this
TOKEN_NOTE = ("Only needed to download gated models, whose licence you accept on huggingface.co "
              "first (such as some SDXL base models). ")
#: The longest thing the token note says once the token is read: the dialog is sized for it
#: when it opens, so the answer arriving never resizes a window that is already on screen.
LONGEST_TOKEN_WHERE = ("A token you enter is saved in api_keys.json in the settings folder, in "
                       "plain text that only you can read (no system keyring is available).")


def _combo(choices: list[tuple[str, str]], value: str) -> QComboBox:
    box = QComboBox()
    for key, text in choices:
        box.addItem(text, key)
    box.setCurrentIndex(max(0, box.findData(value)))
    return box


def _label(text: str, top: bool = False) -> QLabel:
    # One width for the labels of every group, so the fields line up down the whole dialog.
    label = QLabel(text)
    label.setMinimumWidth(LABEL_WIDTH)
    label.setAlignment(Qt.AlignmentFlag.AlignRight | (Qt.AlignmentFlag.AlignTop if top
                                                      else Qt.AlignmentFlag.AlignVCenter))
    if top:
        label.setContentsMargins(0, 6, 0, 0)
    return label


class SettingsDialog(QDialog):
    """Edit a copy of ``ctx.settings``; :meth:`accept` saves it."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None,
                 device_report: DeviceReport | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._calls = Calls(self)  # the CUDA check, the token read
        self._quant_reason: str | None = None  # None: still checking; "": usable; else why not
        self._original_theme = ctx.settings.theme
        s = ctx.settings
        self.setWindowTitle("Settings")
        self.setMinimumWidth(620)
        col = QVBoxLayout(self)
        col.setContentsMargins(18, 16, 18, 14)
        col.setSpacing(10)
        # Two pages keep the dialog short enough for a 768-pixel-high laptop screen.
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.setStyleSheet("QTabWidget::pane { border: none; }")  # the cards have frames
        self.tabs.tabBar().setDrawBase(False)
        general = self._page("General")
        storage = self._page("Folders && downloads")
        col.addWidget(self.tabs)

        engine = QGroupBox("Engine")
        form = self._form(engine)
        self.device = _combo(DEVICE_CHOICES, s.device)
        self.device.setToolTip("Which processor runs generation. Automatic picks a GPU if torch "
                               "can use one.")
        self.precision = _combo(PRECISION_CHOICES, s.precision)
        self.precision.setToolTip("Lower precision is faster and needs half the memory; some "
                                  "models need fp32 or bf16 to avoid black images.")
        self.load_in = _combo(LOAD_IN_CHOICES, s.load_in)
        self.device.currentIndexChanged.connect(self._sync_load_in)
        self.memory_budget = QDoubleSpinBox()
        self.memory_budget.setRange(0, MAX_BUDGET_GB)
        self.memory_budget.setDecimals(1)
        self.memory_budget.setSingleStep(0.5)
        self.memory_budget.setSuffix(" GB")
        self.memory_budget.setSpecialValueText("Automatic")
        self.memory_budget.setValue(float(s.memory_budget_gb))
        self.memory_budget.setToolTip(
            "Models stay loaded between jobs while they fit in this much memory (VRAM on an "
            "NVIDIA GPU, RAM otherwise), so switching back to one is instant. Automatic (0) "
            "uses most of the GPU's memory, or half the RAM.")
        form.addRow(_label("Device"), self.device)
        form.addRow(_label("Precision"), self.precision)
        form.addRow(_label("Memory budget"), self.memory_budget)
        form.addRow(_label("Load chat models"), self.load_in)
        self.gguf_context = QSpinBox()
        self.gguf_context.setRange(0, MAX_GGUF_CONTEXT)
        self.gguf_context.setSingleStep(1024)
        self.gguf_context.setSuffix(" tokens")
        self.gguf_context.setSpecialValueText("The model's own")
        self.gguf_context.setValue(int(s.gguf_context))
        self.gguf_context.setToolTip(
            "The context GGUF chat models (llama.cpp) run with, or the model's own when it is "
            "smaller. Memory for the context is set aside when the model loads: a 128K-token "
            "model's whole context can take gigabytes.")
        form.addRow(_label("GGUF context"), self.gguf_context)
        general.addWidget(engine)
        self._check_quantization(device_report)

        folders = QGroupBox("Folders")
        form = self._form(folders)
        self.output_dir = self._folder_row(form, "Output folder", s.output_dir,
                                           str(dataclasses.replace(s, output_dir="")
                                               .resolved_paths(self._base()).outputs_dir))
        self.models_dir = self._folder_row(form, "Models folder", s.models_dir,
                                           str(dataclasses.replace(s, models_dir="")
                                               .resolved_paths(self._base()).models_dir))
        self.extra_dirs = QListWidget()
        self.extra_dirs.addItems(s.extra_model_dirs)
        self.extra_dirs.setFixedHeight(92)
        self.extra_dirs.setToolTip("Other folders to look for models in, e.g. an AUTOMATIC1111 "
                                   "models/Stable-diffusion folder. Nothing is copied.")
        add = QPushButton("Add…")
        add.clicked.connect(self._add_extra_dir)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove_extra_dir)
        self.remove_button.setEnabled(False)
        self.extra_dirs.itemSelectionChanged.connect(
            lambda: self.remove_button.setEnabled(bool(self.extra_dirs.selectedItems())))
        buttons = QVBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(self.extra_dirs, 1)
        row.addLayout(buttons)
        form.addRow(_label("Extra model folders", top=True), row)
        storage.addWidget(folders)

        hub = QGroupBox("Hugging Face")
        form = self._form(hub)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("hf_…  (leave empty for public models)")
        self.token.setEnabled(False)  # until the saved token has been read
        self.token_show = QToolButton(text="Show")
        self.token_show.setCheckable(True)
        self.token_show.setToolTip("Show or hide the token")
        self.token_show.toggled.connect(self._show_token)
        self.token_note = QLabel(TOKEN_NOTE + "Looking for a saved token…")
        self.token_note.setProperty("muted", True)
        self.token_note.setWordWrap(True)
        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(self.token, 1)
        row.addWidget(self.token_show)
        form.addRow(_label("Access token"), row)
        form.addRow(QLabel(), self.token_note)
        storage.addWidget(hub)
        storage.addStretch(1)
        self._saved_token: str | None = None  # None until read; "" when none is saved
        self._read_token()

        look = QGroupBox("Previews and appearance")
        form = self._form(look)
        self.preview_mode = _combo(PREVIEW_CHOICES, s.preview_mode)
        self.taesd_every = QSpinBox()
        self.taesd_every.setRange(1, 50)
        self.taesd_every.setValue(s.taesd_every)
        self.taesd_every.setSuffix(" steps")
        self.taesd_every.setPrefix("every ")
        self.preview_mode.currentIndexChanged.connect(self._sync_enabled)
        self.theme = _combo(THEME_CHOICES, s.theme)
        self.theme.currentIndexChanged.connect(self._preview_theme)
        form.addRow(_label("Live preview"), self.preview_mode)
        form.addRow(_label("TAESD preview"), self.taesd_every)
        self.timeline_frames = QSpinBox()
        self.timeline_frames.setRange(0, TIMELINE_MAX_FRAMES)
        self.timeline_frames.setSpecialValueText("off")
        self.timeline_frames.setPrefix("up to ")
        self.timeline_frames.setSuffix(" frames")
        self.timeline_frames.setValue(s.timeline_frames)
        self.timeline_frames.setToolTip(
            "Generate keeps each image's step previews as a film to scrub under the image and "
            "save as GIF/MP4/APNG (in memory, for the last 8 images)")
        form.addRow(_label("Denoising timeline"), self.timeline_frames)
        form.addRow(_label("Theme"), self.theme)
        general.addWidget(look)
        general.addStretch(1)
        self._sync_enabled()

        folder_url = QUrl.fromLocalFile(str(self._base().config_dir)).toString()
        where = QLabel(f"Settings are saved in <a href='{folder_url}'>"
                       f"{self._base().settings_file}</a>")
        where.setProperty("muted", True)
        where.setWordWrap(True)
        where.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        where.linkActivated.connect(lambda url: QDesktopServices.openUrl(QUrl(url)))
        self.where_label = where
        col.addWidget(where)

        box = ok_cancel_buttons(self)
        self.ok_button = box.button(QDialogButtonBox.StandardButton.Ok)
        self.cancel_button = box.button(QDialogButtonBox.StandardButton.Cancel)
        col.addWidget(box)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        # Before the window is mapped, not after: a dialog resized while the window manager was
        # still placing it went to (0,0) on X11, its title bar off the screen (seen under
        # openbox when the token note's answer arrived and added a line).
        self.fit_pages()
        super().showEvent(event)

    def fit_pages(self) -> None:
        """Make the dialog tall enough for its tallest page at its width.

        A tab page's minimum height leaves out what its word-wrapped notes need at the page's
        width (the tab widget does not ask them), so the Folders page squeezed its group until
        the extra-folders list stuck out of the frame. The dialog opens at its minimum width, so
        what it needs then is the most it will need."""
        self.layout().activate()  # the sizes of a resize still waiting to be laid out
        stack = self.tabs.currentWidget().parentWidget()
        width = stack.width()
        note = self.token_note.text()
        if len(note) < len(TOKEN_NOTE + LONGEST_TOKEN_WHERE):  # room for the longest answer
            self.token_note.setText(TOKEN_NOTE + LONGEST_TOKEN_WHERE)
        need = 0
        for i in range(self.tabs.count()):
            layout = self.tabs.widget(i).layout()
            need = max(need, layout.totalMinimumSize().height(),
                       layout.totalHeightForWidth(width))
        self.token_note.setText(note)
        height = self.height() - stack.height() + need
        if height > self.height():
            self.setMinimumHeight(height)
            self.resize(self.width(), height)

    def _page(self, title: str) -> QVBoxLayout:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 8, 0, 0)
        layout.setSpacing(10)
        self.tabs.addTab(page, title)  # "&&" shows one "&"
        return layout

    def _base(self) -> Paths:
        # The folders before the user's overrides, to show the defaults an empty field means.
        return self.ctx.base_paths

    @staticmethod
    def _form(group: QGroupBox) -> QFormLayout:
        form = QFormLayout(group)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(8)
        return form

    def _folder_row(self, form: QFormLayout, label: str, value: str, default: str) -> QLineEdit:
        edit = QLineEdit(value)
        edit.setPlaceholderText(default)
        edit.setToolTip(f"Leave empty for the default: {default}")
        browse = QPushButton("Browse…")
        browse.setIcon(icon("folder"))
        browse.clicked.connect(lambda: self._browse(edit, label))
        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(edit, 1)
        row.addWidget(browse)
        form.addRow(_label(label), row)
        return edit

    def _browse(self, edit: QLineEdit, title: str) -> None:
        start = edit.text() or edit.placeholderText() or os.path.expanduser("~")
        chosen = QFileDialog.getExistingDirectory(self, title, start)
        if chosen:
            edit.setText(chosen)

    def _add_extra_dir(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Add a model folder",
                                                  os.path.expanduser("~"))
        if chosen:
            self.add_extra_dir(chosen)

    def add_extra_dir(self, folder: str) -> None:
        existing = [self.extra_dirs.item(i).text() for i in range(self.extra_dirs.count())]
        if folder not in existing:
            self.extra_dirs.addItem(folder)

    def _remove_extra_dir(self) -> None:
        for item in self.extra_dirs.selectedItems():
            self.extra_dirs.takeItem(self.extra_dirs.row(item))

    # -- 8/4-bit loading: only with bitsandbytes and CUDA ---------------------------------------
    def _check_quantization(self, report: DeviceReport | None) -> None:
        """Find out whether 8/4-bit loading can work: bitsandbytes by its import spec (no
        import), CUDA from the window's device report, or else from torch on a pool thread."""
        if importlib.util.find_spec("bitsandbytes") is None:
            self._quantization_known(NO_BNB)
        elif report is not None:
            self._quantization_known("" if report.info.kind == "cuda" else
                                     NO_CUDA.format(where=report.info.label or "the CPU"))
        else:
            self._sync_load_in()

            def has_cuda() -> bool:
                import torch  # seconds on first import: never on the GUI thread

                return bool(torch.cuda.is_available())

            self._calls.run(has_cuda, lambda ok: self._quantization_known(
                "" if ok else NO_CUDA.format(where="the CPU")),
                lambda msg: self._quantization_known(f"CUDA could not be checked: {msg}"))

    def _quantization_known(self, reason: str) -> None:
        self._quant_reason = reason
        if reason:  # the only value that works here
            self.load_in.setCurrentIndex(self.load_in.findData("auto"))
        self._sync_load_in()

    def _sync_load_in(self) -> None:
        reason = self._quant_reason
        if reason == "" and self.device.currentData() in ("cpu", "mps"):
            reason = "8-bit and 4-bit loading need the CUDA device; Device is set to " \
                     f"{self.device.currentText()}."
        self.load_in.setEnabled(reason == "")
        self.load_in.setToolTip(
            "Checking for a CUDA GPU and bitsandbytes…" if reason is None else reason or
            "Load chat models in 8 or 4 bits with bitsandbytes to fit bigger models in GPU "
            "memory, at a small cost in quality.")

    # -- the Hugging Face access token (secure storage; read off the GUI thread) --------------
    def _read_token(self) -> None:
        paths = self.ctx.paths

        def read() -> tuple[str, bool, str]:
            from studio.library import hub_download as hd
            from studio.library.secrets import FILE_NAME, get_api_key, key_storage

            saved = get_api_key(hd.hub_endpoint(), paths) or ""
            login = bool(not saved and hd.access_token(paths))  # huggingface_hub's own login
            storage = key_storage(paths)
            key_file = str(paths.config_dir / FILE_NAME)
            if storage.startswith(key_file):  # the long path goes in the tooltip
                storage = (f"{FILE_NAME} in the settings folder, in plain text that only you "
                           "can read (no system keyring is available)")
            return saved, login, storage

        self._calls.run(read, self._token_read,
                          lambda msg: self._token_read(("", False, ""), msg))

    def _token_read(self, found: tuple[str, bool, str], error: str = "") -> None:
        saved, login, storage = found
        self._saved_token = saved
        self.token.setEnabled(True)
        if not self.token.isModified():
            self.token.setText(saved)
        if login:
            self.token.setPlaceholderText("Using the token of your Hugging Face login "
                                          "(hf auth login)")
        if error:
            where = f"The saved token could not be read: {escape(error)}"
        else:
            where = (f"A token is saved in {escape(storage)}." if saved
                     else f"A token you enter is saved in {escape(storage)}.")
        self.token_note.setText(escape(TOKEN_NOTE) + where)
        from studio.library.secrets import FILE_NAME

        self.token_note.setToolTip(str(self.ctx.paths.config_dir / FILE_NAME)
                                   if FILE_NAME in where else "")
        if error and self.isVisible():  # an error can be longer than the room kept for it
            QTimer.singleShot(0, self.fit_pages)

    def _show_token(self, shown: bool) -> None:
        self.token.setEchoMode(QLineEdit.EchoMode.Normal if shown
                               else QLineEdit.EchoMode.Password)
        self.token_show.setText("Hide" if shown else "Show")

    def save_token(self) -> bool:
        """Save the token when it was changed (an emptied field deletes it); False on failure."""
        text = self.token.text().strip()
        if self._saved_token is None or text == self._saved_token:
            return True  # not read yet (the field is disabled until then), or unchanged
        from studio.core.jobs import describe_error
        from studio.library.hub_download import save_access_token

        try:
            save_access_token(text, self.ctx.paths)
        except Exception as exc:  # noqa: BLE001 - a locked keyring, an unwritable folder
            self.token_note.setText(f"<span style='color:#e5484d'>The token could not be "
                                    f"saved: {escape(describe_error(exc))}</span>")
            return False
        self._saved_token = text
        self.token_note.setText(escape(TOKEN_NOTE) + ("The token was saved." if text
                                                      else "The saved token was removed."))
        return True

    def _sync_enabled(self) -> None:
        self.taesd_every.setEnabled(self.preview_mode.currentData() == "taesd")

    def _preview_theme(self) -> None:
        app = QApplication.instance()
        if app is not None:
            apply_theme(app, self.theme.currentData())

    def settings(self) -> Settings:
        """The settings as edited (not yet saved)."""
        return dataclasses.replace(
            self.ctx.settings,
            device=self.device.currentData(),
            precision=self.precision.currentData(),
            output_dir=self.output_dir.text().strip(),
            models_dir=self.models_dir.text().strip(),
            extra_model_dirs=[self.extra_dirs.item(i).text()
                              for i in range(self.extra_dirs.count())],
            preview_mode=self.preview_mode.currentData(),
            taesd_every=self.taesd_every.value(),
            timeline_frames=self.timeline_frames.value(),
            memory_budget_gb=round(float(self.memory_budget.value()), 1),
            gguf_context=self.gguf_context.value(),
            theme=self.theme.currentData(),
            # While the check runs the stored value stands; where 8/4-bit cannot work, auto.
            load_in=(self.ctx.settings.load_in if self._quant_reason is None
                     else self.load_in.currentData() if self.load_in.isEnabled() else "auto"),
        ).validated()

    def accept(self) -> None:
        if not self.save_token():
            return  # the note says why; the dialog stays open
        self.ctx.update_settings(self.settings())
        super().accept()

    def done(self, result: int) -> None:
        self._calls.wait(30_000)  # a CUDA check in flight (a torch import) ends first
        super().done(result)

    def reject(self) -> None:
        if self.theme.currentData() != self._original_theme:
            app = QApplication.instance()
            if app is not None:
                apply_theme(app, self._original_theme)
        super().reject()
