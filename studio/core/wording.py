"""Words for numbers in what Studio says: "1 token", "2 tokens", "1,024 images". No Qt.

Every count shown to a person goes through :func:`count_of`, so no message ever says "1 tokens".
"""

from __future__ import annotations

# Nouns whose plural is not noun + "s".
_IRREGULAR = {"entry": "entries", "match": "matches", "LoRA": "LoRAs"}


def plural(noun: str, n: int) -> str:
    """``noun`` as it goes with ``n`` ("image" for 1, "images" otherwise)."""
    if n == 1:
        return noun
    return _IRREGULAR.get(noun, noun + "s")


def count_of(n: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 token"``, ``"2 tokens"``, ``"12,345 tokens"``; ``plural_form`` for odd nouns."""
    word = noun if n == 1 else (plural_form or plural(noun, n))
    return f"{n:,} {word}"
