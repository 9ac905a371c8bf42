"""Render ``assets/icons/studio.svg`` to a PNG with Qt, for the installers' icons.

PyInstaller turns the PNG into the Windows ``.ico`` and the macOS ``.icns`` (with Pillow); the
Linux AppImage and ``.desktop`` entry use it as is. ``python packaging/make_icon.py OUT.png [SIZE]``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "assets" / "icons" / "studio.svg"
ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 128, 256)


def render_icon(out: Path, size: int = 512) -> Path:
    """Write the app icon as a ``size``×``size`` PNG at ``out`` (an ``.ico`` also holds every
    smaller size Windows uses); returns ``out``."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # noqa: F841 - Qt needs it
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {SVG}")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".ico":
        # Windows picks the size it needs from the .ico (16 px in a list, 32 on the desktop, 256
        # in a large view): one image per size, each scaled down from the full one by Pillow.
        from PIL import Image

        png = out.with_suffix(".ico.png")
        image.save(str(png))
        with Image.open(png) as full:
            full.save(out, sizes=[(s, s) for s in ICO_SIZES if s <= size])
        png.unlink()
        return out
    if not image.save(str(out)):
        raise SystemExit(f"cannot write {out}")
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "icon" / "studio.png"
    print(render_icon(target, int(sys.argv[2]) if len(sys.argv) > 2 else 512))
