"""Transform workspace GUI: compare view, mask painting, a CycleGAN job and an inpaint job run
from the panel, and "Send to Transform"."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage

from studio.ui.panels.transform.compare_view import CompareView
from studio.ui.widgets.mask_canvas import MaskCanvas, mask_array
from tests.fixtures.tiny_cyclegan import tiny_generator


def _qimage(w: int, h: int, color: str) -> QImage:
    image = QImage(w, h, QImage.Format.Format_RGB32)
    image.fill(QColor(color))
    return image


def _photo(path, w=96, h=64, seed=0):
    rng = np.random.default_rng(seed)
    small = (rng.random((8, 12, 3)) * 255).astype(np.uint8)
    Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).save(path)
    return path


def test_split_line_drag_changes_the_split(qtbot, screenshot):
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    view.set_images(_qimage(300, 200, "#3060c0"), _qimage(300, 200, "#e0a040"))
    qtbot.waitExposed(view)
    split = view.split_view
    assert split.split == 0.5 and split.has_pair()
    start = QPoint(round(split.split_x_in_view()), split.viewport().height() // 2)
    qtbot.mousePress(split.viewport(), Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(split.viewport(), start + QPoint(120, 0))
    qtbot.mouseRelease(split.viewport(), Qt.MouseButton.LeftButton, pos=start + QPoint(120, 0))
    assert split.split > 0.6
    # Left of the line shows "before" (blue), right of it "after" (orange).
    grab = split.viewport().grab().toImage()
    y = grab.height() // 2
    assert grab.pixelColor(40, y).blue() > 150 and grab.pixelColor(grab.width() - 40, y).red() > 200
    screenshot(view, "transform-compare-split")
    # A press away from the line pans instead of moving the split.
    before = split.split
    qtbot.mousePress(split.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(30, 30))
    qtbot.mouseMove(split.viewport(), QPoint(60, 30))
    qtbot.mouseRelease(split.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(60, 30))
    assert split.split == before


def test_side_by_side_zoom_and_pan_stay_in_sync(qtbot):
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(800, 400)
    view.set_mode("side")
    view.show()
    view.set_images(_qimage(640, 480, "#204080"), _qimage(640, 480, "#c08020"))
    qtbot.waitExposed(view)
    left, right = view.pair.left, view.pair.right
    left.set_zoom(2.0)
    assert right.zoom == pytest.approx(2.0) and not right.fitting
    left.horizontalScrollBar().setValue(left.horizontalScrollBar().value() + 50)
    left.verticalScrollBar().setValue(left.verticalScrollBar().value() + 30)
    assert right.horizontalScrollBar().value() == left.horizontalScrollBar().value()
    assert right.verticalScrollBar().value() == left.verticalScrollBar().value()
    right.set_zoom(0.5)
    assert left.zoom == pytest.approx(0.5)
    right.fit_to_window()
    assert left.fitting


def test_mask_painting_eraser_invert_clear(qtbot):
    canvas = MaskCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(420, 320)
    canvas.show()
    canvas.set_picture(_qimage(200, 100, "#808080"))
    qtbot.waitExposed(canvas)
    canvas.brush_size = 10
    assert not canvas.has_mask()

    def at(x: float, y: float) -> QPoint:
        return canvas.mapFromScene(QPointF(x, y))

    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=at(20, 50))
    qtbot.mouseMove(canvas.viewport(), at(100, 50))
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=at(100, 50))
    mask = mask_array(canvas.mask())
    assert mask[50, 60] == 255 and mask[50, 150] == 0 and mask[10, 60] == 0
    painted = canvas.coverage()
    assert 0.02 < painted < 0.1
    canvas.erasing = True
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=at(60, 50))
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=at(60, 50))
    assert mask_array(canvas.mask())[50, 60] == 0 and canvas.coverage() < painted
    canvas.invert_mask()
    assert mask_array(canvas.mask())[50, 60] == 255 and canvas.coverage() > 0.9
    canvas.clear_mask()
    assert not canvas.has_mask()


@pytest.fixture
def transform_window(main_window, qtbot):
    main_window.resize(1360, 860)
    main_window.show()
    panel = main_window.show_workspace("transform")
    qtbot.waitExposed(main_window)
    yield main_window, panel
    panel.shutdown()


def test_cyclegan_job_from_the_panel(transform_window, qtbot, tmp_path, screenshot):
    import torch

    window, panel = transform_window
    folder = window.ctx.paths.models_dir / "cyclegan" / "horse2zebra_pretrained"
    folder.mkdir(parents=True)
    torch.save(tiny_generator(6, 8, seed=1).state_dict(), folder / "latest_net_G.pth")
    panel.cyclegan.refresh()
    qtbot.waitUntil(lambda: not panel.cyclegan.scanning and panel.cyclegan.current() is not None,
                    timeout=10_000)
    assert panel.cyclegan.current().name == "horse2zebra"
    # Catalog entries not installed are offered for download, under the name the library, the
    # results' metadata and the Gallery will use; the catalog's title is their description.
    combo = panel.cyclegan.combo
    offered = {combo.itemText(i): combo.itemData(i, Qt.ItemDataRole.ToolTipRole)
               for i in range(combo.count())}
    assert offered["style_monet  ·  download"] == "Photo → Monet"
    assert not any("Photo → Monet" in text for text in offered)
    photo = _photo(tmp_path / "horse.png", 150, 100)
    panel.receive(photo)
    assert panel.image_path == photo and panel.view_stack.currentWidget() is panel.compare
    with qtbot.waitSignal(panel.jobFinished, timeout=30_000) as done:
        panel.run_button.click()
    job = done.args[0]
    assert job.state.value == "done", job.error
    result = panel.last_result
    assert result.path.is_file() and Image.open(result.path).size == (150, 100)
    assert panel.compare.split_view.has_pair()
    assert "Done · 1 image" in panel.status.text()
    screenshot(window, "transform-cyclegan")


def test_inpaint_job_from_the_panel(transform_window, qtbot, tmp_path, tiny_sd15_dir,
                                    screenshot):
    window, panel = transform_window
    qtbot.waitUntil(lambda: not panel.sd_picker.scanning, timeout=10_000)
    panel.sd_picker.select_model(str(tiny_sd15_dir))
    panel.receive(_photo(tmp_path / "room.png", 80, 64))
    panel.set_mode("inpaint")
    assert panel.view_stack.currentWidget() is panel.canvas and panel.brush.isVisible()
    assert panel.run() == [] and "Paint over" in panel.error_label.text()
    panel.canvas.brush_size = 20
    panel.canvas.paint_line(QPointF(20, 30), QPointF(60, 30))
    panel.diffusion.prompt.setPlainText("a window")
    panel.diffusion.steps.setValue(2)
    screenshot(window, "transform-inpaint-mask")
    with qtbot.waitSignal(panel.jobFinished, timeout=60_000) as done:
        jobs = panel.run()
    assert len(jobs) == 1 and done.args[0].state.value == "done", done.args[0].error
    request = jobs[0].request
    assert request.mask and Image.open(request.mask).size == (80, 64)  # the mask is kept
    assert "Mask: " in panel.last_result.parameters


def test_send_to_transform_from_a_menu(main_window, qtbot, tmp_path):
    from studio.ui.widgets.image_actions import build_image_menu, find_action

    photo = _photo(tmp_path / "made.png")
    sent = []
    menu = build_image_menu(main_window, photo, send_to=lambda key, p: sent.append((key, p)))
    find_action(menu, "sendToTransform").trigger()
    assert sent == [("transform", photo)]
    assert find_action(build_image_menu(main_window, photo), "sendToTransform") is None
    main_window.ctx.openInWorkspace.emit("transform", photo)
    assert main_window.current_workspace() == "transform"
    panel = main_window.panel("transform")
    assert panel.image_path == photo and panel.source_label.text().startswith("made.png")
    panel.shutdown()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_batch_folder_progress_and_cancel_keeps_what_is_done(transform_window, qtbot, tmp_path):
    import torch

    window, panel = transform_window
    folder = window.ctx.paths.models_dir / "cyclegan" / "style_test"
    folder.mkdir(parents=True)
    torch.save(tiny_generator(6, 8, seed=2).state_dict(), folder / "style_test.pth")
    panel.cyclegan.refresh()
    qtbot.waitUntil(lambda: not panel.cyclegan.scanning and panel.cyclegan.current() is not None,
                    timeout=10_000)
    batch = tmp_path / "batch"
    batch.mkdir()
    for i in range(3):  # larger than a tile: each image runs in tiles, cancel lands between them
        _photo(batch / f"p{i}.png", 600, 560, seed=i)
    assert panel.open_folder(batch) == 3 and "3 images" in panel.source_label.text()
    progress = []
    window.ctx.bridge.progress.connect(lambda job, step, total, _p: progress.append((step, total)))
    window.ctx.bridge.partial.connect(lambda job, result: panel.cancel())
    with qtbot.waitSignal(panel.jobFinished, timeout=60_000) as done:
        panel.run_button.click()
    job = done.args[0]
    kept = len(job.partials)
    assert job.state.value == "cancelled" and 1 <= kept < 3
    assert progress and progress[-1][1] == 2 * 2 + 1  # per image: 2×2 tiles + the statistics
    saved = sorted(window.ctx.paths.outputs_dir.rglob("*.png"))
    assert len(saved) == kept and "CycleGAN: style_test" in Image.open(saved[0]).text["parameters"]
    assert panel.status.text() == f"Cancelled — {kept} image{'s' if kept != 1 else ''} kept"
