"""Diffusion image pipelines (diffusers): text to image, image to image, inpainting, and what they share. No Qt."""
