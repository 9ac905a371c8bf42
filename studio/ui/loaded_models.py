"""What the GPU worker holds in memory, and the "Unload all" job, for the status bar and the
Models workspace.

The model cache lives in :mod:`studio.pipelines.model_cache`, which imports torch-adjacent code;
the window must start without it (DESIGN rule 7). So it is read through ``sys.modules``: a module
that was never imported has loaded nothing. ``memory_report``/``budget_bytes`` are looked up with
``getattr`` so an older cache without them reads as "nothing loaded" instead of failing.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from studio.core.requests import UnloadRequest
from studio.core.wording import count_of

if TYPE_CHECKING:
    from studio.core.config import Settings
    from studio.workers.job_bridge import JobBridge, QtJobHandle

log = logging.getLogger(__name__)

UNLOAD_KIND = "unload"
UNLOAD_TITLE = "Unload all models"
_CACHE_MODULE = "studio.pipelines.model_cache"


@dataclass(frozen=True)
class Loaded:
    """One model in memory, as the GUI shows it."""

    name: str
    path: str
    kind: str
    bytes: int
    device: str


def format_bytes(n: int) -> str:
    """'3.4 GB', '820 MB' (binary units, as the status bar's memory figure)."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GB"
    return f"{max(0, n) / 2**20:.0f} MB"


def loaded_models() -> list[Loaded]:
    """The models the worker's caches hold now (empty when the cache module was never used)."""
    module = sys.modules.get(_CACHE_MODULE)
    report = getattr(module, "memory_report", None) if module is not None else None
    if report is None:
        return []
    try:
        items = list(report())
    except Exception:  # noqa: BLE001 - a display must never take the window down
        log.exception("memory_report failed")
        return []
    return [Loaded(str(getattr(m, "name", "") or getattr(m, "path", "?")),
                   str(getattr(m, "path", "")), str(getattr(m, "kind", "")),
                   int(getattr(m, "bytes", 0) or 0), str(getattr(m, "device", "")))
            for m in items]


def budget_text(settings: Settings) -> str:
    """The memory budget in words: the Settings value, or the automatic one when known."""
    gb = float(getattr(settings, "memory_budget_gb", 0) or 0)
    if gb > 0:
        return f"{gb:g} GB (set in Settings)"
    module = sys.modules.get(_CACHE_MODULE)
    budget = getattr(module, "budget_bytes", None) if module is not None else None
    # budget_bytes is cheap on the GUI thread (it never imports torch); the module itself is
    # only there once a job has run, so before that the budget is simply "automatic".
    if budget is not None:
        try:
            return f"{format_bytes(int(budget(settings)))} (automatic)"
        except Exception:  # noqa: BLE001
            log.exception("budget_bytes failed")
    return "automatic (most of the GPU's memory, or half the RAM)"


def loaded_summary(models: list[Loaded]) -> str:
    """'Nothing loaded', 'tiny-sd15 · 1.2 GB' or '2 models · 3.4 GB'."""
    if not models:
        return "Nothing loaded"
    total = format_bytes(sum(m.bytes for m in models))
    if len(models) == 1:
        return f"{models[0].name} · {total}"
    return f"{count_of(len(models), 'model')} · {total}"


def loaded_tooltip(models: list[Loaded], settings: Settings) -> str:
    """Rich text: each loaded model with its size and device, the total and the budget."""
    rows = "".join(
        f"<tr><td>{escape(m.name)}</td><td align='right'>&nbsp;&nbsp;{format_bytes(m.bytes)}"
        f"</td><td>&nbsp;&nbsp;{escape(m.device)}</td></tr>" for m in models)
    if models:
        total = format_bytes(sum(m.bytes for m in models))
        body = (f"<b>Models in memory</b><table>{rows}</table>"
                f"Total: {total}")
    else:
        body = "<b>No model in memory</b>"
    return (f"{body}<br>Memory budget: {escape(budget_text(settings))}<br>"
            "<i>Models stay loaded between jobs while they fit in the budget.</i>")


def submit_unload(bridge: JobBridge) -> QtJobHandle:
    """Queue the job that frees every model; its handle (a ``QtJobHandle``)."""
    return bridge.submit(UnloadRequest(), UNLOAD_TITLE)
