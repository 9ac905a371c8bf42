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


def square_image(size: object, channels: object) -> str:
    """``"16×16 grey"`` (one channel) or ``"32×32 colour"``: the images a trained model makes
    or reads."""
    return f"{size}×{size} {'grey' if channels == 1 else 'colour'}"


def write_failure(exc: OSError, what: str, where: object) -> str:
    """The sentence for a failed save: ``what`` could not be written in ``where``, and why in
    words ("the disk is full", not "[Errno 28] No space left on device"). Used wherever Studio
    saves a file the user asked for."""
    import errno

    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return (f"The disk is full: {what} could not be saved in {where}. Free some space "
                "and try again.")
    if code == errno.EROFS:
        return (f"{where} is on a read-only disk, so {what} could not be saved there. Choose "
                "another folder.")
    if code in (errno.EACCES, errno.EPERM):
        return (f"Studio is not allowed to write in {where}, so {what} could not be saved. "
                "Choose another folder or change its permissions.")
    reason = exc.strerror or exc.__class__.__name__
    return f"{what[:1].upper()}{what[1:]} could not be saved in {where} ({reason})."
