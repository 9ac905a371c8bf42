"""The per-server request limits of ``studio serve`` (no FastAPI here: the CLI's help reads the
defaults without importing the server)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Per-server limits checked before a job is queued (``studio serve --max-…``)."""

    #: the longest prompt, in tokens of the model's tokenizer (a chat's messages together)
    max_prompt_tokens: int = 32_768
    #: width × height × steps × n of one image request: 1024×1024, 100 steps, 4 images
    max_pixel_steps: int = 1024 * 1024 * 100 * 4
