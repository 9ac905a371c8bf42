"""What a person can do with an image file, shared by every place that shows one.

:func:`build_image_menu` gives the right-click menu (Copy, Save as…, Open, Show in folder, Reuse
parameters, Delete). :func:`image_mime_data` / :func:`start_image_drag` let a file be dragged out to
a file manager or another application (file URL plus the pixels).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QDrag, QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QWidget

from studio.core.files import atomic_write


def copy_image(path: str | Path) -> bool:
    """Put the image's pixels on the clipboard; False if the file cannot be read."""
    image = QImage(str(path))
    if image.isNull():
        return False
    # setImage lets Qt build the mime data in C++: a QMimeData made in Python and handed to the
    # clipboard is freed twice when the app exits (PySide 6.11: a segfault on quit).
    QGuiApplication.clipboard().setImage(image)
    return True


def save_copy(source: str | Path, target: str | Path) -> Path:
    """Copy ``source`` to ``target`` atomically; a different extension re-encodes the pixels."""
    source, target = Path(source), Path(target)
    if target.suffix.lower() == source.suffix.lower() or not target.suffix:
        with open(source, "rb") as fh:
            atomic_write(target, lambda out: shutil.copyfileobj(fh, out))
        return target
    from PIL import Image

    fmt = Image.registered_extensions().get(target.suffix.lower())
    if fmt is None:
        raise ValueError(f"Cannot save as {target.suffix} — use .png, .jpg or .webp.")
    with Image.open(source) as im:
        im = im.convert("RGB") if fmt == "JPEG" else im.copy()
    atomic_write(target, lambda out: im.save(out, format=fmt))
    return target


def save_image_as(parent: QWidget | None, path: str | Path) -> Path | None:
    """Ask where to save a copy of ``path`` and write it; None if the user cancelled."""
    path = Path(path)
    target, _ = QFileDialog.getSaveFileName(
        parent, "Save image as", str(Path.home() / path.name),
        "PNG image (*.png);;JPEG image (*.jpg *.jpeg);;WebP image (*.webp)")
    if not target:
        return None
    try:
        return save_copy(path, target)
    except (OSError, ValueError) as exc:
        QMessageBox.warning(parent, "Could not save the image", str(exc))
        return None


def open_file(path: str | Path) -> bool:
    """Open the image in the system's default viewer."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


def open_folder(path: str | Path) -> bool:
    """Open the folder that holds ``path`` in the file manager."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(path).parent)))


def confirm_delete(parent: QWidget | None, path: str | Path) -> bool:
    """Ask before deleting; tests replace this function to answer without a dialog."""
    answer = QMessageBox.question(
        parent, "Delete image",
        f"Delete {Path(path).name}?\n\nThe file is removed from disk; this cannot be undone.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel)
    return answer == QMessageBox.StandardButton.Yes


def delete_image(parent: QWidget | None, path: str | Path, confirm: bool = True) -> bool:
    """Delete the file after asking; True if it is gone."""
    path = Path(path)
    if confirm and not confirm_delete(parent, path):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return True
    except OSError as exc:
        QMessageBox.warning(parent, "Could not delete the image", str(exc))
        return False
    return True


def image_mime_data(paths: Sequence[str | Path], image: QImage | None = None) -> QMimeData:
    """File URLs (for file managers) plus the first image's pixels (for image editors)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    if paths:
        pixels = image if image is not None and not image.isNull() else QImage(str(paths[0]))
        if not pixels.isNull():
            mime.setImageData(pixels)
    return mime


def start_image_drag(source: QWidget, paths: Sequence[str | Path],
                     icon: QImage | QPixmap | None = None) -> None:
    """Drag image files out of ``source`` (copy, never move: the outputs folder stays intact)."""
    if not paths:
        return
    drag = QDrag(source)
    drag.setMimeData(image_mime_data(paths))
    if icon is not None and not icon.isNull():
        pixmap = icon if isinstance(icon, QPixmap) else QPixmap.fromImage(icon)
        drag.setPixmap(pixmap.scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.SmoothTransformation))
    drag.exec(Qt.DropAction.CopyAction)


@dataclass(frozen=True)
class OpenInMode:
    """An image sent to a workspace to open in one of its modes ("Upscale…": Transform's
    Upscale tab, as A1111's "Send to extras"; "Describe in Chat": Chat's ``describe`` or
    ``prompt`` question with the image attached)."""

    path: Path
    mode: str


#: What "Describe in Chat" and "Write a prompt for this" ask, by OpenInMode.mode.
CHAT_QUESTIONS = {
    "describe": "Describe this image.",
    "prompt": "Write a text-to-image prompt that would produce this image: the subject, the "
              "style, the lighting and the composition, as one paragraph of comma-separated "
              "phrases.",
}


def build_image_menu(parent: QWidget, path: str | Path, *,
                     reuse: Callable[[], Any] | None = None,
                     on_deleted: Callable[[Path], None] | None = None,
                     show_open: bool = True,
                     send_to: Callable[[str, Path], Any] | None = None,
                     classify: Callable[[Path], Any] | None = None,
                     upscale: Callable[[Path], Any] | None = None,
                     classify_with: Callable[[Path], Any] | None = None,
                     chat: Callable[[OpenInMode], Any] | None = None) -> QMenu:
    """The right-click menu for one image file.

    ``reuse`` is called for "Reuse parameters" (the action is disabled when it is None);
    ``on_deleted(path)`` after the file was deleted; ``send_to(workspace, path)`` for
    "Send to Transform" (shown only when given); ``classify(path)`` for "Classify with the
    trained CNN", ``classify_with(path)`` for "Classify with an exported model…" and
    ``upscale(path)`` for "Upscale…" (each shown only when given);
    ``chat(OpenInMode(path, "describe" | "prompt"))`` for "Describe in Chat" and "Write a
    prompt for this in Chat" (shown when given).
    """
    path = Path(path)
    menu = QMenu(parent)

    def add(text: str, name: str, slot: Callable[[], Any], enabled: bool = True) -> None:
        action = menu.addAction(text)
        action.setObjectName(name)
        action.setEnabled(enabled)
        action.triggered.connect(slot)

    add("Copy image", "copyImage", lambda: copy_image(path))
    add("Save as…", "saveAs", lambda: save_image_as(parent, path))
    if show_open:
        add("Open", "openFile", lambda: open_file(path))
    add("Show in folder", "openFolder", lambda: open_folder(path))
    menu.addSeparator()
    add("Reuse parameters", "reuseParameters", (lambda: reuse()) if reuse else (lambda: None),
        enabled=reuse is not None)
    if send_to is not None:
        add("Send to Transform", "sendToTransform", lambda: send_to("transform", path))
    if upscale is not None:
        add("Upscale…", "upscaleImage", lambda: upscale(path))
    if classify is not None:
        add("Classify with the trained CNN", "classifyImage", lambda: classify(path))
    if classify_with is not None:
        add("Classify with an exported model…", "classifyWithModel", lambda: classify_with(path))
    if chat is not None:
        add("Describe in Chat", "describeInChat", lambda: chat(OpenInMode(path, "describe")))
        add("Write a prompt for this in Chat", "promptInChat",
            lambda: chat(OpenInMode(path, "prompt")))
    menu.addSeparator()

    def _delete() -> None:
        if delete_image(parent, path) and on_deleted is not None:
            on_deleted(path)

    add("Delete…", "deleteImage", _delete)
    return menu


def find_action(menu: QMenu, name: str) -> QAction | None:
    """The action with object name ``name`` in ``menu`` (or None)."""
    return next((a for a in menu.actions() if a.objectName() == name), None)
