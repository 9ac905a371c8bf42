"""Keeping the garbage collector's full passes short, so loading a model never freezes the window.

A full collection (generation 2) walks every container object the interpreter tracks, holding the
GIL the whole time. Once torch, diffusers and transformers are imported the process tracks about
400,000 such objects (more with the window's), and one full pass over them takes 200–300 ms on a
modest CPU. Loading a model allocates plenty of containers (parsing a CLIP ``tokenizer.json`` alone
makes ~100,000 lists and tuples), and CPython starts a full pass as soon as the objects that
survived since the last one exceed a quarter of the heap — so one lands on the GPU worker in the
middle of a load, and because every Qt slot and paint needs the GIL, the window stops for as long.
Allocating less only moves that pass elsewhere; what helps is making it cheap.

:func:`collector_paused_for_imports` therefore runs the heavy imports with the collector paused (the
imports themselves would otherwise trigger a series of ever larger full passes), then moves
everything alive into the permanent generation (:func:`gc.freeze`), which later passes skip: modules,
classes and functions live until exit anyway. Reference counting still frees frozen objects; only a
frozen object that later ends up in an unreachable cycle is no longer reclaimed, which is why the
model cache frees the previous pipeline (and collects) *before* the loader freezes. No torch here.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()


def freeze_long_lived() -> None:
    """Move every object alive now into the permanent generation.

    O(1): CPython splices its generation lists, nothing is walked. (Not so ``gc.get_freeze_count``,
    which counts the list — 40 ms for 400,000 objects — so it is not called here.)"""
    gc.freeze()


@contextmanager
def collector_paused_for_imports() -> Iterator[None]:
    """Pause the cyclic collector for the block (meant for heavy imports), then freeze what is alive.

    The collector is process-wide, so pausing it also pauses it for the GUI thread — harmless for
    the second or two an import takes (reference counting keeps freeing memory). It is switched
    back on only if it was on, so nesting and a caller's own ``gc.disable()`` are respected."""
    with _lock:
        was_enabled = gc.isenabled()
        gc.disable()
    try:
        yield
    finally:
        with _lock:
            freeze_long_lived()
            if was_enabled:
                gc.enable()
