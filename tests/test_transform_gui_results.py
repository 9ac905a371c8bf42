"""Transform results on screen: an inpaint result shows in the compare view (and "Edit mask" goes
back), inpaint previews show only the masked region, img2img reports step n/N with it/s and ETA,
each mode keeps its own result (a new job replaces it), right-click on a result gives the image
menu, and the mask has undo / redo and ``[`` / ``]`` brush sizes. The real window, real jobs with
tiny models, keys typed through the window system."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QContextMenuEvent, QImage
from PySide6.QtWidgets import QApplication

from studio.ui.widgets.image_actions import find_action
from studio.ui.widgets.mask_canvas import (
    MAX_BRUSH,
    MIN_BRUSH,
    brush_step,
    composite_preview,
    mask_array,
)
from tests.fixtures.tiny_cyclegan import tiny_generator
from tests.gui_fixtures import press

pytestmark = pytest.mark.gui


def _photo(path, w=80, h=64, seed=0):
    rng = np.random.default_rng(seed)
    small = (rng.random((8, 10, 3)) * 255).astype(np.uint8)
    Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).save(path)
    return path


def _filled(w: int, h: int, color: str) -> QImage:
    image = QImage(w, h, QImage.Format.Format_RGB32)
    image.fill(QColor(color))
    return image


@pytest.fixture
def panel(main_window, qtbot):
    main_window.resize(1366, 768)
    main_window.show()
    panel = main_window.show_workspace("transform")
    qtbot.waitExposed(main_window)
    yield panel
    panel.shutdown()


def _with_sd(qtbot, panel, model_dir, picture):
    qtbot.waitUntil(lambda: not panel.sd_picker.scanning, timeout=10_000)
    panel.sd_picker.select_model(str(model_dir))
    panel.receive(picture)


def _with_cyclegan(qtbot, panel, name="style_test"):
    import torch

    folder = panel.ctx.paths.models_dir / "cyclegan" / name
    folder.mkdir(parents=True)
    torch.save(tiny_generator(6, 8, seed=2).state_dict(), folder / "latest_net_G.pth")
    panel.cyclegan.refresh()
    qtbot.waitUntil(lambda: not panel.cyclegan.scanning and panel.cyclegan.current() is not None,
                    timeout=10_000)


def _run(qtbot, panel, timeout=120_000):
    with qtbot.waitSignal(panel.jobFinished, timeout=timeout) as done:
        jobs = panel.run()
        assert jobs, panel.error_label.text()
    assert done.args[0].state.value == "done", done.args[0].error
    return done.args[0]


def test_composite_preview_shows_the_picture_outside_the_mask():
    before, frame = _filled(40, 20, "#ff0000"), _filled(10, 5, "#0000ff")  # previews are small
    mask = QImage(40, 20, QImage.Format.Format_Grayscale8)
    mask.fill(0)
    for y in range(20):
        for x in range(20):
            mask.setPixelColor(x, y, QColor(255, 255, 255))
    out = composite_preview(before, frame, mask)
    assert out.size() == before.size()
    assert out.pixelColor(5, 10).blue() > 240 and out.pixelColor(5, 10).red() < 15  # preview
    assert out.pixelColor(35, 10).red() > 240 and out.pixelColor(35, 10).blue() < 15  # picture


def test_inpaint_previews_the_mask_only_then_shows_the_result(panel, qtbot, tmp_path,
                                                             tiny_sd15_dir, screenshot):
    _with_sd(qtbot, panel, tiny_sd15_dir, _photo(tmp_path / "room.png"))
    panel.set_mode("inpaint")
    panel.canvas.set_brush_size(16)
    panel.canvas.paint_line(QPointF(10, 20), QPointF(40, 20))
    painted = mask_array(panel.canvas.mask())
    panel.diffusion.prompt.setPlainText("a window")
    panel.diffusion.steps.setValue(4)
    panel.diffusion.strength.setValue(1.0)
    frames, views = [], []
    frame = panel._book.frame

    def recording(job, preview):
        mode = frame(job, preview)
        if mode == "inpaint":
            frames.append(panel._book.live["inpaint"].frame.copy())
            views.append(panel.view_stack.currentWidget())
        return mode

    panel._book.frame = recording
    job = _run(qtbot, panel)
    assert frames, "no preview was drawn"
    # While the job ran the view followed it (its preview), not the mask canvas.
    assert all(view is panel.compare for view in views)
    # Outside the mask the preview is the picture itself, not noise.
    picture = panel.compare.before().convertToFormat(QImage.Format.Format_RGB32)
    ys, xs = np.nonzero(painted == 0)
    for y, x in list(zip(ys, xs, strict=True))[::97]:
        got = frames[-1].pixelColor(int(x), int(y))
        want = picture.pixelColor(int(x), int(y))
        assert (got.red(), got.green(), got.blue()) == (want.red(), want.green(), want.blue())

    # The finished result is shown in the compare view, not the mask canvas.
    assert panel.view_stack.currentWidget() is panel.compare
    assert panel.compare.split_view.has_pair() and panel.compare.after() is not None
    assert panel.last_result.path.name in panel.caption.text()
    assert panel.edit_mask_button.isVisible() and not panel.brush.isVisible()
    assert f"Mask blur: {job.request.mask_blur}" in panel.last_result.parameters
    screenshot(panel.window(), "transform-inpaint-result")
    # "Edit mask" goes back to the mask as painted; "Show result" returns to the result.
    qtbot.mouseClick(panel.edit_mask_button, Qt.MouseButton.LeftButton)
    assert panel.view_stack.currentWidget() is panel.canvas and panel.brush.isVisible()
    assert np.array_equal(mask_array(panel.canvas.mask()), painted)
    assert panel.brush.show_result.isVisible()
    qtbot.mouseClick(panel.brush.show_result, Qt.MouseButton.LeftButton)
    assert panel.view_stack.currentWidget() is panel.compare and panel.compare.after() is not None


def test_img2img_status_says_step_rate_and_eta_then_shows_the_result(panel, qtbot, tmp_path,
                                                                      tiny_sd15_dir):
    _with_sd(qtbot, panel, tiny_sd15_dir, _photo(tmp_path / "field.png"))
    panel.set_mode("img2img")
    panel.diffusion.steps.setValue(6)
    panel.diffusion.strength.setValue(1.0)
    seen = []
    # Connected after the panel: the status line as the panel left it for each step.
    panel.ctx.bridge.progress.connect(lambda job, step, total, p: seen.append(panel.status.text()))
    _run(qtbot, panel)
    steps = [t for t in seen if t.startswith("Step ")]
    # N is the scheduler's count (PNDM, the tiny model's, adds one), as Generate shows it.
    assert steps and re.fullmatch(r"Step 1/\d+", steps[0]), steps
    assert any(re.fullmatch(r"Step \d+/\d+ · [\d.]+ (it/s|s/it) · ETA \d\d:\d\d", t)
               for t in steps), steps
    assert panel.view_stack.currentWidget() is panel.compare and panel.compare.after() is not None
    assert panel.status.text().startswith("Done · 1 image in")


def test_each_mode_keeps_its_own_result_and_a_new_job_replaces_it(panel, qtbot, tmp_path):
    _with_cyclegan(qtbot, panel)
    picture = _photo(tmp_path / "horse.png", 90, 60)
    panel.receive(picture)
    _run(qtbot, panel)
    assert panel.compare.split_view.has_pair() and "horse.png →" in panel.caption.text()
    # img2img has no result yet: only the picture, no CycleGAN result under img2img's settings.
    panel.set_mode("img2img")
    assert panel.compare.after() is None and not panel.compare.split_view.has_pair()
    assert panel.caption.text() == "" and panel.status.text() == ""
    panel.set_mode("inpaint")
    assert panel.view_stack.currentWidget() is panel.canvas
    panel.set_mode("cyclegan")
    assert panel.compare.split_view.has_pair()
    first = panel.last_result
    # A new job clears the old result at once; its own result replaces it.
    with qtbot.waitSignal(panel.jobFinished, timeout=60_000):
        panel.run()
        assert panel.compare.after() is None and panel.caption.text() == ""
    assert panel.last_result.path != first.path
    assert panel.last_result.path.name in panel.caption.text()
    # Opening another picture forgets the results of the last one.
    panel.receive(_photo(tmp_path / "other.png", 70, 50, seed=3))
    assert panel.compare.after() is None and panel.result_menu() is None


def test_right_click_on_a_result_gives_the_image_menu(panel, qtbot, tmp_path, monkeypatch):
    _with_cyclegan(qtbot, panel)
    picture = _photo(tmp_path / "horse.png", 90, 60)
    panel.receive(picture)
    assert panel.result_menu() is None  # the picture alone has no result to act on
    _run(qtbot, panel)
    result = panel.last_result.path
    # A real right-click on the view asks for the menu.
    viewport = panel.compare.split_view.viewport()
    with qtbot.waitSignal(panel.compare.contextMenuRequested, timeout=5_000):
        event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, QPoint(20, 20),
                                  viewport.mapToGlobal(QPoint(20, 20)))
        QApplication.sendEvent(viewport, event)
    qtbot.waitUntil(lambda: panel.context_menu is not None and panel.context_menu.isVisible(),
                    timeout=5_000)
    panel.context_menu.close()
    menu = panel.result_menu()
    names = {a.objectName() for a in menu.actions() if a.objectName()}
    assert {"copyImage", "saveAs", "openFile", "openFolder", "reuseParameters",
            "sendToTransform", "deleteImage"} <= names
    assert find_action(menu, "reuseParameters").isEnabled()
    find_action(menu, "copyImage").trigger()
    assert QApplication.clipboard().image().size() == QImage(str(result)).size()
    # "Send to Transform" opens the result as the new picture.
    find_action(menu, "sendToTransform").trigger()
    assert panel.image_path == result
    # Deleting the file from the menu takes it off the screen too.
    panel.receive(picture)
    _run(qtbot, panel)
    monkeypatch.setattr("studio.ui.widgets.image_actions.confirm_delete", lambda *a: True)
    shown = panel.last_result.path
    find_action(panel.result_menu(), "deleteImage").trigger()
    assert not shown.exists() and panel.compare.after() is None and panel.result_menu() is None
    # "Reuse parameters" reopens the result's source and settings (here: in CycleGAN mode).
    _run(qtbot, panel)
    reused = []
    panel.ctx.openInWorkspace.connect(lambda key, payload: reused.append((key, payload)))
    find_action(panel.result_menu(), "reuseParameters").trigger()
    assert reused and reused[0][0] == "transform" and reused[0][1].mode == "cyclegan"
    assert reused[0][1].image == picture and panel.image_path == picture


def test_mask_undo_redo_and_bracket_keys(panel, qtbot, tmp_path):
    panel.receive(_photo(tmp_path / "wall.png", 200, 100))
    panel.set_mode("inpaint")
    canvas = panel.canvas
    window = panel.window()
    panel.brush.size.setValue(10)

    def stroke(x0, x1, y):
        a, b = canvas.mapFromScene(QPointF(x0, y)), canvas.mapFromScene(QPointF(x1, y))
        qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=a)
        qtbot.mouseMove(canvas.viewport(), b)
        qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=b)

    assert not panel.brush.undo.isEnabled()
    stroke(20, 80, 30)
    first = mask_array(canvas.mask()).copy()
    stroke(120, 180, 70)
    both = mask_array(canvas.mask()).copy()
    assert first[70, 150] == 0 and both[70, 150] == 255 and panel.brush.undo.isEnabled()
    canvas.setFocus()
    press(window, Qt.Key.Key_Z)  # Ctrl+Z: one stroke back
    assert np.array_equal(mask_array(canvas.mask()), first) and panel.brush.redo.isEnabled()
    press(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier
          | Qt.KeyboardModifier.ShiftModifier)  # Ctrl+Shift+Z: redo
    assert np.array_equal(mask_array(canvas.mask()), both)
    press(window, Qt.Key.Key_Z)
    press(window, Qt.Key.Key_Z)
    assert not canvas.has_mask() and not panel.brush.undo.isEnabled()
    press(window, Qt.Key.Key_Y)  # Ctrl+Y: redo too
    assert np.array_equal(mask_array(canvas.mask()), first)
    # Clear and invert are steps too; a new stroke after an undo drops what could be redone.
    qtbot.mouseClick(panel.brush.clear, Qt.MouseButton.LeftButton)
    assert not canvas.has_mask()
    panel.undo_mask()
    assert np.array_equal(mask_array(canvas.mask()), first)
    stroke(150, 160, 10)
    assert not panel.brush.redo.isEnabled()
    # ] and [ size the brush, in steps that suit its size, within the slider's range.
    press(window, Qt.Key.Key_BracketRight, Qt.KeyboardModifier.NoModifier)
    assert panel.brush.size.value() == brush_step(10, True) > 10
    assert canvas.brush_size == panel.brush.size.value()
    press(window, Qt.Key.Key_BracketLeft, Qt.KeyboardModifier.NoModifier)
    press(window, Qt.Key.Key_BracketLeft, Qt.KeyboardModifier.NoModifier)
    assert panel.brush.size.value() < 10
    assert brush_step(MAX_BRUSH, True) == MAX_BRUSH and brush_step(MIN_BRUSH, False) == MIN_BRUSH
    # Typing [ in the prompt types it: the brush keys never eat text.
    panel.diffusion.prompt.setFocus()
    size = panel.brush.size.value()
    press(window, Qt.Key.Key_BracketRight, Qt.KeyboardModifier.NoModifier)
    qtbot.keyClicks(panel.diffusion.prompt, "[x]")
    assert "[x]" in panel.diffusion.prompt.toPlainText() and panel.brush.size.value() == size


def test_mask_blur_is_offered_for_inpainting_only_and_sent_with_the_request(panel, qtbot,
                                                                            tmp_path):
    options = panel.diffusion
    panel.receive(_photo(tmp_path / "x.png"))
    panel.set_mode("img2img")
    assert not options.mask_blur.isVisible()
    panel.set_mode("inpaint")
    assert options.mask_blur.isVisibleTo(panel) and options.mask_blur.value() == 4
    options.mask_blur.setValue(9)
    assert options.request("m", "x.png", "mask.png").mask_blur == 9
    assert options.request("m", "x.png").mask_blur == 0  # img2img has no mask to blur


def test_a_done_state_seen_before_the_last_result_does_not_drop_it(panel, tmp_path):
    """Each event carries its own snapshot and a handle sends the end after every result: a
    "changed" saying done that arrives ahead of the last result must not end the job there (the
    result used to be dropped, leaving the previous picture on screen)."""
    from studio.core.jobs import Job, JobState
    from studio.core.requests import TransformedImage, TransformRequest

    picture = _photo(tmp_path / "horse.png", 90, 60)
    made = _photo(tmp_path / "00001-made.png", 90, 60, seed=4)
    panel.receive(picture)
    request = TransformRequest(model="/m/style_test/latest_net_G.pth", inputs=[str(picture)])
    job = Job("transform", request, started=1.0)
    panel._open.add(None, job.snapshot())  # as submitting does (the handle is not used here)
    panel._done_in_batch, panel._batch_total = 0, 1
    result = TransformedImage(request=request, index=0, source=picture, path=made,
                              image=Image.open(made).convert("RGB"))
    job.state, job.ended = JobState.DONE, 2.0
    done = job.snapshot()
    panel._on_job_changed(done)
    assert job.id in panel._open
    panel._on_partial(done, result)
    panel._finish(done)
    assert panel.last_result is result and panel.compare.after() is not None
    assert "00001-made.png" in panel.caption.text() and panel.status.text().startswith("Done · 1")
    assert panel._done_in_batch == 1 and not panel._open
