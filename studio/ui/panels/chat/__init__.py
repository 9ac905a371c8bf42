"""The Chat workspace: conversations with local and remote language models (issue #5)."""

from studio.ui.panels.chat.panel import ChatPanel

__all__ = ["ChatPanel"]
