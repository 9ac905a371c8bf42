"""The views of the text lessons: the tokenizer (tokens per word against the vocabulary, the
latest merges, your text cut into coloured tokens, and a chat model's tokenizer beside it), and
the two language models (their samples; for the GPT also the attention maps of each head for
your sentence, and the token embeddings projected to 2D).
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import (
    QPlainTextEdit,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from studio.core.wording import count_of
from studio.ui.panels.train import plotting as pk
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.views.cnn import image_plot
from studio.ui.panels.train.widgets import ElidedLabel, caption, plot_grid
from studio.ui.theme import colors

#: token backgrounds, cycled (light enough for dark text, and the text is set dark on them)
TOKEN_COLOURS = ("#fde68a", "#bfdbfe", "#bbf7d0", "#fecaca", "#ddd6fe", "#fed7aa")
LABELLED_EMBEDDINGS = 40  # the most frequent tokens get their text beside their point


def tokens_html(pieces: list[str]) -> str:
    """The pieces of a text, each on its own background colour (spaces shown as '·', new lines
    as '⏎')."""
    spans = []
    for i, piece in enumerate(pieces):
        text = html.escape(piece.replace(" ", "·").replace("\n", "⏎"))
        spans.append(f'<span style="background:{TOKEN_COLOURS[i % len(TOKEN_COLOURS)]};'
                     f'color:#111">{text}</span>')
    return "".join(spans)


def _text_box(name: str, rich: bool = False) -> QTextBrowser | QPlainTextEdit:
    box: QTextBrowser | QPlainTextEdit = QTextBrowser() if rich else QPlainTextEdit()
    box.setObjectName(name)
    box.setReadOnly(True)
    box.setMinimumSize(120, 60)
    return box


class TokenizerView(LessonView):
    """A BPE tokenizer growing its vocabulary."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self.curve_plot = pk.themed_plot()
        self.curve_plot.setObjectName("tokensPerWord")
        self.curve = self.curve_plot.plot([], [], symbol="o", symbolSize=5)
        self.merges_box = _text_box("merges")
        self.tokens_box = _text_box("tokens", rich=True)
        self.curve_caption = caption("Tokens per word", tip="Tokens per word of the text's last "
                                     "part, against the vocabulary size")
        self.merges_caption = caption("Latest merges", tip="The newest merges first: the pair "
                                      "joined, and the token it made (Ġ is a space)")
        self.tokens_caption = caption("Your text in tokens",
                                      tip="Your text (Your text) cut into tokens, one colour each")
        layout = plot_grid(self)
        layout.addWidget(self.curve_caption, 0, 0)
        layout.addWidget(self.curve_plot, 1, 0, 3, 1)
        layout.addWidget(self.merges_caption, 0, 1)
        layout.addWidget(self.merges_box, 1, 1)
        layout.addWidget(self.tokens_caption, 2, 1)
        layout.addWidget(self.tokens_box, 3, 1)
        for i in (0, 1):  # two equal columns; the two boxes share the height
            layout.setColumnStretch(i, 1)
            layout.setRowStretch(2 * i + 1, 1)
        self.apply_theme()

    def apply_theme(self) -> None:
        c = colors()
        pk.restyle(self.curve_plot)
        self.curve.setPen(pg.mkPen(c.accent, width=2))
        self.curve.setSymbolBrush(pg.mkBrush(c.accent))
        item = self.curve_plot.getPlotItem()
        item.setLabel("bottom", "vocabulary size", color=c.muted)
        item.setLabel("left", "tokens per word", color=c.muted)

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        history = snapshot["history"]
        self.curve.setData(history[:, 0], history[:, 1])
        self.curve_caption.set_full_text(
            f"Tokens per word · {count_of(snapshot['vocab'], 'token')}")
        lines = [f"#{n}  {a} + {b}  →  {made!r}" for n, a, b, made in snapshot["merges"]]
        text = "\n".join(lines) or "No merges yet: every token is a byte."
        if self.merges_box.toPlainText() != text:
            self.merges_box.setPlainText(text)
        pieces = snapshot["pieces"]
        body = (f"<p><b>This tokenizer</b> ({count_of(snapshot['vocab'], 'token')}): "
                f"{count_of(len(pieces), 'token')}</p><p>{tokens_html(pieces)}</p>")
        if snapshot.get("compare_note"):
            body += f"<p>{html.escape(snapshot['compare_note'])}</p>"
        elif snapshot.get("compare_name"):
            other = snapshot["compare_pieces"]
            body += (f"<p><b>{html.escape(snapshot['compare_name'])}</b> "
                     f"({count_of(snapshot['compare_vocab'], 'token')}, "
                     f"{snapshot['compare_tpw']:.2f} per word here): "
                     f"{count_of(len(other), 'token')}"
                     f"</p><p>{tokens_html(other)}</p>")
        if getattr(self, "_body", None) != body:
            self._body = body
            self.tokens_box.setHtml(body)

    def reset(self) -> None:
        self.curve.setData([], [])
        self._body = None

    def export_items(self) -> dict[str, QWidget]:
        return {"Tokens per word": self.curve_plot}


