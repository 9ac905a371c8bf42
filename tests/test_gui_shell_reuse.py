"""Dropping an image on the window shows its generation parameters and can reuse them."""

from __future__ import annotations

import pytest
from PIL import Image, PngImagePlugin
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from studio.core.requests import Txt2ImgRequest

pytestmark = pytest.mark.gui

A1111 = ("a lighthouse on a cliff, golden hour\n"
         "Negative prompt: blurry, text\n"
         "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, "
         "Size: 768x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1")


def write_png(path, parameters: str | None):
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters)
    Image.new("RGB", (96, 64), (200, 120, 40)).save(path, pnginfo=info)
    return path


def drop(window, path) -> bool:
    """Drag ``path`` over the window and drop it, as a file manager would."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    pos = window.rect().center()
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    if not enter.isAccepted():
        return False
    event = QDropEvent(QPointF(pos), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, event)
    return event.isAccepted()


def test_dropping_an_a1111_png_opens_the_reuse_dialog(shell_window, qtbot, tmp_path, screenshot):
    shell_window.show()
    shell_window.show_workspace("gallery")
    path = write_png(tmp_path / "lighthouse.png", A1111)
    assert drop(shell_window, path)
    dialog = shell_window._parameters_dialog
    qtbot.waitExposed(dialog)
    screenshot(dialog, "reuse_dialog")
    assert "AUTOMATIC1111" in dialog.summary.text()
    assert dialog.prompt.toPlainText() == "a lighthouse on a cliff, golden hour"
    assert dialog.negative.toPlainText() == "blurry, text"
    shown = [dialog.grid.itemAt(i).widget().text() for i in range(dialog.grid.count())]
    assert "28" in shown and "1234567" in shown and "768" in shown

    with qtbot.waitSignal(shell_window.ctx.openInWorkspace) as sent:
        qtbot.mouseClick(dialog.reuse_button, Qt.MouseButton.LeftButton)
    key, request = sent.args
    assert key == "generate"
    assert isinstance(request, Txt2ImgRequest)
    assert (request.prompt, request.steps, request.cfg, request.seed) == (
        "a lighthouse on a cliff, golden hour", 28, 6.5, 1234567)
    assert (request.width, request.height, request.scheduler) == (768, 512, "dpmpp_2m_karras")
    # the window switched to Generate and handed it the request
    assert shell_window.current_workspace() == "generate"
    assert shell_window.panel("generate").received == [request]
    assert not dialog.isVisible()


def test_dropping_a_fooocus_png_says_its_seed_is_out_of_range(shell_window, qtbot):
    """A real Fooocus file (tests/fixtures/foreign, MIT): the dialog names Fooocus, shows the LoRA
    list readably and says which seed reuse will use; the request carries that seed."""
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "foreign" / "fooocus1_cropped.png"
    shell_window.show()
    assert drop(shell_window, path)
    dialog = shell_window._parameters_dialog
    summary = dialog.summary.text()
    assert "Fooocus" in summary and "6952411511246973023" in summary
    assert "uses seed 473327711 instead" in summary
    assert dialog.prompt.toPlainText() == "a smiling goldfish"
    with qtbot.waitSignal(shell_window.ctx.openInWorkspace) as sent:
        qtbot.mouseClick(dialog.reuse_button, Qt.MouseButton.LeftButton)
    request = sent.args[1]
    assert (request.seed, request.width, request.height) == (473327711, 768, 1280)


def test_an_image_without_parameters_says_so(shell_window, qtbot, tmp_path):
    shell_window.show()
    path = write_png(tmp_path / "photo.png", None)
    assert drop(shell_window, path)
    dialog = shell_window._parameters_dialog
    assert "This image has no generation parameters" in dialog.summary.text()
    assert dialog.reuse_button is None
    qtbot.mouseClick(dialog.close_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()


def test_other_files_are_not_accepted(shell_window, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello", encoding="utf-8")
    assert not drop(shell_window, text)
    assert not hasattr(shell_window, "_parameters_dialog")
