"""Paints one message of the conversation view: a Markdown body and a row of small actions.

Only visible rows are painted, and each body's laid-out ``QTextDocument`` is cached by message
and text, so streaming a reply re-renders that one bubble only. Clicks on the action row and on a
code block's "Copy" link, a reference under a reply grounded in documents ("source", N) and its
"What the model was given" link ("given") are turned into :attr:`MessageDelegate.action` signals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QPointF,
    QRect,
    QRectF,
    QSize,
    Qt,
    QUrl,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QTextDocument
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem, QWidget

from studio.core.wording import count_of
from studio.pipelines.chat.store import Message
from studio.ui.panels.chat.markdown import render
from studio.ui.panels.chat.model import MarkerRole, MessageRole
from studio.ui.panels.chat.sources import sources_html
from studio.ui.theme import colors

MAX_WIDTH = 780  # a readable line length, centred in wide windows
SIDE = 24
PAD = 12  # inside a bubble
HEADER = 20
FOOTER = 26
GAP = 10
MARKER_HEIGHT = 40
IMAGE_SIDE = 160  # an attached image in the transcript, at most this many pixels a side


def _tok_stats(m: Message) -> str:
    meta = m.meta or {}
    parts = []
    if m.tokens:
        parts.append(count_of(m.tokens, "token"))
    if meta.get("tokens_per_second"):
        parts.append(f"{meta['tokens_per_second']:.1f} tok/s")
    if meta.get("finish_reason") == "cancelled":
        parts.append("stopped")
    elif meta.get("finish_reason") == "length":
        parts.append("hit the length limit")
    return " · ".join(parts)


class MessageDelegate(QStyledItemDelegate):
    """Message bubbles; ``action(name, message, payload)`` on clicks (copy, edit, ...)."""

    action = Signal(str, object, object)

    def __init__(self, view: QWidget, model_name: Callable[[], str] | None = None) -> None:
        super().__init__(view)
        self._view = view
        self._docs: dict[int, tuple[tuple, QTextDocument, list[str]]] = {}
        self.model_name = model_name or (lambda: "Assistant")
        self.last_id: int | None = None  # the message that may be regenerated
        self.busy = False
        self.expanded: set[int] = set()  # replies showing "What the model was given"
        self._small = QFont(view.font())
        self._small.setPointSizeF(max(7.5, view.font().pointSizeF() - 1.5))

    def clear_cache(self) -> None:
        self._docs.clear()

    # -- layout ------------------------------------------------------------------------------
    def _content_rect(self, rect: QRect) -> QRect:
        width = min(MAX_WIDTH, rect.width() - 2 * SIDE)
        left = rect.left() + (rect.width() - width) // 2
        return QRect(left, rect.top(), max(120, width), rect.height())

    def _doc(self, m: Message, width: int) -> tuple[QTextDocument, list[str]]:
        c = colors()
        text = m.content + ("▍" if not m.complete else "")
        sources = sources_html(m.meta, m.id in self.expanded, c.muted) if m.complete else ""
        key = (text, width, c.name, sources)
        cached = self._docs.get(m.id)
        if cached and cached[0] == key:
            return cached[1], cached[2]
        doc = QTextDocument()
        doc.setDefaultFont(self._view.font())
        doc.setDocumentMargin(0)
        doc.setDefaultStyleSheet(f"a {{ color: {c.accent}; }} code {{ color: {c.accent_hover}; }}"
                                 f"h1, h2, h3 {{ margin-top: 4px; }}")
        images = list((m.meta or {}).get("images") or [])
        if m.role == "user" and images:
            _images_and_text(doc, images, text)
            blocks: list[str] = []
        elif m.role == "user":
            doc.setPlainText(text)
            blocks = []
        else:
            rendered = render(text or " ", dark=c.name == "dark",
                              code_bg="#0f1014" if c.name == "dark" else "#f1f2f6",
                              muted=c.muted, accent=c.accent)
            doc.setHtml(rendered.html + sources)
            blocks = rendered.code_blocks
        doc.setTextWidth(width)
        if m.role == "user":  # a short message gets a snug bubble
            doc.setTextWidth(min(width, doc.idealWidth() + 2))
        self._docs[m.id] = (key, doc, blocks)
        return doc, blocks

    def _layout(self, rect: QRect, m: Message) -> dict[str, Any]:
        content = self._content_rect(rect)
        user = m.role == "user"
        body_width = int(content.width() * 0.8) - 2 * PAD if user else content.width()
        doc, blocks = self._doc(m, max(60, body_width))
        size = doc.size()
        top = rect.top() + GAP // 2
        header = QRect(content.left(), top, content.width(), HEADER)
        if user:
            bw = int(size.width()) + 2 * PAD
            bubble = QRect(content.right() - bw, header.bottom() + 2, bw,
                           int(size.height()) + 2 * PAD)
            body_origin = QPointF(bubble.left() + PAD, bubble.top() + PAD)
        else:
            bubble = QRect(content.left(), header.bottom() + 2, content.width(),
                           int(size.height()))
            body_origin = QPointF(bubble.left(), bubble.top())
        footer = QRect(content.left(), bubble.bottom() + 4, content.width(), FOOTER - 4)
        return {"content": content, "header": header, "bubble": bubble, "origin": body_origin,
                "doc": doc, "blocks": blocks, "footer": footer,
                "height": footer.bottom() - rect.top() + GAP // 2,
                "buttons": self._buttons(footer, m)}

    def _buttons(self, footer: QRect, m: Message) -> list[tuple[str, QRect, str]]:
        fm = QFontMetrics(self._small)
        names: list[tuple[str, str]] = []
        if m.sibling_count > 1:
            names += [("prev", "‹"), ("branch", f"{m.sibling_index + 1}/{m.sibling_count}"),
                      ("next", "›")]
        names.append(("copy", "Copy"))
        if m.role == "assistant" and m.meta.get("logprobs") and m.complete:
            names.append(("probabilities", "Probabilities"))
        if not self.busy:
            if m.role == "user":
                names.append(("edit", "Edit"))
            elif m.id == self.last_id:
                names.append(("regenerate", "Regenerate"))
            names.append(("delete", "Delete"))
        out, x = [], footer.left()
        if m.role == "user":  # actions under a user bubble line up with its right edge
            total = sum(fm.horizontalAdvance(t) + 14 for _n, t in names)
            x = footer.right() - total
        for name, text in names:
            w = fm.horizontalAdvance(text) + 14
            out.append((name, QRect(x, footer.top(), w, footer.height()), text))
            x += w
        return out

    # -- QStyledItemDelegate -----------------------------------------------------------------
    def sizeHint(self, option: QStyleOptionViewItem,
                 index: QModelIndex | QPersistentModelIndex) -> QSize:
        width = self._view.viewport().width()
        if index.data(MarkerRole) is not None:
            return QSize(width, MARKER_HEIGHT)
        m: Message = index.data(MessageRole)
        return QSize(width, self._layout(QRect(0, 0, width, 0), m)["height"])

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        c = colors()
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        dropped = index.data(MarkerRole)
        if dropped is not None:
            self._paint_marker(painter, option.rect, int(dropped))
            painter.restore()
            return
        m: Message = index.data(MessageRole)
        lay = self._layout(option.rect, m)
        painter.setFont(self._small)
        painter.setPen(QColor(c.muted))
        who = "You" if m.role == "user" else self.model_name()
        align = Qt.AlignmentFlag.AlignRight if m.role == "user" else Qt.AlignmentFlag.AlignLeft
        painter.drawText(lay["header"], align | Qt.AlignmentFlag.AlignVCenter, who)
        if m.role == "user":
            painter.setPen(Qt.PenStyle.NoPen)
            tint = QColor(c.accent)
            tint.setAlpha(60 if c.name == "dark" else 36)
            painter.setBrush(tint)
            painter.drawRoundedRect(QRectF(lay["bubble"]), 14, 14)
        painter.translate(lay["origin"])
        lay["doc"].drawContents(painter)
        painter.translate(-lay["origin"])
        self._paint_footer(painter, lay, m)
        painter.restore()

    def _paint_footer(self, painter: QPainter, lay: dict, m: Message) -> None:
        c = colors()
        painter.setFont(self._small)
        for name, rect, text in lay["buttons"]:
            painter.setPen(QColor(c.text if name == "branch" else c.muted))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
        if m.role != "assistant":
            return
        error = (m.meta or {}).get("error")
        stats = error or _tok_stats(m)
        if stats:
            painter.setPen(QColor(c.failed if error else c.muted))
            painter.drawText(lay["footer"], Qt.AlignmentFlag.AlignRight
                             | Qt.AlignmentFlag.AlignVCenter, stats)

    def _paint_marker(self, painter: QPainter, rect: QRect, dropped: int) -> None:
        c = colors()
        content = self._content_rect(rect)
        y = rect.center().y()
        text = (f"{dropped} earlier message{'s' if dropped != 1 else ''} "
                "left out — beyond the model's context")
        painter.setFont(self._small)
        fm = QFontMetrics(self._small)
        tw = fm.horizontalAdvance(text) + 24
        painter.setPen(QColor(c.queued))
        left = content.left()
        mid = content.center().x()
        painter.drawLine(left, y, mid - tw // 2, y)
        painter.drawLine(mid + tw // 2, y, content.right(), y)
        painter.drawText(QRect(mid - tw // 2, rect.top(), tw, rect.height()),
                         Qt.AlignmentFlag.AlignCenter, text)

    def editorEvent(self, event: QEvent, model: QAbstractItemModel,
                    option: QStyleOptionViewItem,
                    index: QModelIndex | QPersistentModelIndex) -> bool:
        if event.type() != QEvent.Type.MouseButtonRelease or index.data(MessageRole) is None:
            return False
        m: Message = index.data(MessageRole)
        lay = self._layout(option.rect, m)
        pos = event.position().toPoint()
        for name, rect, _text in lay["buttons"]:
            if rect.contains(pos):
                self.action.emit(name, m, None)
                return True
        anchor = lay["doc"].documentLayout().anchorAt(QPointF(pos) - lay["origin"])
        if anchor.startswith("copy-code:"):
            n = int(anchor.split(":", 1)[1])
            if n < len(lay["blocks"]):
                self.action.emit("copy-code", m, lay["blocks"][n])
                return True
        if anchor.startswith("source:"):
            self.action.emit("source", m, int(anchor.split(":", 1)[1]))
            return True
        if anchor == "given:":
            self.action.emit("given", m, None)
            return True
        return False


def _images_and_text(doc: QTextDocument, images: list[str], text: str) -> None:
    """A user message with attached images: each as a thumbnail (a missing file says so), then
    the text."""
    import html

    parts = []
    for n, path in enumerate(images):
        image = QImage(str(path))
        if image.isNull():
            parts.append(f"<i>[image not found: {html.escape(str(path))}]</i><br>")
            continue
        image = image.scaled(IMAGE_SIDE, IMAGE_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
        url = QUrl(f"studio-image:{n}")
        doc.addResource(QTextDocument.ResourceType.ImageResource, url, image)
        parts.append(f'<img src="{url.toString()}" width="{image.width()}" '
                     f'height="{image.height()}"><br>')
    body = html.escape(text).replace("\n", "<br>")
    doc.setHtml("".join(parts) + body)
