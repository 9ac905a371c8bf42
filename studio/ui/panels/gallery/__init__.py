"""The Gallery workspace: everything Studio (and other tools) made, searchable."""

from studio.ui.panels.gallery.panel import GalleryPanel

__all__ = ["GalleryPanel"]
