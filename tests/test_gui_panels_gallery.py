"""Gallery workspace: a real index over real PNGs with parameters, thumbnails off the GUI thread."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from studio.core.config import Settings
from studio.core.requests import Txt2ImgRequest
from studio.media.outputs import save_txt2img_image
from studio.ui.panels.gallery import GalleryPanel
from studio.ui.panels.gallery.model import PathRole
from studio.ui.panels.gallery.panel import ImageDialog
from studio.ui.widgets import image_actions
from studio.ui.widgets.image_actions import find_action
from tests.gui_fixtures import app_context

pytestmark = pytest.mark.gui

PROMPTS = ["a lighthouse on a cliff at dawn", "portrait of a cat astronaut",
           "misty forest with volumetric light", "neon city skyline in the rain",
           "still life with a bowl of fruit"]


@pytest.fixture
def ctx(qtbot):
    context = app_context(Settings(last_model="/models/current"))
    yield context
    context.bridge.shutdown()


def write_image(outputs: Path, i: int, prompt: str | None = None) -> tuple[Path, Txt2ImgRequest]:
    request = Txt2ImgRequest(model="/models/sd15", prompt=prompt or PROMPTS[i % len(PROMPTS)],
                             negative_prompt="blurry", steps=10 + i, cfg=6.5, width=48,
                             height=32, seed=1000 + i, scheduler="euler_a")
    image = Image.new("RGB", (48, 32), ((37 * i) % 256, 120, 200))
    path, _ = save_txt2img_image(image, request, request.seed, outputs, model_name="sd15",
                                 model_hash="abcd", sampler="Euler a", schedule_type="Automatic")
    return path, request


@pytest.fixture
def images(ctx):
    return [write_image(ctx.paths.outputs_dir, i) for i in range(30)]


@pytest.fixture
def panel(qtbot, ctx):
    widget = GalleryPanel(ctx)
    qtbot.addWidget(widget)
    widget.resize(1200, 800)
    yield widget
    widget.shutdown()


def show_and_load(qtbot, panel):
    with qtbot.waitSignal(panel.itemsLoaded, timeout=10_000) as sig:
        panel.show()
    return sig.args[0]


def test_lists_every_image_newest_first_and_loads_thumbnails(qtbot, panel, images):
    assert show_and_load(qtbot, panel) == 30
    assert panel.count_label.text() == "30 images"
    listed = [Path(panel.model.item(r).path) for r in range(panel.model.rowCount())]
    assert set(listed) == {p for p, _ in images}
    assert listed[0] == images[-1][0]  # the newest (written last) first
    # Thumbnails of the tiles on screen arrive (loaded on the pool, delivered as QImage).
    first = str(listed[0])
    qtbot.waitUntil(lambda: panel.loader.cached(first, panel._thumb_px) is not None,
                    timeout=10_000)
    thumb = panel.loader.cached(first, panel._thumb_px)
    assert not thumb.isNull() and thumb.width() <= panel._thumb_px
    # The newest image is selected and described.
    assert panel.details.path == listed[0]


def test_search_filters_by_prompt(qtbot, panel, images):
    show_and_load(qtbot, panel)
    with qtbot.waitSignal(panel.itemsLoaded, timeout=5000) as sig:
        qtbot.keyClicks(panel.search, "LIGHTHOUSE")
    assert sig.args[0] == 6
    prompts = {panel.model.item(r).prompt for r in range(panel.model.rowCount())}
    assert prompts == {PROMPTS[0]}
    with qtbot.waitSignal(panel.itemsLoaded, timeout=5000) as sig:
        panel.search.setText("no such thing")
    assert sig.args[0] == 0
    assert panel.stack.currentWidget() is panel.empty
    assert "No images match" in panel.empty.text()


def test_selecting_shows_parameters_and_reuse_emits_the_request(qtbot, panel, images):
    show_and_load(qtbot, panel)
    path, request = images[7]
    assert panel.select_path(path)
    qtbot.waitUntil(lambda: panel.details.request is not None, timeout=5000)
    fields = panel.details.fields
    assert fields["seed"].text() == "1007"
    assert fields["steps"].text() == "17"
    assert fields["cfg"].text() == "6.5"
    assert fields["size"].text() == "48 × 32"
    assert fields["sampler"].text() == "Euler a"
    assert fields["model"].text() == "sd15"
    assert fields["source"].text() == "Studio"
    assert panel.details.prompt.text() == request.prompt
    assert panel.details.negative.text() == "blurry"
    assert panel.details.reuse_button.isEnabled()
    with qtbot.waitSignal(ctx_signal(panel), timeout=2000) as sig:
        qtbot.mouseClick(panel.details.reuse_button, Qt.MouseButton.LeftButton)
    key, rebuilt = sig.args
    assert key == "generate"
    assert rebuilt == request  # the exact request: same model, seed, scheduler, count 1


def ctx_signal(panel):
    return panel.ctx.openInWorkspace


def test_image_without_parameters_cannot_be_reused(qtbot, panel, ctx):
    plain = ctx.paths.outputs_dir / "photo.png"
    plain.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), "white").save(plain)
    show_and_load(qtbot, panel)
    assert panel.select_path(plain.resolve())
    qtbot.waitUntil(lambda: panel.details.meta is not None, timeout=5000)
    assert not panel.details.reuse_button.isEnabled()
    assert panel.details.fields["source"].text().startswith("Unknown")


def test_delete_removes_the_file_and_the_tile(qtbot, panel, images, monkeypatch):
    asked = []
    monkeypatch.setattr(image_actions, "confirm_delete", lambda parent, p: asked.append(p) or True)
    show_and_load(qtbot, panel)
    path, _ = images[3]
    panel.select_path(path)
    qtbot.mouseClick(panel.details.delete_button, Qt.MouseButton.LeftButton)
    assert asked == [path]
    assert not path.exists()
    assert panel.model.row_of(str(path)) == -1 and panel.model.rowCount() == 29
    assert panel.count_label.text() == "29 images"
    # The index forgot it too: a fresh listing does not bring it back.
    with qtbot.waitSignal(panel.itemsLoaded, timeout=5000) as sig:
        panel.reload()
    assert sig.args[0] == 29


def test_declining_the_confirmation_keeps_the_file(qtbot, panel, images, monkeypatch):
    monkeypatch.setattr(image_actions, "confirm_delete", lambda parent, p: False)
    show_and_load(qtbot, panel)
    path, _ = images[0]
    index = panel.model.index(panel.model.row_of(str(path)))
    find_action(panel.context_menu_for(index), "deleteImage").trigger()
    assert path.exists() and panel.model.rowCount() == 30


def test_new_outputs_appear_when_written(qtbot, panel, images, ctx):
    show_and_load(qtbot, panel)
    new_path, _ = write_image(ctx.paths.outputs_dir, 99, prompt="a brand new dragon")
    with qtbot.waitSignal(panel.itemsLoaded, timeout=5000) as sig:
        ctx.outputWritten.emit(new_path)
    assert sig.args[0] == 31
    assert panel.model.item(0).prompt == "a brand new dragon"


def test_context_menu_reuse_and_drag_data(qtbot, panel, images):
    show_and_load(qtbot, panel)
    path, request = images[5]
    index = panel.model.index(panel.model.row_of(str(path)))
    with qtbot.waitSignal(panel.ctx.openInWorkspace, timeout=2000) as sig:
        find_action(panel.context_menu_for(index), "reuseParameters").trigger()
    assert sig.args[1] == request
    mime = panel.model.mimeData([index])
    assert [Path(u.toLocalFile()) for u in mime.urls()] == [path]
    assert mime.hasImage()
    assert index.data(PathRole) == str(path)


def test_empty_gallery_says_where_images_come_from(qtbot, panel):
    assert show_and_load(qtbot, panel) == 0
    assert panel.stack.currentWidget() is panel.empty
    assert "Images you generate appear here" in panel.empty.text()


def test_double_click_opens_a_large_zoomable_view(qtbot, panel, images):
    show_and_load(qtbot, panel)
    path, _ = images[2]
    index = panel.model.index(panel.model.row_of(str(path)))
    rect = panel.view.visualRect(index)
    # A real double-click is press, release, then the double-click event.
    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    dialogs = [w for w in panel.findChildren(ImageDialog) if w.isVisible()]
    assert len(dialogs) == 1
    assert dialogs[0].view.image_size() == (48, 32)
    dialogs[0].close()


def test_moving_the_outputs_folder_in_settings_shows_the_new_folder(qtbot, panel, images, ctx,
                                                                     tmp_path):
    show_and_load(qtbot, panel)
    elsewhere = tmp_path / "elsewhere"
    write_image(elsewhere, 0, prompt="in the new folder")
    with qtbot.waitSignal(panel.itemsLoaded, timeout=5000) as sig:
        ctx.update_settings(dataclasses.replace(ctx.settings, output_dir=str(elsewhere)))
    assert sig.args[0] == 1
    assert panel.model.item(0).prompt == "in the new folder"


def test_the_viewer_fits_the_screen_and_arrow_keys_move_through_the_gallery(qtbot, panel,
                                                                          images):
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    show_and_load(qtbot, panel)
    rows = [panel.model.index(r).data(PathRole) for r in range(panel.model.rowCount())]
    dialog = panel.open_large(rows[1])
    qtbot.waitExposed(dialog)
    room = dialog.screen().availableGeometry()
    assert dialog.width() <= room.width() and dialog.height() <= room.height()
    assert room.contains(dialog.geometry())
    assert Path(dialog.path) == Path(rows[1]) and "2 of 30" in dialog.windowTitle()

    qtbot.waitUntil(lambda: QApplication.activeWindow() is dialog, timeout=10_000)
    window = dialog.windowHandle()
    QTest.keyClick(window, Qt.Key.Key_Right)
    assert dialog.path == Path(rows[2]) and "3 of 30" in dialog.windowTitle()
    assert panel.details.path and Path(panel.details.path) == Path(rows[2])  # the grid follows
    QTest.keyClick(window, Qt.Key.Key_Left)
    QTest.keyClick(window, Qt.Key.Key_Left)
    assert dialog.path == Path(rows[0])
    QTest.keyClick(window, Qt.Key.Key_Left)  # the first stays the first
    assert dialog.path == Path(rows[0])
    QTest.keyClick(window, Qt.Key.Key_End)
    assert dialog.path == Path(rows[-1]) and "30 of 30" in dialog.windowTitle()
    QTest.keyClick(window, Qt.Key.Key_Home)
    assert dialog.path == Path(rows[0]) and dialog.view.image_size() == (48, 32)
    dialog.close()


def test_the_viewer_is_never_larger_than_a_small_screen(qtbot, ctx, monkeypatch, tmp_path):
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QImage

    from studio.ui.panels.gallery import widgets

    monkeypatch.setattr(widgets, "available_geometry", lambda _w: QRect(0, 0, 1366, 728))
    big = QImage(4000, 3000, QImage.Format.Format_RGB32)
    big.fill(Qt.GlobalColor.darkCyan)
    dialog = ImageDialog(tmp_path / "big.png", big)
    qtbot.addWidget(dialog)
    assert dialog.width() <= 1366 * 0.9 and dialog.height() <= 728 * 0.9
    assert dialog.width() >= 640 and dialog.height() >= 480


def test_upscale_in_the_menu_sends_the_image_to_transforms_upscale_tab(qtbot, panel, images,
                                                                     ctx):
    show_and_load(qtbot, panel)
    path, _ = images[0]
    index = panel.model.index(panel.model.row_of(str(path)))
    with qtbot.waitSignal(ctx.openInWorkspace, timeout=1000) as sig:
        find_action(panel.context_menu_for(index), "upscaleImage").trigger()
    key, sent = sig.args
    assert key == "transform" and (sent.path, sent.mode) == (path, "upscale")


def test_classify_says_the_top_classes_of_the_trained_cnn(qtbot, panel, images, ctx, tmp_path):
    from tests.test_train_e_cnn import trained_run, write_images

    show_and_load(qtbot, panel)
    path, _ = images[0]
    index = panel.model.index(panel.model.row_of(str(path)))
    find_action(panel.context_menu_for(index), "classifyImage").trigger()
    qtbot.waitUntil(lambda: "No trained CNN yet" in panel.last_classification, timeout=60_000)
    write_images(tmp_path / "data" / "red", 6, colour=(220, 40, 40))
    write_images(tmp_path / "data" / "blue", 6, colour=(30, 40, 220))
    trained_run(ctx.paths.runs_dir, tmp_path / "data")
    panel.last_classification = ""
    panel.classify(path)
    qtbot.waitUntil(lambda: "the CNN of run" in panel.last_classification, timeout=60_000)
    assert panel.last_classification.startswith(f"{path.name}: ")
    assert "%" in panel.last_classification


def test_classify_with_an_exported_classifier_names_it_or_asks_which(qtbot, panel, images, ctx):
    from PySide6.QtWidgets import QInputDialog

    from studio.pipelines.train.export import export_trainer
    from studio.pipelines.train.federated import FederatedTrainer

    show_and_load(qtbot, panel)
    path, _ = images[0]
    index = panel.model.index(panel.model.row_of(str(path)))
    find_action(panel.context_menu_for(index), "classifyWithModel").trigger()
    qtbot.waitUntil(lambda: "No exported classifier yet" in panel.last_classification,
                    timeout=30_000)
    trainer = FederatedTrainer(config={"local_steps": 1, "hidden": 4}, seed=0)
    trainer.step()
    for name in ("fed-a", "fed-b"):
        export_trainer(trainer, ctx.paths.models_dir, name)
    panel.classify_with_model(path, "fed-b")
    qtbot.waitUntil(lambda: "the classifier fed-b" in panel.last_classification, timeout=60_000)
    assert panel.last_classification.startswith(f"{path.name}: ") and "%" in \
        panel.last_classification
    panel.classify_with_model(path)  # two of them: a short list asks which
    qtbot.waitUntil(lambda: panel.findChild(QInputDialog, "classifierPicker") is not None,
                    timeout=30_000)
    picker = panel.findChild(QInputDialog, "classifierPicker")
    picker.setTextValue("fed-a")
    picker.accept()
    qtbot.waitUntil(lambda: "the classifier fed-a" in panel.last_classification, timeout=60_000)
