"""The Train workspace: pick a lesson, press play, watch a small model learn (issue #6)."""

from studio.ui.panels.train.panel import TrainPanel

__all__ = ["TrainPanel"]
