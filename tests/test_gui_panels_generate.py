"""Generate workspace: real buttons, real job runner, a fake txt2img handler that writes real PNGs."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from studio.core.config import Settings, default_paths
from studio.core.jobs import JobState, UserFacingError
from studio.core.requests import GeneratedImage, Txt2ImgRequest
from studio.library.models import ModelEntry
from studio.media.outputs import save_txt2img_image
from studio.pipelines.services import build_engine
from studio.ui.context import AppContext
from studio.ui.panels.generate import GeneratePanel
from studio.ui.panels.generate.controls import approx_clip_tokens
from studio.ui.widgets.image_actions import find_action
from studio.workers.job_bridge import JobBridge
from studio.workers.lanes import qt_event_loop

pytestmark = pytest.mark.gui

SD15 = ModelEntry("tiny-sd15", Path("/models/tiny-sd15"), "studio", "diffusers", "sd1")
SDXL = ModelEntry("big-xl", Path("/models/big-xl"), "hf-cache", "diffusers", "sdxl",
                  repo_id="someone/big-xl")


class FakeTxt2Img:
    """Reports a preview each step, checks cancel, writes each image as a real PNG."""

    def __init__(self, outputs: Path, delay: float = 0.0) -> None:
        self.outputs = outputs
        self.delay = delay
        self.gate: threading.Event | None = None  # when set: wait at step 2 until released
        self.gate_step, self.gate_image = 2, 0  # where the gate is (image counts from 0)
        self.at_gate = threading.Event()
        self.requests: list[Txt2ImgRequest] = []
        self.fail_with: Exception | None = None

    def __call__(self, request, progress, cancel):
        self.requests.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        progress.message("Loading model…")
        paths = []
        for i in range(request.count):
            for step in range(1, request.steps + 1):
                cancel.raise_if_cancelled()
                shade = (40 * step) % 256
                preview = np.full((request.height // 8, request.width // 8, 3), shade, np.uint8)
                # Steps of the whole batch, as run_common.step_callback reports them.
                progress(i * request.steps + step, request.count * request.steps, preview)
                if step == self.gate_step and i == self.gate_image and self.gate is not None:
                    self.at_gate.set()
                    self.gate.wait(300)  # a test opens it; a stuck one fails by itself
                time.sleep(self.delay)
            from PIL import Image

            seed = request.seed + i
            image = Image.new("RGB", (request.width, request.height), (seed % 256, 90, 160))
            path, params = save_txt2img_image(image, request, seed, self.outputs,
                                              model_name="tiny", model_hash="0000",
                                              sampler="Euler", schedule_type="Automatic")
            progress.partial(GeneratedImage(request, seed, i, path, image, params,
                                            warnings=["Prompt was truncated to 75 tokens."]))
            paths.append(path)
        return paths


@pytest.fixture
def ctx(qtbot):
    holder = {}
    engine = build_engine(lambda: holder["ctx"].settings, lambda: holder["ctx"].paths,
                          io_loop=qt_event_loop())
    bridge = JobBridge(engine)
    context = holder["ctx"] = AppContext(Settings(), bridge, default_paths())
    yield context
    bridge.cancel_all()
    engine.shutdown(wait=True)


@pytest.fixture
def fake(ctx):
    handler = FakeTxt2Img(ctx.paths.outputs_dir)
    ctx.bridge.engine.register("txt2img", handler)
    yield handler
    if handler.gate is not None:
        handler.gate.set()


def make_panel(qtbot, ctx, models=(SD15, SDXL)):
    calls = []

    def scanner(settings, paths):
        calls.append(list(settings.added_models))
        extra = [ModelEntry(Path(p).name, Path(p), "file", "diffusers", "sd1")
                 for p in settings.added_models]
        return list(models) + extra

    panel = GeneratePanel(ctx, scanner=scanner)
    panel.scanner_calls = calls
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.show()
    qtbot.waitUntil(lambda: not panel.picker.scanning and bool(calls), timeout=5000)
    return panel


def fill(panel, prompt="a red fox in the snow", steps=4, size=(64, 64)):
    panel.controls.prompt.setPlainText(prompt)
    panel.controls.steps.setValue(steps)
    panel.controls.width_box.setValue(size[0])
    panel.controls.height_box.setValue(size[1])


def test_generate_button_shows_live_preview_then_result(qtbot, ctx, fake):
    panel = make_panel(qtbot, ctx)
    fill(panel)
    fake.gate = threading.Event()
    written = []
    ctx.outputWritten.connect(written.append)

    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    assert fake.at_gate.wait(120)
    # The handler is paused at step 2: the preview must show that frame, at the target size.
    qtbot.waitUntil(lambda: panel.preview.status.text().startswith("Step 2/4"), timeout=3000)
    assert panel.preview.view.has_image()
    assert panel.preview.view.image_size() == (64, 64)
    assert panel.preview.bar.isVisible() and panel.preview.bar.value() == 500
    fake.gate.set()

    qtbot.waitUntil(lambda: panel.strip.count() == 1, timeout=5000)
    result = panel.strip.results()[0]
    assert Path(result.path).exists()
    assert result.request.prompt == "a red fox in the snow"
    assert result.request.model == str(SD15.path)
    assert "Prompt was truncated" in panel.preview.notice.text()
    assert panel.preview.view.image_size() == (64, 64)
    qtbot.waitUntil(lambda: written == [Path(result.path)], timeout=2000)
    qtbot.waitUntil(lambda: not panel.open_jobs(), timeout=2000)
    assert panel.cancel_button.isEnabled() is False


def test_random_seed_is_resolved_before_submitting(qtbot, ctx, fake):
    panel = make_panel(qtbot, ctx)
    fill(panel, steps=1)
    panel.controls.set_seed_mode("random")
    job1 = panel.generate()
    job2 = panel.generate()
    assert ctx.bridge.engine.wait(job2, 120)
    seeds = [job1.request.seed, job2.request.seed]
    assert all(0 <= s < 2**32 for s in seeds) and seeds[0] != seeds[1]
    # "Reuse last" takes the seed just used.
    panel.controls.set_seed_mode("reuse")
    job3 = panel.generate()
    assert job3.request.seed == seeds[1]
    assert ctx.bridge.engine.wait(job3, 120)


def test_ctrl_enter_submits_and_escape_cancels_within_a_step(qtbot, ctx, fake):
    panel = make_panel(qtbot, ctx)
    fill(panel, steps=500)
    fake.delay = 0.01
    finished = []
    panel.jobFinished.connect(finished.append)
    qtbot.keyClick(panel.controls.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(fake.requests) <= 1 and len(ctx.bridge.jobs()) == 1
    assert panel.controls.prompt.toPlainText() == "a red fox in the snow"  # no newline typed
    qtbot.waitUntil(lambda: panel.preview.status.text().startswith("Step"), timeout=5000)

    [job] = ctx.bridge.jobs()
    qtbot.keyClick(panel.controls.prompt, Qt.Key.Key_Escape)  # cancels before it returns
    at_escape = ctx.bridge.jobs()[0].step  # the worker may finish the step it was in, no more
    qtbot.waitUntil(lambda: bool(finished), timeout=120_000)
    final = finished[0]
    assert final.id == job.id and final.state is JobState.CANCELLED
    assert final.step <= at_escape + 1 < 500  # how soon, in time: bench/gui_responsiveness.py
    assert panel.preview.status.text() == "Cancelled — 0 images kept"


def test_generate_while_running_queues_another_job(qtbot, ctx, fake):
    panel = make_panel(qtbot, ctx)
    fill(panel, steps=3)
    fake.gate = threading.Event()
    first = panel.generate()
    assert fake.at_gate.wait(120)
    second = panel.generate()
    qtbot.waitUntil(lambda: panel.queue_label.text() == "1 running · 1 queued", timeout=3000)
    assert second.state is JobState.QUEUED
    fake.gate.set()
    qtbot.waitUntil(lambda: panel.strip.count() == 2, timeout=5000)
    assert first.state is JobState.DONE
    qtbot.waitUntil(lambda: second.state is JobState.DONE and not panel.open_jobs(), timeout=5000)
    assert not panel.queue_label.isVisible()


def test_invalid_request_shows_inline_error_and_submits_nothing(qtbot, ctx, fake):
    panel = make_panel(qtbot, ctx)
    fill(panel)
    panel.picker.combo.setCurrentIndex(-1)  # no model chosen
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    assert panel.error_label.isVisible()
    assert "No model chosen" in panel.error_label.text()
    assert ctx.bridge.jobs() == []
    # Fixing the form hides the message.
    panel.picker.combo.setCurrentIndex(0)
    panel.controls.steps.setValue(5)
    assert not panel.error_label.isVisible()


def test_failed_job_shows_its_message(qtbot, ctx, fake):
    panel = make_panel(qtbot, ctx)
    fill(panel)
    fake.fail_with = UserFacingError("Out of memory at 1024×1024 — try a smaller size.")
    with qtbot.waitSignal(panel.jobFinished, timeout=5000):
        panel.generate()
    assert panel.preview.error_card.isVisible()
    assert "Out of memory at 1024×1024" in panel.preview.error_card.text()


def test_receive_fills_every_control_and_selects_the_model(qtbot, ctx):
    panel = make_panel(qtbot, ctx)
    request = Txt2ImgRequest(model="someone/big-xl", prompt="castle", negative_prompt="fog",
                             steps=33, cfg=4.5, width=896, height=1152, seed=4_000_000_000,
                             count=3, scheduler="dpmpp_2m_karras", variation_seed=3_999_999_999,
                             variation_strength=0.35)
    panel.receive(request)
    c = panel.controls
    assert (c.variation_seed.seed(), c.variation_strength.value()) == (3_999_999_999, 0.35)
    assert (c.prompt.toPlainText(), c.negative.toPlainText()) == ("castle", "fog")
    assert (c.steps.value(), c.cfg.value(), c.count.value()) == (33, 4.5, 3)
    assert (c.width_box.value(), c.height_box.value()) == (896, 1152)
    assert c.seed.seed() == 4_000_000_000 and c.seed_mode_key == "fixed"
    assert c.scheduler.currentData() == "dpmpp_2m_karras"
    assert panel.picker.current() is SDXL
    assert "SDXL · HF cache" in panel.picker.detail.text()
    assert c.preset.currentText().startswith("896 × 1152")
    # Generating now uses exactly what was received.
    built = panel.build_request()
    assert built == dataclasses.replace(request, model=str(SDXL.path))

    # A model the library does not list is added to the picker and selected.
    panel.receive(dataclasses.replace(request, model="/elsewhere/custom.safetensors"))
    assert panel.picker.current_model() == "/elsewhere/custom.safetensors"


def test_reuse_parameters_from_the_strip_menu(qtbot, ctx, fake):
    panel = make_panel(qtbot, ctx)
    fill(panel, prompt="reuse me", steps=1)
    panel.controls.count.setValue(2)
    with qtbot.waitSignal(panel.jobFinished, timeout=5000):
        panel.generate()
    qtbot.waitUntil(lambda: panel.strip.count() == 2, timeout=3000)
    item = panel.strip.item(1)  # in the order made: image 2 of the batch is second
    result = item.data(Qt.ItemDataRole.UserRole + 1)
    assert result.index == 1
    menu = panel.strip.context_menu_for(item)
    with qtbot.waitSignal(ctx.openInWorkspace, timeout=1000) as sig:
        find_action(menu, "reuseParameters").trigger()
    key, request = sig.args
    assert key == "generate"
    assert request.prompt == "reuse me" and request.seed == result.seed
    panel.controls.prompt.setPlainText("something else")
    panel.receive(request)
    assert panel.controls.prompt.toPlainText() == "reuse me"
    assert panel.controls.seed.seed() == result.seed
    # "Upscale…" sends the image to Transform's Upscale tab (A1111's "Send to extras")
    with qtbot.waitSignal(ctx.openInWorkspace, timeout=1000) as sig:
        find_action(panel.strip.context_menu_for(item), "upscaleImage").trigger()
    key, sent = sig.args
    assert key == "transform" and sent.mode == "upscale" and sent.path == result.path


def test_variation_control_reaches_the_request_and_reuse_picks_the_images_own(qtbot, ctx):
    from studio.core.requests import GeneratedImage
    from studio.ui.panels.generate.results_strip import reuse_request

    panel = make_panel(qtbot, ctx)
    fill(panel)
    c = panel.controls
    assert c.variation_strength.text() == "off" and panel.build_request().variation_strength == 0
    c.variation_seed.setValue(123)
    c.variation_strength.setValue(0.25)
    built = panel.build_request()
    assert (built.variation_seed, built.variation_strength) == (123, 0.25)
    # Image 3 of a batch of variations: the batch's seed, variation seed + 2.
    again = reuse_request(GeneratedImage(request=dataclasses.replace(built, count=4),
                                         seed=built.seed, index=2))
    assert (again.seed, again.variation_seed, again.variation_strength) == \
        (built.seed, 125, 0.25)
    panel.receive(again)
    assert (c.variation_seed.seed(), c.variation_strength.value()) == (125, 0.25)


def test_clicking_a_thumbnail_shows_it_large(qtbot, ctx, fake):
    panel = make_panel(qtbot, ctx)
    fill(panel, steps=1, size=(64, 96))
    with qtbot.waitSignal(panel.jobFinished, timeout=5000):
        panel.generate()
    fill(panel, steps=1, size=(128, 64))
    with qtbot.waitSignal(panel.jobFinished, timeout=5000):
        panel.generate()
    qtbot.waitUntil(lambda: panel.strip.count() == 2, timeout=3000)
    assert panel.preview.view.image_size() == (128, 64)
    older = panel.strip.item(0)  # in the order made: the first image is on the left
    rect = panel.strip.visualItemRect(older)
    qtbot.mouseClick(panel.strip.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.preview.view.image_size() == (64, 96)


def test_empty_state_when_there_are_no_models(qtbot, ctx):
    panel = make_panel(qtbot, ctx, models=())
    assert panel.stack.currentWidget() is panel.empty
    text = panel.empty.body.text()
    assert str(ctx.paths.models_dir) in text
    assert "hf download stabilityai/sd-turbo" in panel.empty.command.text()
    qtbot.mouseClick(panel.empty.rescan_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(panel.scanner_calls) == 2 and not panel.picker.scanning)
    # Adding a model leaves the empty state and selects it.
    folder = ctx.paths.models_dir / "my-model"
    panel.picker.add_model_path(folder)
    qtbot.waitUntil(lambda: len(panel.scanner_calls) == 3 and not panel.picker.scanning)
    assert ctx.settings.added_models == [str(folder)]
    assert panel.stack.currentIndex() == 0
    assert panel.picker.current_model() == str(folder)
    assert ctx.settings.last_model == str(folder)


def test_picked_model_is_remembered_and_moves_to_its_native_size(qtbot, ctx):
    panel = make_panel(qtbot, ctx)
    assert panel.picker.current() is SD15
    panel.controls.width_box.setValue(512)
    panel.controls.height_box.setValue(512)
    panel.picker.combo.setCurrentIndex(1)
    panel.picker.combo.activated.emit(1)  # what a user's pick emits
    assert ctx.settings.last_model == str(SDXL.path)
    assert (panel.controls.width_box.value(), panel.controls.height_box.value()) == (1024, 1024)
    again = make_panel(qtbot, ctx)
    assert again.picker.current() is SDXL


def test_a_flux_model_starts_at_its_size_and_guidance_unless_the_user_set_their_own(qtbot, ctx):
    flux = ModelEntry("flux-dev", Path("/models/flux-dev"), "studio", "diffusers", "flux")
    panel = make_panel(qtbot, ctx, models=(SD15, flux))
    c = panel.controls
    c.width_box.setValue(512)
    c.height_box.setValue(512)
    c.cfg.setValue(7.0)  # SD's usual CFG
    panel.picker.combo.setCurrentIndex(1)
    panel.picker.combo.activated.emit(1)
    assert (c.width_box.value(), c.height_box.value(), c.cfg.value()) == (1024, 1024, 3.5)
    assert c.cfg_label.text() == "Guidance" and c.prompt_tokens.isHidden()
    c.cfg.setValue(2.5)  # the user's own: kept on the way back
    panel.picker.combo.setCurrentIndex(0)
    panel.picker.combo.activated.emit(0)
    assert c.cfg.value() == 2.5 and c.cfg_label.text() == "CFG scale"
    assert not c.prompt_tokens.isHidden()


def test_last_request_is_restored_in_a_new_panel(qtbot, ctx, fake):
    panel = make_panel(qtbot, ctx)
    fill(panel, prompt="remember me", steps=7)
    with qtbot.waitSignal(panel.jobFinished, timeout=5000):
        panel.generate()
    again = make_panel(qtbot, ctx)
    assert again.controls.prompt.toPlainText() == "remember me"
    assert again.controls.steps.value() == 7


def test_token_counter_and_size_boxes(qtbot, ctx):
    panel = make_panel(qtbot, ctx)
    assert approx_clip_tokens("a cat, on a mat") == 6
    panel.controls.prompt.setPlainText("word " * 70)
    assert panel.controls.prompt_tokens.property("warning") is False
    assert "70 / 75" in panel.controls.prompt_tokens.text()
    panel.controls.prompt.setPlainText("word " * 80)  # a second chunk, as A1111 counts it
    assert panel.controls.prompt_tokens.property("warning") is False
    assert "80 / 150" in panel.controls.prompt_tokens.text()
    box = panel.controls.width_box
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "515")
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_Return)
    assert box.value() % 8 == 0 and box.value() in (512, 520)
    box.setValue(512)
    panel.controls.height_box.setValue(768)
    qtbot.mouseClick(panel.controls.swap_button, Qt.MouseButton.LeftButton)
    assert (box.value(), panel.controls.height_box.value()) == (768, 512)


def test_changing_model_folders_in_settings_rescans(qtbot, ctx):
    panel = make_panel(qtbot, ctx)
    assert len(panel.scanner_calls) == 1
    ctx.update_settings(dataclasses.replace(ctx.settings, theme="light"))
    assert len(panel.scanner_calls) == 1  # nothing about models changed
    ctx.update_settings(dataclasses.replace(ctx.settings, extra_model_dirs=["/more/models"]))
    qtbot.waitUntil(lambda: len(panel.scanner_calls) == 2 and not panel.picker.scanning)
