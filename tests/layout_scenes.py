"""Studio's workspaces and dialogs shown one after another in the real window, for the layout
audit (``tests/test_gui_layout_audit.py``) and the screenshots (``tools/screens.py``).

Run in a process of its own, on the platform the environment names (``xcb`` under Xvfb, or
``offscreen``); one run walks one screen size in each theme it is given, one after the other
(a new window and home each time: the second walk shares only the process and its imports)::

    python -m tests.layout_scenes --theme light --theme dark --size 1366x768 --models FOLDER \\
        [--audit problems.json] [--shots FOLDER] [--only PATTERN] [--skip PATTERN] [--list]

``--models`` holds the tiny models (``tiny-sd15``, ``tiny-llama``; built there when missing). The
window opens the way the app opens it on that screen: at 1366×768 at the first-start size that
fits the screen (``restore_geometry``), at larger sizes maximized. The CPU banner shows (the device
probe runs; without a GPU it warns). Scenes: first an empty home (Generate, Gallery, Transform,
Chat and Models with nothing in them; the welcome dialog), then a home with the tiny models:
Generate with a model and a LoRA row, with results, with the queue drawer open; Gallery (and its
image viewer, the image-parameters dialog); Transform in each mode with a picture; Chat with a
conversation (and the servers dialog); every Train lesson after a few steps, and its Runs tab;
Models with a model's details (and the download dialog); Settings (both pages).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LORA_KEY = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
TRAIN_STEPS = 40  # steps each lesson trains before it is looked at (curves to check legends on)
#: steps in a walk's later themes: the curves' shapes were checked in the first one; a theme
#: changes colours, not where a legend falls, and a few points still draw every curve and view
TRAIN_STEPS_AGAIN = 8
LONG_REPLY = (
    "Here is a short plan for the picture:\n\n"
    "1. **Composition** — put the lighthouse on the left third and let the horizon sit low.\n"
    "2. **Light** — late afternoon, warm from the right; long shadows across the rocks.\n"
    "3. **Palette** — teal water, ochre cliffs, a pale sky.\n\n"
    "```python\nprompt = 'a lighthouse on a cliff at golden hour, oil painting'\n```\n\n"
    "Try 30 steps at CFG 6.5 first, then raise the steps if details are mushy.")


# -- models and homes -------------------------------------------------------------------------


def ensure_models(folder: Path, sd15: Path | None = None, llama: Path | None = None) -> dict:
    """The tiny models the scenes use, in ``folder`` (built there unless given)."""
    folder.mkdir(parents=True, exist_ok=True)
    if sd15 is None:
        sd15 = folder / "tiny-sd15"
        if not (sd15 / "model_index.json").exists():
            from tests.fixtures.tiny_models import build_tiny_sd15

            build_tiny_sd15(sd15)
    if llama is None:
        llama = folder / "tiny-llama"
        if not (llama / "config.json").exists():
            from tests.fixtures.tiny_llama import build_tiny_llama

            build_tiny_llama(llama)
    cyclegan = folder / "horse2zebra_pretrained" / "latest_net_G.pth"
    if not cyclegan.exists():
        import torch

        from tests.fixtures.tiny_cyclegan import tiny_generator

        cyclegan.parent.mkdir(parents=True, exist_ok=True)
        torch.save(tiny_generator(6, 8, seed=1).state_dict(), cyclegan)
    upscaler = folder / "4x-tiny-esrgan.safetensors"
    if not upscaler.exists():
        import torch
        from safetensors.torch import save_file

        from studio.pipelines.upscale.model import UpscalerSpec, build_network

        torch.manual_seed(0)
        net = build_network(UpscalerSpec("SRVGGNetCompact", 4, features=4, blocks=1))
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(upscaler))
    flux = folder / "tiny-flux"
    if not (flux / "model_index.json").exists():
        from tests.fixtures.tiny_models import build_tiny_flux

        build_tiny_flux(flux)
    taef2 = folder / "taef2_decoder.pth"
    if not taef2.exists():
        import torch

        from tests.fixtures.tiny_tae import taef2_sequential

        torch.save(taef2_sequential(), taef2)
    lora = folder / "ink-sketch.safetensors"
    if not lora.exists():
        import torch
        from safetensors.torch import save_file

        save_file({LORA_KEY: torch.ones(4, 768, dtype=torch.float16)}, str(lora))
    return {"sd15": Path(sd15), "llama": Path(llama), "cyclegan": cyclegan, "lora": lora,
            "upscaler": upscaler, "flux": flux, "taef2": taef2}


def make_home(root: Path, theme: str, models: dict | None) -> Path:
    """A STUDIO_HOME with settings (theme) and, with ``models``, the tiny models installed."""
    from studio.core.config import Settings, default_paths, save_settings

    root.mkdir(parents=True, exist_ok=True)
    os.environ["STUDIO_HOME"] = str(root)
    paths = default_paths()
    save_settings(Settings(theme=theme), paths.settings_file)
    if models:
        m = paths.models_dir
        m.mkdir(parents=True, exist_ok=True)
        shutil.copytree(models["sd15"], m / "tiny-sd15")
        shutil.copytree(models["llama"], m / "tiny-llama")
        shutil.copytree(models["flux"], m / "tiny-flux")
        (m / "cyclegan" / "horse2zebra_pretrained").mkdir(parents=True)
        shutil.copy(models["cyclegan"], m / "cyclegan" / "horse2zebra_pretrained")
        (m / "loras").mkdir()
        shutil.copy(models["lora"], m / "loras")
        (m / "upscalers").mkdir()
        shutil.copy(models["upscaler"], m / "upscalers")
        (m / "vae_approx").mkdir()  # where ComfyUI keeps it too
        shutil.copy(models["taef2"], m / "vae_approx")
    return root


def write_photo(path: Path, width: int = 768, height: int = 512) -> Path:
    """A smooth colourful picture to open in Transform."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // width), (y * 255 // height),
                    ((x + y) * 255 // (width + height))], axis=-1).astype("uint8")
    Image.fromarray(rgb).save(path)
    return path


def write_conversation(database: Path, model_spec: str) -> None:
    from studio.pipelines.chat.store import ConversationStore

    store = ConversationStore(database)
    try:
        store.create_conversation("Names for a cat", "", model_spec, {})
        conv = store.create_conversation("Planning a lighthouse painting", "", model_spec, {})
        store.add_message(conv.id, "user", "Help me plan a painting of a lighthouse at golden "
                          "hour. What should I put where?")
        store.add_message(conv.id, "assistant", LONG_REPLY, tokens=120)
        store.add_message(conv.id, "user", "And the negative prompt?")
        store.add_message(conv.id, "assistant", "blurry, low contrast, oversaturated, text, "
                          "watermark", tokens=14)
        # A document attached to the chat, and a reply that cites it (the references under it).
        from studio.pipelines.chat.documents import DocumentIndex

        notes = database.parent / "lighthouse-notes.md"
        notes.write_text("Golden hour light comes low from the west; keep the lighthouse on the "
                         "right third and the horizon low.", encoding="utf-8")
        index = DocumentIndex(store)
        index.add(index.conversation_collection(conv.id), [notes])
        store.add_message(conv.id, "user", "Where do I keep the lighthouse?")
        passage = index.retrieve([index.conversation_collection(conv.id)],
                                 "Where do I keep the lighthouse?")
        store.add_message(conv.id, "assistant", "On the right third, with a low horizon [1].",
                          tokens=12, meta={"documents": True,
                                           "sources": [p.to_dict() for p in passage]})
    finally:
        store.close()


# -- waiting ----------------------------------------------------------------------------------


def process(ms: int = 0) -> None:
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.monotonic() + ms / 1000
    while True:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        if time.monotonic() >= end:
            return
        time.sleep(0.005)


def wait_until(condition: Callable[[], bool], timeout: float = 90.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"gave up waiting {timeout:.0f} s for {what or condition}")
        process(20)


def settle(window=None) -> None:
    """Let layouts, style polish and deferred resizes finish (a few event-loop turns)."""
    from PySide6.QtWidgets import QApplication

    for _ in range(3):
        process(40)
        QApplication.sendPostedEvents()
    if window is not None:
        window.update()
    process(60)


# -- scenes -----------------------------------------------------------------------------------


@dataclass
class Scene:
    """``setup()`` brings the window into the state to look at and returns the window (the main
    window or a dialog) to audit; ``teardown()`` undoes what must not leak into the next."""

    name: str
    setup: Callable[[], object]
    teardown: Callable[[], None] | None = None
    popups: bool = True
    step: bool = False  # a step between scenes (opening a window): neither shot nor audited


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class Walk:
    """Builds the windows and yields the scenes of one theme at one screen size."""

    def __init__(self, theme: str, size: tuple[int, int], models: dict, work: Path,
                 train_steps: int = TRAIN_STEPS) -> None:
        self.theme = theme
        self.train_steps = train_steps
        self.size = size
        self.models = models
        self.work = work
        self.window = None
        self.outputs: list[Path] = []
        self.photo = write_photo(work / "harbour.png")

    # windows ---------------------------------------------------------------------------------
    def open_window(self, home: Path):
        from studio.app import build_main_window
        from studio.ui.panels.train.panel import TrainPanel

        TrainPanel.session_in_process = False  # one process: no torch start-up per lesson
        os.environ["STUDIO_HOME"] = str(home)
        window = build_main_window()
        if self.size[0] <= 1366:
            window.restore_geometry()  # the first-start size fitted to this screen
            window._remember_geometry = False
            window.show()
        else:
            window.showMaximized()
        wait_until(lambda: window.isVisible() and window.windowHandle() is not None
                   and window.windowHandle().isExposed(), 30, "the window to be exposed")
        if self.size[0] > 1366:
            room = window.screen().availableGeometry()
            try:
                wait_until(lambda: window.frameGeometry().width() >= room.width() - 2, 5,
                           "the window manager to maximize the window")
            except TimeoutError:  # no window manager: the window places itself
                window.setGeometry(room)
        window.start_device_detection()
        wait_until(lambda: window.device_report is not None, 180, "the device probe")
        settle(window)
        self.window = window
        return window

    def close_window(self) -> None:
        window, self.window = self.window, None
        if window is None:
            return
        window.shutdown()
        window.close()
        window.deleteLater()
        process(50)

    def show(self, key: str):
        panel = self.window.show_workspace(key)
        settle(self.window)
        return panel

    # scenes ----------------------------------------------------------------------------------
    def scenes(self) -> list[Scene]:
        s: list[Scene] = []
        s.append(Scene("empty home", self._empty_home, step=True))
        s.append(Scene("generate (no model)", lambda: self._show_generate_empty()))
        s.append(Scene("welcome dialog", self._welcome, self._close_dialog))
        s.append(Scene("gallery (empty)", self._gallery_empty))
        s.append(Scene("transform (no image)", lambda: self.show("transform") and self.window))
        s.append(Scene("chat (no model)", self._chat_empty))
        s.append(Scene("models (empty library)", self._models_empty))
        s.append(Scene("models home", self._models_home, step=True))
        s.append(Scene("generate (model, LoRA)", self._generate_model))
        s.append(Scene("generate (seed, variation)", self._generate_variation))
        s.append(Scene("generate (hires fix)", self._generate_hires, self._generate_hires_off))
        s.append(Scene("generate (ControlNet)", self._generate_controlnet,
                       self._generate_controlnet_off))
        s.append(Scene("generate ControlNet drawing dialog", self._scribble, self._close_dialog))
        s.append(Scene("generate (FLUX model)", self._generate_flux, self._generate_sd15))
        s.append(Scene("generate (results)", self._generate_results))
        s.append(Scene("generate (queue drawer)", self._queue_open, self._queue_close))
        s.append(Scene("gallery", self._gallery))
        s.append(Scene("gallery viewer dialog", self._gallery_viewer, self._close_dialog))
        s.append(Scene("image parameters dialog", self._reuse_dialog, self._close_dialog))
        for mode in ("cyclegan", "img2img", "inpaint", "upscale", "edit"):
            s.append(Scene(f"transform ({mode})", lambda m=mode: self._transform(m)))
        s.append(Scene("transform (SD upscale)", self._transform_sd_upscale,
                       lambda: self._transform_upscale_method("model")))
        s.append(Scene("chat", self._chat))
        s.append(Scene("chat servers dialog", self._servers, self._close_dialog))
        s.append(Scene("chat passage dialog", self._passage, self._close_dialog))
        s.append(Scene("chat attached documents dialog", self._attached, self._close_dialog))
        s.append(Scene("chat token probabilities dialog", self._token_probabilities,
                       self._close_dialog))
        s.append(Scene("train", self._train_open, step=True))
        for key, title in self._lessons():
            s.append(Scene(f"train: {title}", lambda k=key: self._lesson(k)))
        s.append(Scene("train: runs tab", self._runs_tab, self._about_tab))
        s.append(Scene("train: LoRA page (your images)", self._lora_page))
        s.append(Scene("models", self._models))
        s.append(Scene("models download dialog", self._download, self._close_dialog))
        s.append(Scene("models (a chat model)", self._models_chat))
        s.append(Scene("models make smaller dialog", self._shrink, self._close_dialog))
        s.append(Scene("models make smaller dialog (image model)", self._shrink_image,
                       self._close_dialog))
        s.append(Scene("settings dialog (general)", lambda: self._settings(0), self._close_dialog))
        s.append(Scene("settings dialog (folders)", lambda: self._settings(1), self._close_dialog))
        s.append(Scene("close", self._close, step=True))
        return s

    def _lessons(self) -> list[tuple[str, str]]:
        from studio.pipelines.train.registry import lesson_class, lesson_keys

        return [(key, lesson_class(key).info.title) for key in lesson_keys()]

    def _empty_home(self):
        home = make_home(self.work / "e", self.theme, None)
        return self.open_window(home)

    def _show_generate_empty(self):
        panel = self.show("generate")
        wait_until(lambda: panel._scanned_once, 60, "the model scan")
        settle(self.window)
        return self.window

    def _welcome(self):
        from studio.ui.welcome import show_welcome

        self.dialog = show_welcome(self.window)
        return self._shown_dialog(self.dialog)

    def _shown_dialog(self, dialog):
        wait_until(lambda: dialog.isVisible() and dialog.windowHandle() is not None
                   and dialog.windowHandle().isExposed(), 30, "the dialog to be exposed")
        settle(dialog)
        return dialog

    def _close_dialog(self) -> None:
        dialog = getattr(self, "dialog", None)
        self.dialog = None
        if dialog is not None:
            dialog.reject()
            dialog.hide()
            dialog.deleteLater()
            settle(self.window)

    def _gallery_empty(self):
        panel = self.show("gallery")
        wait_until(lambda: panel.stack.currentIndex() == 1
                   and "Loading" not in panel.empty.text(), 60, "the empty gallery")
        settle(self.window)
        return self.window

    def _chat_empty(self):
        panel = self.show("chat")
        wait_until(lambda: panel.controls.model.placeholderText() == "No chat models found", 60,
                   "the chat model scan")
        settle(self.window)
        return self.window

    def _models_empty(self):
        panel = self.show("models")
        wait_until(lambda: panel.scans >= 1, 60, "the model library scan")
        settle(self.window)
        return self.window

    def _models_home(self):
        self.close_window()
        home = make_home(self.work / "m", self.theme, self.models)
        from studio.core.config import default_paths

        write_conversation(default_paths().database,
                           str(default_paths().models_dir / "tiny-llama"))
        return self.open_window(home)

    def _generate_model(self):
        panel = self.show("generate")
        wait_until(lambda: panel._scanned_once and panel.lora_scans >= 1, 60,
                   "the model and LoRA scans")
        model = str(self.window.ctx.paths.models_dir / "tiny-sd15")
        assert panel.picker.select_model(model), "the tiny model is not listed"
        panel.controls.prompt.setPlainText(
            "a lighthouse on a cliff at golden hour, oil painting, dramatic sky")
        panel.controls.negative.setPlainText("blurry, low contrast")
        if not panel.controls.loras.loras():
            panel.controls.loras.add("ink-sketch", 0.8)
        settle(self.window)
        return self.window

    def _generate_variation(self):
        """The form scrolled down to the seed, the variation seed and strength, and the count."""
        from PySide6.QtWidgets import QScrollArea

        panel = self.show("generate")
        c = panel.controls
        c.variation_seed.setValue(4000000000)
        c.variation_strength.setValue(0.35)
        scroll = c.parentWidget()
        while scroll is not None and not isinstance(scroll, QScrollArea):
            scroll = scroll.parentWidget()
        assert scroll is not None, "the Generate form is not in a scroll area"
        scroll.ensureWidgetVisible(c.count)
        settle(self.window)
        return self.window

    def _generate_flux(self):
        """A FLUX.1 model: "Guidance" instead of CFG, the negative prompt greyed out, one sampler."""
        panel = self.show("generate")
        model = str(self.window.ctx.paths.models_dir / "tiny-flux")
        assert panel.picker.select_model(model), "the tiny FLUX model is not listed"
        panel.picker.combo.activated.emit(panel.picker.combo.currentIndex())  # as a user picks
        wait_until(lambda: panel.controls.cfg_label.text() == "Guidance", 10,
                   "Generate to name FLUX's guidance")
        settle(self.window)
        return self.window

    def _generate_sd15(self) -> None:
        panel = self.window.panel("generate", create=False)
        if panel is not None:
            panel.picker.select_model(str(self.window.ctx.paths.models_dir / "tiny-sd15"))
            panel.picker.combo.activated.emit(panel.picker.combo.currentIndex())
            settle(self.window)

    def _generate_hires(self):
        """The hires fix group turned on and open, scrolled into view."""
        from PySide6.QtWidgets import QScrollArea

        panel = self.show("generate")
        hires = panel.controls.hires
        hires.enabled.setChecked(True)
        hires.upscaler.setCurrentIndex(hires.upscaler.findData("Latent (nearest)"))
        settle(self.window)  # the opened group is laid out before it is scrolled to
        scroll = panel.controls.parentWidget()
        while scroll is not None and not isinstance(scroll, QScrollArea):
            scroll = scroll.parentWidget()
        assert scroll is not None, "the Generate form is not in a scroll area"
        scroll.ensureWidgetVisible(hires.target)
        settle(self.window)
        return self.window

    def _generate_controlnet(self):
        """The ControlNet group on with two units (one with an image), scrolled into view."""
        from PySide6.QtWidgets import QScrollArea

        panel = self.show("generate")
        self._generate_sd15()  # ControlNet is for SD 1.x, 2.x and SDXL models
        group = panel.controls.controlnet
        group.set_models([("control_v11p_sd15_canny", "sd1"), ("controlnet-canny-sdxl", "sdxl")])
        group.enabled.setChecked(True)
        group.rows[0].image.setText(str(self.window.ctx.paths.outputs_dir / "sketch.png"))
        group.rows[0].preprocess.setCurrentIndex(group.rows[0].preprocess.findData("canny"))
        group.add.click()
        settle(self.window)
        scroll = panel.controls.parentWidget()
        while scroll is not None and not isinstance(scroll, QScrollArea):
            scroll = scroll.parentWidget()
        assert scroll is not None, "the Generate form is not in a scroll area"
        scroll.ensureWidgetVisible(group.rows[0])
        settle(self.window)
        return self.window

    def _scribble(self):
        """Draw… of a ControlNet unit: a few strokes at the request's size."""
        from PySide6.QtCore import QPointF

        from studio.ui.panels.generate.scribble import ScribbleDialog

        self.dialog = ScribbleDialog((512, 512), self.window.ctx.paths.data_dir / "controls",
                                     "", self.window)
        canvas = self.dialog.canvas
        for a, b in (((60, 420), (250, 90)), ((250, 90), (450, 420)), ((130, 300), (370, 300))):
            canvas.begin_edit()
            canvas.paint_line(QPointF(*a), QPointF(*b))
        self.dialog.show()
        return self._shown_dialog(self.dialog)

    def _generate_controlnet_off(self) -> None:
        group = self.window.panel("generate").controls.controlnet
        for row in list(group.rows):
            row.remove.click()
        group.enabled.setChecked(False)
        group.set_models([])

    def _generate_hires_off(self) -> None:
        self.window.panel("generate").controls.hires.enabled.setChecked(False)

    def _generate_results(self):
        from studio.core.requests import Txt2ImgRequest

        panel = self.show("generate")
        c = panel.controls
        c.loras.set_loras([])
        c.variation_strength.setValue(0.0)
        c.width_box.setValue(64)
        c.height_box.setValue(64)
        c.steps.setValue(2)
        c.count.setValue(2)
        job = panel.generate()
        assert job is not None, panel.error_label.text()
        wait_until(lambda: job.state.finished, 240, "the tiny model to make two images")
        assert job.state.value == "done", f"the image job ended {job.state.value}: {job.error}"
        self.outputs = [Path(p.path) for p in job.partials if getattr(p, "path", None)]
        # A failed job too, so the queue shows an error card.
        request = Txt2ImgRequest(model=str(self.work / "no-such-model"), prompt="a red fox")
        failed = self.window.ctx.bridge.engine.gpu.submit("txt2img", request, title="a red fox")
        wait_until(lambda: failed.state.finished, 60, "the job without a model to fail")
        wait_until(lambda: panel.strip.isVisible(), 10, "the results strip")
        settle(self.window)
        return self.window

    def _queue_open(self):
        if not self.window.queue_drawer.isVisible():
            self.window.toggle_queue()
        settle(self.window)
        return self.window

    def _queue_close(self) -> None:
        if self.window.queue_drawer.isVisible():
            self.window.toggle_queue()
        settle(self.window)

    def _gallery(self):
        panel = self.show("gallery")
        wait_until(lambda: panel.model.rowCount() >= len(self.outputs) >= 1, 60,
                   "the gallery to list the new images")
        assert panel.select_path(self.outputs[0])
        wait_until(lambda: panel.details.isVisible(), 10, "the details pane")
        process(400)  # the metadata is read off the GUI thread
        settle(self.window)
        return self.window

    def _gallery_viewer(self):
        panel = self.show("gallery")
        self.dialog = panel.open_large(self.outputs[0])
        return self._shown_dialog(self.dialog)

    def _reuse_dialog(self):
        self.dialog = self.window.open_image_parameters(self.outputs[0])
        return self._shown_dialog(self.dialog)

    def _transform(self, mode: str):
        panel = self.show("transform")
        if panel.image_path is None:
            assert panel.open_image(self.photo)
        panel.set_mode(mode)
        if mode == "cyclegan":
            wait_until(lambda: not panel.cyclegan.scanning and panel.cyclegan.current() is not None,
                       60, "the CycleGAN scan")
        elif mode == "upscale":
            wait_until(lambda: panel.upscale.model.count() > 0, 60, "the upscaler scan")
        else:
            wait_until(lambda: not panel.sd_picker.scanning, 60, "the model scan")
            panel.sd_picker.select_model(str(self.window.ctx.paths.models_dir / "tiny-sd15"))
            panel.diffusion.prompt.setPlainText("a watercolour harbour at dawn")
        if mode == "inpaint":
            self._paint_mask(panel)
        settle(self.window)
        return self.window

    def _transform_sd_upscale(self):
        self._transform("upscale")
        return self._transform_upscale_method("sd")

    def _transform_upscale_method(self, method: str):
        upscale = self.show("transform").upscale
        upscale.method.setCurrentIndex(upscale.method.findData(method))
        settle(self.window)
        return self.window

    @staticmethod
    def _paint_mask(panel) -> None:
        from PySide6.QtCore import QPointF

        if not panel.canvas.has_mask():
            panel.canvas.paint_line(QPointF(220, 180), QPointF(480, 320))

    def _chat(self):
        panel = self.show("chat")
        wait_until(lambda: panel.sidebar.list.count() >= 2 and panel.controls.model_specs(), 60,
                   "the conversations and chat models")
        panel.sidebar.list.setCurrentRow(0)
        if panel.conv_id is None:
            panel.open_conversation(panel.sidebar.current_id())
        wait_until(lambda: panel.model.rowCount() >= 4, 20, "the conversation's messages")
        settle(self.window)
        return self.window

    def _passage(self):
        from studio.ui.panels.chat.sources import PassageDialog, passages_of

        self._chat()  # the conversation whose last reply cites a document
        panel = self.show("chat")
        cited = next(m for m in reversed(panel.model.messages()) if passages_of(m.meta))
        self.dialog = PassageDialog(passages_of(cited.meta)[0], panel)
        self.dialog.open()
        return self._shown_dialog(self.dialog)

    def _attached(self):
        self._chat()  # the conversation with a document attached
        panel = self.show("chat")
        panel.documents.show_files()
        self.dialog = panel.documents.dialog
        return self._shown_dialog(self.dialog)

    def _token_probabilities(self):
        from studio.ui.panels.chat.probabilities import TokenProbabilities

        panel = self.show("chat")
        words = LONG_REPLY.split(" ")[:60]
        entries = [{"text": (" " if i else "") + w, "token": w, "logprob": -0.05 * (i % 40),
                    "top": [[w, -0.05 * (i % 40)], [" the", -2.0], [" a", -2.5]]}
                   for i, w in enumerate(words)]
        self.dialog = TokenProbabilities(entries, panel, lambda i, alt: None, lambda i: None,
                                         prefix="A branch taken here: ")
        self.dialog.show_alternatives(entries[3])
        weights = [1.0 / len(words)] * len(words)
        self.dialog.show_attention([e["text"] for e in entries], weights)
        self.dialog.open()
        return self._shown_dialog(self.dialog)

    def _servers(self):
        panel = self.show("chat")
        self.dialog = panel.servers.open_dialog()
        return self._shown_dialog(self.dialog)

    def _train_open(self):
        panel = self.show("train")
        wait_until(lambda: panel.frames_drawn >= 1, 120, "the first lesson's first frame")
        return self.window

    def _open_lesson(self, key: str):
        """The Train panel with lesson ``key`` started (paused, its first frame drawn)."""
        from PySide6.QtCore import Qt

        panel = self.show("train")
        if panel.lesson != key:
            row = next(i for i in range(panel.lesson_list.count())
                       if panel.lesson_list.item(i).data(Qt.ItemDataRole.UserRole) == key)
            panel.lesson_list.setCurrentRow(row)
        keys = set(panel.lessons[key].validate_config())
        wait_until(lambda: panel.lesson == key and panel.session is not None
                   and panel.session.state == "paused" and panel.last_frame is not None
                   and set(panel.last_frame.config) == keys, 120, f"lesson {key} to start")
        return panel

    def _lesson(self, key: str):
        panel = self._open_lesson(key)
        # A fixed number of steps, queued one after the other: the same curves every run.
        target = panel.last_frame.step + self.train_steps
        for _ in range(self.train_steps):
            panel.session.step_once()
        wait_until(lambda: panel.last_frame.step >= target
                   or panel.session.state in ("diverged", "error"), 120,
                   f"lesson {key} to train {self.train_steps} steps")
        process(300)  # the last frames, the loss plot's redraw timer
        settle(self.window)
        return self.window

    def _runs_tab(self):
        panel = self.show("train")
        wait_until(lambda: panel.runs.list.count() >= 1, 30, "the saved run in Runs")
        panel.runs.list.setCurrentRow(0)
        panel.tabs.setCurrentIndex(1)
        settle(self.window)
        return self.window

    def _lora_page(self):
        """The LoRA page on a folder of pictures (captions, one without) and the library's tiny
        SD 1.5, two steps in: the thumbnails with captions and a row of samples."""
        folder = self.work / "lora-images"
        if not folder.is_dir():
            folder.mkdir()
            for i, (w, h) in enumerate([(96, 64), (64, 64), (64, 96), (80, 64)]):
                write_photo(folder / f"picture-{i}.png", w, h)
                if i:
                    (folder / f"picture-{i}.txt").write_text(f"zxqstyle, a smooth gradient {i}",
                                                             encoding="utf-8")
        panel = self._open_lesson("lora-sd")
        panel.reset(overrides={"dataset": "folder", "data_folder": str(folder),
                               "model": "tiny-sd15", "resolution": "128", "sample_every": 2,
                               "sample_steps": 2, "steps": 4, "trigger": "zxqstyle"})
        wait_until(lambda: panel.last_frame.config["data_folder"] == str(folder)
                   and panel.view.images.count() == 4, 120, "the LoRA page to read the folder")
        target = panel.last_frame.step + 2
        for _ in range(2):
            panel.session.step_once()
        wait_until(lambda: panel.last_frame.step >= target and panel.view.slider.maximum() >= 0
                   and panel.view.sample_labels, 120, "the LoRA page's first row of samples")
        process(300)
        settle(self.window)
        return self.window

    def _about_tab(self) -> None:
        panel = self.window.panel("train", create=False)
        if panel is not None:
            panel.tabs.setCurrentIndex(0)

    def _models(self):
        panel = self.show("models")
        wait_until(lambda: panel.scans >= 1, 60, "the model library scan")
        panel.tree.select_path(self.window.ctx.paths.models_dir / "tiny-sd15")
        settle(self.window)
        return self.window

    def _download(self):
        panel = self.show("models")
        self.dialog = panel.open_download()
        return self._shown_dialog(self.dialog)

    def _models_chat(self):
        panel = self.show("models")
        wait_until(lambda: panel.scans >= 1, 60, "the model library scan")
        panel.tree.select_path(self.window.ctx.paths.models_dir / "tiny-llama")
        settle(self.window)
        return self.window

    def _shrink(self):
        """Make smaller… on the tiny chat model: its estimate, then a finished job's table."""
        from pathlib import Path

        from studio.core.shrink_requests import ShrinkRequest
        from studio.pipelines.chat.shrink import Measure, ShrinkReport

        panel = self.show("models")
        wait_until(lambda: panel.scans >= 1, 60, "the model library scan")
        llama = self.window.ctx.paths.models_dir / "tiny-llama"
        panel.tree.select_path(llama)
        self.dialog = panel.open_shrink()
        wait_until(lambda: self.dialog.plans >= 1, 60, "the estimate")
        self.dialog.show_report(ShrinkReport(
            ShrinkRequest(str(llama)), "tiny-llama", "tiny-llama-int8",
            Path(str(llama) + "-int8"), "int8", Measure(156_000, 1423.51, 25.4, 1024),
            Measure(109_000, 1424.02, 23.9, 1024)))
        return self._shown_dialog(self.dialog)

    def _shrink_image(self):
        """Make smaller… on the tiny SD 1.5: its estimate, then a finished job's table and the
        two sample images side by side."""
        from PIL import Image

        from studio.core.shrink_requests import ImageShrinkRequest
        from studio.pipelines.diffusion.shrink import ImageMeasure, ImageShrinkReport

        panel = self.show("models")
        wait_until(lambda: panel.scans >= 1, 60, "the model library scan")
        sd = self.window.ctx.paths.models_dir / "tiny-sd15"
        panel.tree.select_path(sd)
        self.dialog = panel.open_shrink()
        wait_until(lambda: self.dialog.plans >= 1, 60, "the estimate")
        before = Image.linear_gradient("L").convert("RGB").resize((512, 512))
        after = before.rotate(2)
        self.dialog.show_report(ImageShrinkReport(
            ImageShrinkRequest(str(sd)), "tiny-sd15", "tiny-sd15-int8", sd.with_name(
                "tiny-sd15-int8"), "int8", "unet", ImageMeasure(2_132_000_000, 3_438_000_000,
                                                                 4.21, before),
            ImageMeasure(1_310_000_000, 1_900_000_000, 4.65, after), 1.83))
        return self._shown_dialog(self.dialog)

    def _settings(self, tab: int):
        self.dialog = self.window.open_settings()
        self.dialog.tabs.setCurrentIndex(tab)
        return self._shown_dialog(self.dialog)

    def _close(self):
        panel = self.window.panel("train", create=False)
        if panel is not None:
            panel.shutdown()
        self.close_window()
        return None


# -- displays and child processes (used by the audit test and tools/screens.py) ---------------


class VirtualDisplay:
    """An Xvfb server of one screen size (on a display number it picks itself), with openbox
    when it is installed, so windows get frames and can be maximized as on a desktop."""

    def __init__(self, size: tuple[int, int], window_manager: bool = True) -> None:
        self.size = size
        self.window_manager = window_manager
        self.xvfb = None
        self.wm = None
        self.display = ""

    @staticmethod
    def available() -> bool:
        return shutil.which("Xvfb") is not None

    def __enter__(self) -> VirtualDisplay:
        import subprocess

        read, write = os.pipe()
        self.xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0",
             f"{self.size[0]}x{self.size[1]}x24", "-nolisten", "tcp", "-dpi", "96"],
            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        try:
            number = b""
            end = time.monotonic() + 30
            while not number.endswith(b"\n") and time.monotonic() < end:
                chunk = os.read(read, 16)
                if not chunk:
                    break
                number += chunk
        finally:
            os.close(read)
        if not number.strip().isdigit():
            self.__exit__(None, None, None)
            raise RuntimeError("Xvfb did not start")
        self.display = f":{number.strip().decode()}"
        if self.window_manager and shutil.which("openbox"):
            env = dict(os.environ, DISPLAY=self.display)
            self.wm = subprocess.Popen(["openbox"], env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # openbox takes the screen before the first window maps
        return self

    def __exit__(self, *_exc) -> None:
        for proc in (self.wm, self.xvfb):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except Exception:  # noqa: BLE001 - a stuck server is killed
                    proc.kill()
                    proc.wait(10)
        self.wm = self.xvfb = None


def xcb_works(display: str) -> bool:
    """Whether Qt's xcb platform starts on ``display`` (Xvfb may be installed without the xcb
    libraries Qt needs, such as libxcb-cursor0)."""
    import subprocess

    probe = "from PySide6.QtWidgets import QApplication; QApplication([])"
    try:
        done = subprocess.run([sys.executable, "-c", probe], env=child_env("xcb", display),
                              capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def offscreen_platform(size: tuple[int, int], folder: Path) -> str:
    """QT_QPA_PLATFORM for an offscreen screen of ``size`` (Qt's default is 800×800)."""
    import json

    config = folder / f"offscreen-{size[0]}x{size[1]}.json"
    config.write_text(json.dumps({"screens": [{
        "name": "audit", "x": 0, "y": 0, "width": size[0], "height": size[1],
        "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}))
    return f"offscreen:configfile={config}"


def child_command(theme: str | tuple[str, ...], size: tuple[int, int], models: Path, *,
                  sd15: Path | None = None, llama: Path | None = None, audit: Path | None = None,
                  shots: Path | None = None, only: str = "", skip: str = "") -> list[str]:
    """The command line of the walks at one size (one per theme, one after the other) in a
    process of its own."""
    themes = (theme,) if isinstance(theme, str) else theme
    cmd = [sys.executable, "-m", "tests.layout_scenes",
           *[arg for name in themes for arg in ("--theme", name)],
           "--size", f"{size[0]}x{size[1]}", "--models", str(models)]
    for flag, value in (("--sd15", sd15), ("--llama", llama), ("--audit", audit),
                        ("--shots", shots)):
        if value is not None:
            cmd += [flag, str(value)]
    if only:
        cmd += ["--only", only]
    if skip:
        cmd += ["--skip", skip]
    return cmd


def child_env(platform: str, display: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("STUDIO_HOME", "QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = platform
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if display:
        env["DISPLAY"] = display
    return env


# -- running ----------------------------------------------------------------------------------


def grab_screen(path: Path, target) -> None:
    """What the screen shows (window frames, dialogs over the window) on a real display; the
    window's own pixels on the offscreen platform."""
    from PySide6.QtGui import QGuiApplication

    if QGuiApplication.platformName() == "xcb":
        pixmap = QGuiApplication.primaryScreen().grabWindow(0)
    else:
        pixmap = target.grab()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not pixmap.save(str(path)):
        raise OSError(f"could not save {path}")


def run(theme: str, size: tuple[int, int], models: dict, *, audit_out: Path | None = None,
        shots: Path | None = None, only: str = "", skip: str = "", log=print,
        train_steps: int = TRAIN_STEPS) -> list:
    """Walk every scene; returns the problems found (empty without ``audit_out``)."""
    from PySide6.QtWidgets import QApplication

    from tests import layout_audit

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("Studio")
    problems: list = []
    tag = f"{size[0]}x{size[1]} {theme}"
    # A short folder (as short as /home/alice/Pictures/Studio): paths shown in fields are real.
    with tempfile.TemporaryDirectory(prefix="sl-", dir="/tmp" if os.path.isdir("/tmp")
                                     else None) as tmp:
        walk = Walk(theme, size, models, Path(tmp), train_steps)
        shot_no = 0
        for scene in walk.scenes():
            started = time.monotonic()
            label = f"{tag} · {scene.name}"
            if skip and fnmatch.fnmatch(scene.name, skip):  # steps too: nothing here needs them
                continue
            wanted = not only or fnmatch.fnmatch(scene.name, only)
            is_step = scene.step
            if not wanted and not is_step:
                continue
            try:
                target = scene.setup()
                if target is not None and wanted and not is_step:
                    if shots is not None:
                        shot_no += 1
                        grab_screen(shots / f"{size[0]}x{size[1]}-{theme}-{shot_no:02d}-"
                                            f"{slug(scene.name)}.png", target)
                    if audit_out is not None:
                        if len(layout_audit.visible_widgets(target)) < 5:  # nothing to check
                            raise RuntimeError("the window shows almost nothing")
                        problems += layout_audit.audit(target, label)
                        if scene.popups:
                            problems += layout_audit.audit_combo_popups(target, label)
            except Exception as exc:  # noqa: BLE001 - one scene's failure is a finding too
                problems.append(layout_audit.Problem(
                    label, "scene failed", scene.name, "", "",
                    f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"))
                log(f"{label}: FAILED {exc}")
            finally:
                if scene.teardown is not None:
                    try:
                        scene.teardown()
                    except Exception as exc:  # noqa: BLE001
                        log(f"{label}: teardown failed: {exc}")
            log(f"{label}: {time.monotonic() - started:.1f} s")
        walk.close_window()
    app.processEvents()
    if audit_out is not None:
        layout_audit.dump(problems, audit_out)
    return problems


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--theme", choices=("light", "dark"), action="append",
                        help="a theme to walk in (default dark); given twice, both, one after "
                             "the other in this process")
    parser.add_argument("--size", type=parse_size, default=(1366, 768),
                        help="the screen's size, WIDTHxHEIGHT (default 1366x768)")
    parser.add_argument("--models", type=Path, required=True,
                        help="folder of the tiny models (built there when missing)")
    parser.add_argument("--sd15", type=Path, help="a tiny SD 1.5 folder already built")
    parser.add_argument("--llama", type=Path, help="a tiny Llama folder already built")
    parser.add_argument("--audit", type=Path, help="write the problems found here (JSON)")
    parser.add_argument("--shots", type=Path, help="save a screenshot of each scene here")
    parser.add_argument("--only", default="", help="scenes whose name matches this glob")
    parser.add_argument("--skip", default="",
                        help="leave out the scenes (and steps) whose name matches this glob")
    parser.add_argument("--list", action="store_true", help="print the scene names and stop")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.list:
        walk = Walk.__new__(Walk)  # the names only: no window, no models
        for scene in Walk.scenes(walk):
            if not scene.step:
                print(scene.name)
        return 0
    models = ensure_models(args.models, args.sd15, args.llama)
    problems = []
    for number, theme in enumerate(args.theme or ["dark"]):
        problems += run(theme, args.size, models, audit_out=args.audit, shots=args.shots,
                        only=args.only, skip=args.skip, log=lambda m: print(m, flush=True),
                        train_steps=TRAIN_STEPS if number == 0 else TRAIN_STEPS_AGAIN)
    if args.audit is not None:  # every theme's problems (each run wrote its own)
        from tests import layout_audit

        layout_audit.dump(problems, args.audit)
    print(f"{len(problems)} problems", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
