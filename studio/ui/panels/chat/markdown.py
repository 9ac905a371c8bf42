"""Markdown to the HTML subset Qt's rich text understands, code blocks highlighted by Pygments.

Each fenced code block becomes a one-cell table (Qt paints cell backgrounds, not ``<pre>`` ones)
with a header holding the language and a ``copy-code:N`` link; :func:`render` returns the HTML and
the blocks' source so a click on that link can copy block N.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass
class Rendered:
    html: str
    code_blocks: list[str] = field(default_factory=list)


@lru_cache(maxsize=4)
def _style(dark: bool):
    from pygments.styles import get_style_by_name

    return get_style_by_name("monokai" if dark else "friendly")


def _highlight(code: str, lang: str, dark: bool) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(lang) if lang else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    formatter = HtmlFormatter(noclasses=True, nowrap=True, style=_style(dark))
    return highlight(code, lexer, formatter)


@lru_cache(maxsize=2)
def _parser(dark: bool, code_bg: str, muted: str, accent: str):
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table")

    def fence(renderer, tokens, idx, options, env):
        token = tokens[idx]
        lang = token.info.strip().split(" ")[0] if token.info else ""
        blocks = env.setdefault("code_blocks", [])
        blocks.append(token.content)
        body = _highlight(token.content.rstrip("\n"), lang, dark)
        return (
            f'<table width="100%" cellspacing="0" cellpadding="8" '
            f'style="background-color:{code_bg}; margin: 6px 0;">'
            f'<tr><td style="color:{muted}; font-size:11px;">{html.escape(lang or "code")}'
            f'&nbsp;&nbsp;<a href="copy-code:{len(blocks) - 1}" style="color:{accent}; '
            f'text-decoration:none;">Copy</a></td></tr>'
            f'<tr><td style="padding-top:0;"><pre style="font-family:monospace; margin:0;">{body}</pre></td></tr>'
            f'</table>')

    md.add_render_rule("fence", fence)
    md.add_render_rule("code_block", fence)
    return md


def render(text: str, dark: bool = True, code_bg: str = "#101116", muted: str = "#959bab",
           accent: str = "#7c6cff") -> Rendered:
    """HTML for ``text`` and the source of each code block, in order."""
    env: dict = {}
    body = _parser(dark, code_bg, muted, accent).render(text, env)
    # Markdown tables: Qt draws no grid unless asked (the code-block tables carry attributes).
    body = body.replace("<table>", f'<table border="1" cellspacing="0" cellpadding="5" '
                                   f'style="border: 1px solid {muted}; '
                                   f'border-collapse:collapse;">')
    cell = f'style="border: 1px solid {muted};"'
    body = body.replace("<th>", f"<th {cell}>").replace("<td>", f"<td {cell}>")
    return Rendered(body, list(env.get("code_blocks", [])))
