"""A cancel that reaches inside a denoising step and inside prompt encoding.

diffusers checks for an interrupt between steps only; one step of a huge image (or one long
prompt through the text encoders) can take minutes. Each UNet/transformer block and each text
encoder layer gets a forward pre-hook that raises :class:`~studio.core.jobs.JobCancelled` when the
job running on this thread has been cancelled (:func:`~studio.core.jobs.running_cancel_token`,
set by the worker lane). The hooks only read a flag: results stay bit-for-bit the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from studio.core.jobs import JobCancelled, running_cancel_token

_DENOISER_PARTS = ("down_blocks", "mid_block", "up_blocks", "transformer_blocks",
                   "single_transformer_blocks")


def _check(module: Any, args: Any) -> None:
    token = running_cancel_token()
    if token is not None and token.cancelled:
        raise JobCancelled()


def _blocks(pipe: Any) -> Iterator[Any]:
    import torch

    for name in ("unet", "transformer"):
        model = getattr(pipe, name, None)
        for part in _DENOISER_PARTS:
            found = getattr(model, part, None) if model is not None else None
            if isinstance(found, torch.nn.ModuleList):
                yield from found
            elif isinstance(found, torch.nn.Module):
                yield found
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        model = getattr(pipe, name, None)
        encoder = getattr(getattr(model, "text_model", model), "encoder", None)
        layers = getattr(encoder, "layers", None) or getattr(encoder, "block", None)
        if isinstance(layers, torch.nn.ModuleList):
            yield from layers


def watch_for_cancel(pipe: Any) -> None:
    """Hook ``pipe``'s denoiser blocks and text encoder layers once (a cached pipeline and the
    img2img/inpaint pipelines derived from it share these modules)."""
    for module in _blocks(pipe):
        if not getattr(module, "_studio_watches_cancel", False):
            module.register_forward_pre_hook(_check)
            module._studio_watches_cancel = True
