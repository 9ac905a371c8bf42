"""The Generate (text to image) workspace."""

from studio.ui.panels.generate.panel import GeneratePanel

__all__ = ["GeneratePanel"]
