"""Token probabilities of a reply: each token coloured by how likely the model found it, and its
likeliest alternatives.

A reply generated with "Token probabilities" on keeps, in its message ``meta["logprobs"]``, one
entry per generated token (:func:`token_entries`): the text it added to the reply, its
log-probability and the top alternatives at that position. :class:`TokenProbabilities` shows them:
hovering a token shows its alternatives as a tooltip, clicking one lists them under the text and,
for a local model, offers *Where it looked*: the last layer's attention when the model wrote that
token, over everything it had read, in shades of blue (an ``attention`` job). Each listed
alternative is a link that branches the reply there: a new version of it that keeps the text
before the token, takes the alternative, and lets the model go on (in a chat, the reply's
beginning continued in the chat template: a sibling reply, whose beginning is shown uncoloured).
It is built only when opened, and nothing is computed for replies asked without the toggle.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QColor, QCursor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QTextBrowser,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from studio.core.wording import count_of
from studio.pipelines.chat.remote import is_remote_spec
from studio.pipelines.chat.types import AttentionRequest

LEGEND = ("Each token is coloured by the probability the model gave it: green likely, yellow "
          "uncertain, red unlikely (sampling picked it anyway). Hover over a token, or click "
          "it, to see the alternatives the model weighed at that point.")


def add_tokens(entries: list[dict[str, Any]], chunk: Any) -> None:
    """Add a streamed chunk's tokens to ``entries`` (a message's ``meta["logprobs"]``): the text
    each added to the reply (a local chunk is one token, its text exactly the piece shown), its
    log-probability and alternatives. Text that comes without a token (the end of a character
    held back) goes to the last token, so the pieces always add up to the reply."""
    scored = list(getattr(chunk, "logprobs", []) or [])
    if not scored:
        if chunk.text and entries:
            entries[-1]["text"] += chunk.text
        return
    pieces = [chunk.text] if len(scored) == 1 else [t.token for t in scored]
    entries.extend({"text": piece, "token": t.token, "logprob": t.logprob, "id": t.id,
                    "top": [[a, lp] for a, lp in t.top]}
                   for piece, t in zip(pieces, scored, strict=True))


def attention_request(meta: dict[str, Any], index: int) -> AttentionRequest | None:
    """What token ``index`` of a reply had read — its prompt and the reply before it — as an
    attention job; None when the reply cannot say (a remote model, or one asked before token
    ids were kept)."""
    entries = meta.get("logprobs") or []
    ids = [int(e.get("id", -1)) for e in entries[:index]]
    prompt = meta.get("prompt_ids") or []
    model = str(meta.get("model") or "")
    if not prompt or not model or is_remote_spec(model) or any(i < 0 for i in ids):
        return None
    return AttentionRequest(model=model, input_ids=[int(i) for i in prompt] + ids)


def probability_colour(p: float) -> QColor:
    """Red (0) through yellow to green (1), pale: the token's text is dark on it in either
    theme."""
    p = min(1.0, max(0.0, p))
    return QColor.fromHsvF(p / 3.0, 0.45, 1.0)


def _shown(token: str) -> str:
    """A token as a person reads it in a list: spaces and new lines made visible."""
    return repr(token)[1:-1] if token.strip() != token or not token else token


def alternatives_text(entry: dict[str, Any]) -> str:
    """The tooltip and list text of one token: its probability, then each alternative's."""
    lines = [f"“{_shown(entry['token'])}”: {math.exp(entry['logprob']):.1%}"]
    for alt, logprob in entry.get("top") or []:
        lines.append(f"    {_shown(alt)}  {math.exp(logprob):.1%}")
    return "\n".join(lines)


def tokens_html(entries: list[dict[str, Any]], prefix: str = "") -> str:
    """The reply as links ``tok:I``, one per token that shows text, each on its probability's
    colour (after ``prefix``, uncoloured: a branch's beginning, chosen rather than written)."""
    spans = [html.escape(prefix).replace("\n", "<br>")] if prefix else []
    for i, entry in enumerate(entries):
        if not entry["text"]:  # part of a character the next token completes: shown there
            continue
        colour = probability_colour(math.exp(entry["logprob"]))
        text = html.escape(entry["text"]).replace("\n", "<br>")
        spans.append(f'<a href="tok:{i}" style="background-color: {colour.name()}; '
                     f'color: #111111; text-decoration: none">{text}</a>')
    return f'<div style="white-space: pre-wrap">{"".join(spans)}</div>'


