"""The Models workspace: the model library (list, details, import, remove, download)."""

from studio.ui.panels.models.panel import ModelsPanel

__all__ = ["ModelsPanel"]
