"""A1111's prompt syntax, read as AUTOMATIC1111's stable-diffusion-webui reads it.

* Emphasis (:func:`parse_attention`): ``(word)`` multiplies the weight of its tokens by 1.1,
  ``[word]`` divides it by 1.1, ``(word:1.3)`` sets the factor, brackets nest (``((word))`` is
  1.21); ``\\(`` ``\\)`` ``\\[`` ``\\]`` are literal brackets; an unclosed bracket applies to the
  end of the prompt; ``BREAK`` ends the current 75-token chunk.
* Prompt editing and alternation (:func:`prompt_schedule`): ``[from:to:when]`` uses ``from``
  until step ``when`` and ``to`` after it (``[to:when]`` adds, ``[from::when]`` removes); a
  ``when`` written with a decimal point is a fraction of the steps, otherwise a step number.
  ``[a|b]`` alternates every step. Text that does not parse is used as written, for every step.

Pure text: no torch here. :mod:`studio.pipelines.diffusion.prompts` turns the result into
conditioning.
"""

from __future__ import annotations

import re
from typing import Any

ROUND = 1.1
SQUARE = 1 / 1.1
BREAK = "BREAK"  # a segment with this text and weight -1 ends the chunk

_ATTENTION = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|   # escapes, and a lone backslash
\(|\[|                        # openers
:\s*([+-]?[.\d]+)\s*\)|       # ':1.3)' closes a round bracket with its own factor
\)|]|                         # closers
[^\\()\[\]:]+|                # plain text
:
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_attention(text: str) -> list[tuple[str, float]]:
    """``text`` as (piece, weight) runs, neighbours of equal weight merged; a ``("BREAK", -1)``
    run marks a chunk break. ``"an (important) word"`` → ``[("an ", 1.0), ("important", 1.1),
    (" word", 1.0)]``."""
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for item in res[start:]:
            item[1] *= factor

    for match in _ATTENTION.finditer(text):
        piece, factor = match.group(0), match.group(1)
        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])
        elif piece == "(":
            round_open.append(len(res))
        elif piece == "[":
            square_open.append(len(res))
        elif factor is not None and round_open:
            multiply(round_open.pop(), float(factor))
        elif piece == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif piece == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(piece)):
                if i:
                    res.append([BREAK, -1])
                res.append([part, 1.0])
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    if not res:
        res = [["", 1.0]]
    merged: list[list] = [res[0]]
    for item in res[1:]:
        if item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return [(piece, weight) for piece, weight in merged]


def is_plain(text: str) -> bool:
    """Whether ``text`` means itself: no emphasis, escapes or BREAK change what is encoded."""
    return parse_attention(text) == [(text, 1.0)]


# -- prompt editing and alternation -----------------------------------------------------------

class _Unparsed(Exception):
    pass


_NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*\]")


class _Parser:
    """The grammar A1111 gives to ``lark`` (``prompt: (emphasized | scheduled | alternate |
    plain | WHITESPACE)*``), as a small recursive descent. Nodes: ``str`` (literal),
    ``("seq", [nodes])``, ``("sched", before, after, when_text)``, ``("alt", [nodes])``."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def start(self) -> tuple:
        items: list = []
        while self.pos < len(self.text):
            items.append(self.prompt(top=True))
            if self.pos < len(self.text):  # a stray bracket or colon is plain text at the top
                items.append(self.text[self.pos])
                self.pos += 1
        return ("seq", items)

    def prompt(self, top: bool = False) -> tuple:
        items: list = []
        while True:
            ch = self.peek()
            if ch == "" or ch in ")]:|":
                return ("seq", items)
            if ch in "([":
                saved = self.pos
                try:
                    items.append(self.bracket())
                    continue
                except _Unparsed:
                    self.pos = saved
                    if not top:
                        raise
                    return ("seq", items)
            items.append(self.plain())

    def plain(self) -> str:
        out = []
        while self.pos < len(self.text) and self.text[self.pos] not in "[]():|":
            if self.text[self.pos] == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos:self.pos + 2])
                self.pos += 2
            else:
                out.append(self.text[self.pos])
                self.pos += 1
        if not out:
            raise _Unparsed()
        return "".join(out)

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise _Unparsed()
        self.pos += 1

    def bracket(self) -> Any:
        opener = self.peek()
        self.pos += 1
        if opener == "(":  # emphasis: kept as text, its inside may hold schedules
            inner = self.prompt()
            parts: list = ["(", inner]
            if self.peek() == ":":
                self.pos += 1
                parts += [":", self.prompt()]
            self.expect(")")
            return ("seq", parts + [")"])
        first = self.prompt()
        if self.peek() == "|":
            options = [first]
            while self.peek() == "|":
                self.pos += 1
                options.append(self.prompt())
            self.expect("]")
            return ("alt", options)
        if self.peek() != ":":
            self.expect("]")
            return ("seq", ["[", first, "]"])
        self.pos += 1
        when = _NUMBER.match(self.text, self.pos)
        if when:  # [to:when]
            self.pos = when.end()
            return ("sched", ("seq", []), first, when.group(1))
        second = self.prompt()
        if self.peek() != ":":
            # [a:b] is emphasis-like text in A1111 only inside round brackets; here it fails
            raise _Unparsed()
        self.pos += 1
        when = _NUMBER.match(self.text, self.pos)
        if not when:
            raise _Unparsed()
        self.pos = when.end()
        return ("sched", first, second, when.group(1))


def _steps_of(node: Any, steps: int, found: set[int]) -> Any:
    """Resolve each ``when`` to a step number (A1111: a decimal point means a fraction)."""
    if isinstance(node, str):
        return node
    kind = node[0]
    if kind == "seq":
        return ("seq", [_steps_of(n, steps, found) for n in node[1]])
    if kind == "alt":
        found.update(range(1, steps + 1))
        return ("alt", [_steps_of(n, steps, found) for n in node[1]])
    _, before, after, when = node
    value = float(when) * steps if "." in when else float(when)
    at = min(steps, int(value))
    if at >= 1:
        found.add(at)
    return ("sched", _steps_of(before, steps, found), _steps_of(after, steps, found), at)


def _text_at(node: Any, step: int) -> str:
    if isinstance(node, str):
        return node
    kind = node[0]
    if kind == "seq":
        return "".join(_text_at(n, step) for n in node[1])
    if kind == "alt":
        options = node[1]
        return _text_at(options[(step - 1) % len(options)], step)
    _, before, after, at = node
    return _text_at(before if step <= at else after, step)


def prompt_schedule(text: str, steps: int) -> list[tuple[int, str]]:
    """``[(last_step, prompt), …]``: the prompt to use up to and including each step number
    (A1111's ``get_learned_conditioning_prompt_schedules``). ``"a [b:3]"`` over 10 steps →
    ``[(3, "a "), (10, "a b")]``."""
    try:
        tree = _Parser(text).start()
    except _Unparsed:  # pragma: no cover - start() keeps unparsable brackets as text
        return [(steps, text)]
    found = {steps}
    resolved = _steps_of(tree, steps, found)
    return [(step, _text_at(resolved, step)) for step in sorted(found)]


def schedule_index(schedule: list[tuple[int, Any]], step_index: int) -> int:
    """Which entry applies at sampling step ``step_index`` (0-based), as A1111 picks it: the
    first whose last step is ≥ the index."""
    for i, (last, _) in enumerate(schedule):
        if step_index <= last:
            return i
    return len(schedule) - 1