class TokenProbabilities(QDialog):
    """One reply's tokens in colour, with each token's alternatives (see the module)."""

    def __init__(self, entries: list[dict[str, Any]], parent: QWidget | None = None,
                 on_branch: Callable[[int, str], None] | None = None,
                 on_attention: Callable[[int], None] | None = None, prefix: str = "") -> None:
        """``on_branch(i, text)``: branch the reply at token ``i`` with ``text`` instead (None:
        no branching). ``on_attention(i)``: ask where the model looked when it wrote token
        ``i`` (None: not offered — a remote model); the answer comes back through
        :meth:`show_attention`. ``prefix``: the beginning of a branched reply, shown before
        its tokens, uncoloured."""
        super().__init__(parent)
        self.entries = entries
        self.on_branch = on_branch
        self.on_attention = on_attention
        self.current = -1  # the token whose alternatives are listed
        self.setWindowTitle("Token probabilities")
        self.resize(640, 460)
        box = QVBoxLayout(self)
        legend = QLabel(LEGEND)
        legend.setWordWrap(True)
        legend.setProperty("muted", True)
        box.addWidget(legend)
        self.text = QTextBrowser()
        self.text.setOpenLinks(False)
        self.text.setHtml(tokens_html(entries, prefix))
        self.text.anchorClicked.connect(self._clicked)
        self.text.highlighted.connect(self._hovered)
        box.addWidget(self.text, 1)
        self.summary = QLabel(self._summary())
        self.summary.setWordWrap(True)
        box.addWidget(self.summary)
        self.alternatives = QLabel("Click a token to list its alternatives here"
                                   + (" and branch the text from one of them." if on_branch
                                      else "."))
        self.alternatives.setProperty("muted", True)
        self.alternatives.setWordWrap(True)
        self.alternatives.linkActivated.connect(self._branch)
        box.addWidget(self.alternatives)
        self.look = QPushButton("Where it looked")
        self.look.setToolTip("The last layer's attention when the model wrote the chosen token: "
                             "darker blue, more attention")
        self.look.setEnabled(False)
        self.look.setVisible(on_attention is not None)
        self.look.clicked.connect(self._ask_attention)
        box.addWidget(self.look)
        self.attention = QTextBrowser()
        self.attention.setVisible(False)
        self.attention.setMaximumHeight(140)
        box.addWidget(self.attention)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.Close).clicked.connect(self.accept)
        box.addWidget(buttons)

    def _summary(self) -> str:
        if not self.entries:
            return "This reply has no tokens."
        probs = [math.exp(e["logprob"]) for e in self.entries]
        low = min(range(len(probs)), key=probs.__getitem__)
        return (f"{count_of(len(probs), 'token')} · average probability "
                f"{sum(probs) / len(probs):.0%} · least likely: "
                f"“{_shown(self.entries[low]['token'])}” ({probs[low]:.1%})")

    def _entry(self, url: QUrl) -> dict[str, Any] | None:
        text = url.toString()
        if not text.startswith("tok:"):
            return None
        try:
            return self.entries[int(text[4:])]
        except (ValueError, IndexError):
            return None

    def _hovered(self, url: QUrl) -> None:
        entry = self._entry(url)
        if entry is None:
            QToolTip.hideText()
        else:
            QToolTip.showText(QCursor.pos(), alternatives_text(entry), self.text)

    def _clicked(self, url: QUrl) -> None:
        entry = self._entry(url)
        if entry is not None:
            self.show_alternatives(entry)

    def show_alternatives(self, entry: dict[str, Any]) -> None:
        self.current = self.entries.index(entry)
        self.look.setEnabled(True)
        self.look.setText(f"Where it looked for “{_shown(entry['token'])}”")
        self.alternatives.setProperty("muted", False)
        if self.on_branch is None:
            self.alternatives.setTextFormat(Qt.TextFormat.PlainText)
            self.alternatives.setText(alternatives_text(entry))
            return
        rows = [html.escape(f"“{_shown(entry['token'])}”: {math.exp(entry['logprob']):.1%}")]
        for j, (alt, logprob) in enumerate(entry.get("top") or []):
            link = (f'<a href="alt:{j}">{html.escape(_shown(alt))}</a>' if alt != entry["token"]
                    else html.escape(_shown(alt)))
            rows.append(f"&nbsp;&nbsp;&nbsp;&nbsp;{link} {math.exp(logprob):.1%}")
        self.alternatives.setTextFormat(Qt.TextFormat.RichText)
        self.alternatives.setText("<br>".join(rows) + "<br>Click an alternative to branch the "
                                  "text there and let the model go on from it.")

    def _branch(self, link: str) -> None:
        if self.on_branch is None or self.current < 0 or not link.startswith("alt:"):
            return
        top = self.entries[self.current].get("top") or []
        j = int(link[4:])
        if 0 <= j < len(top):
            self.on_branch(self.current, str(top[j][0]))

    def _ask_attention(self) -> None:
        if self.on_attention is not None and self.current >= 0:
            self.look.setEnabled(False)
            self.attention.setVisible(True)
            self.attention.setPlainText("Reading the attention…")
            self.on_attention(self.current)

    def show_attention(self, tokens: list[str] | None, weights: list[float] | None,
                       error: str = "") -> None:
        """The attention job's answer (or why there is none)."""
        self.look.setEnabled(self.current >= 0)
        self.attention.setVisible(True)
        if error or not tokens or not weights:
            self.attention.setPlainText(error or "No attention came back.")
            return
        self.attention.setHtml(attention_html(tokens, weights))


def attention_html(tokens: list[str], weights: list[float]) -> str:
    """Each token read on a blue as deep as its share of the attention (relative to the most
    attended one), its percentage in a tooltip."""
    top = max(weights) or 1.0
    spans = []
    for token, weight in zip(tokens, weights, strict=True):
        colour = QColor.fromHsvF(0.6, min(1.0, weight / top) * 0.8, 1.0)
        text = html.escape(token).replace("\n", "<br>")
        spans.append(f'<span title="{weight:.1%}" style="background-color: {colour.name()}; '
                     f'color: #111111">{text}</span>')
    return f'<div style="white-space: pre-wrap">{"".join(spans)}</div>'