class LanguageModelView(LessonView):
    """Samples of a language model; for the GPT, attention maps and embeddings too."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self.gpt = lesson_key == "gpt"
        self.samples_caption = caption("Samples", tip="What the model writes from a new line, "
                                       "every 'Sample every' steps (newest first)")
        self.samples_box = _text_box("samples")
        layout = plot_grid(self)
        side = QVBoxLayout()
        side.setSpacing(4)
        side.addWidget(self.samples_caption)
        side.addWidget(self.samples_box, 1)
        layout.addLayout(side, 0, 0, 4, 1)
        layout.setColumnStretch(0, 1)
        self._samples_text = ""
        if self.gpt:
            self.attention_caption = caption("Attention", tip="For your sentence (Your text): "
                                             "row = a token, column = the token it looks at; "
                                             "one square per head of the chosen layer")
            self.attention_plot, self.attention_image = image_plot("attention")
            self.tokens_caption = ElidedLabel("", tip="The tokens of your sentence, in order")
            self.tokens_caption.setProperty("muted", True)
            self.embed_caption = caption("Token embeddings (PCA)",
                                         tip="The most frequent tokens' vectors, projected onto "
                                             "their first two principal components")
            self.embed_plot = pk.themed_plot()
            self.embed_plot.setObjectName("embeddings")
            self.embed_points = pg.ScatterPlotItem(size=4, pen=pg.mkPen(None))
            self.embed_plot.addItem(self.embed_points)
            self.embed_labels: list[pg.TextItem] = []
            # attention in the middle column, the embeddings on the right (row, column, spans)
            for widget, place in ((self.attention_caption, (0, 1)),
                                  (self.attention_plot, (1, 1)), (self.tokens_caption, (2, 1)),
                                  (self.embed_caption, (0, 2)), (self.embed_plot, (1, 2, 3, 1))):
                layout.addWidget(widget, *place)
            for col in (1, 2):
                layout.setColumnStretch(col, 1)
            layout.setRowStretch(1, 1)
        self.apply_theme()

    def apply_theme(self) -> None:
        if not self.gpt:
            return
        c = colors()
        pk.restyle(self.attention_plot)
        pk.restyle(self.embed_plot)
        self.attention_image.setLookupTable(pk.heat_lut())
        self.embed_points.setBrush(pg.mkBrush(c.accent))
        for label in self.embed_labels:
            label.setColor(c.text)

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        samples = snapshot["samples"]
        text = "\n\n".join(f"— step {step}, temperature {temp:g} —\n{sample}"
                           for step, temp, sample in reversed(samples))
        if not text:
            text = "No sample yet: the first comes after 'Sample every' steps."
        if text != self._samples_text:
            self._samples_text = text
            self.samples_box.setPlainText(text)
        self.samples_caption.set_full_text(
            f"Samples · {count_of(snapshot['parameters'], 'parameter')} · "
            f"{count_of(snapshot['vocab'], 'token')}")
        if self.gpt:
            self._show_attention(snapshot)
            self._show_embeddings(snapshot)

    def _show_attention(self, snapshot: dict[str, Any]) -> None:
        maps = np.asarray(snapshot["attention"], dtype=np.float32)  # (heads, T, T)
        self.attention_image.setImage(pk.tile(maps, cols=min(2, len(maps)), pad=1),
                                      autoLevels=False, levels=(0.0, 1.0))
        self.attention_caption.set_full_text(
            f"Attention · layer {snapshot['layer']} of {snapshot['layers']} · "
            f"{len(maps)} heads")
        tokens = " | ".join(t.replace("\n", "⏎") for t in snapshot["tokens"])
        self.tokens_caption.set_full_text(f"Tokens: {tokens}")
        self.tokens_caption.setToolTip(tokens)

    def _show_embeddings(self, snapshot: dict[str, Any]) -> None:
        points = np.asarray(snapshot["embeddings"], dtype=np.float64)
        pk.move_points(self.embed_points, points)
        labels = snapshot["embedding_labels"][:LABELLED_EMBEDDINGS]
        c = colors()
        while len(self.embed_labels) < len(labels):
            item = pg.TextItem(color=c.text, anchor=(0, 0.5))
            self.embed_plot.addItem(item)
            self.embed_labels.append(item)
        for item, label, (x, y) in zip(self.embed_labels, labels, points, strict=False):
            item.setText(repr(label)[1:-1])
            item.setPos(float(x), float(y))

    def reset(self) -> None:
        self._samples_text = ""
        self.samples_box.setPlainText("")
        if self.gpt:
            self.embed_points.setData(pos=np.zeros((0, 2)))

    def export_items(self) -> dict[str, QWidget]:
        if self.gpt:
            return {"Attention": self.attention_plot, "Embeddings": self.embed_plot}
        return {}
