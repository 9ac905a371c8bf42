"""The Transform workspace (CycleGAN, img2img, inpainting)."""

from studio.ui.panels.transform.panel import TransformPanel

__all__ = ["TransformPanel"]
