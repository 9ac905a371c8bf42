"""TAEF2: madebyollin's tiny preview decoder for FLUX.2, in diffusers' ``AutoencoderTiny``.

TAEF2 is TAESD's decoder for FLUX.2's 32 latent channels with one addition: each of the first
blocks after the input convolution first adds a pooled branch to its input — a 1×1 convolution
to four times the width, a GroupNorm of 4 groups, a ReLU and a 1×1 convolution back
(``x = x + pool(x)``), which FLUX.2's latents needed to be distilled accurately. diffusers'
``AutoencoderTiny`` (0.42) builds every other layer of it under the same names, so the decoder is
that class with the branch attached to those blocks (a registered sub-module ``pool``, so the
weights load by name, and a forward pre-hook that adds it). Its input is the unpatchified
32-channel latents as FLUX.2's transformer makes them, i.e. still batch-norm normalised, which is
what the previewer is handed (``packed.unpacked_latents``).

Files people have:
- ``taef2_decoder.pth`` / ``.safetensors`` from github.com/madebyollin/taesd (what ComfyUI keeps
  in ``models/vae_approx``): the decoder alone as a plain ``nn.Sequential`` (``1.weight``,
  ``3.conv.0.weight``, ``3.pool.0.weight`` …), index 0 being the clamp, which holds no weights;
- a file in ``AutoencoderTiny``'s layout (``decoder.layers.N…``, encoder keys alongside), as
  ``hf download madebyollin/taef2`` is described to hold.
Both are read with safetensors or ``torch.load(weights_only=True)``; the encoder is not used.
Where the file is looked for: :mod:`studio.library.taef2_files`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_SEQUENTIAL = re.compile(r"^(\d+)\.(.+)$")


def decoder_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The decoder's tensors named as ``AutoencoderTiny.decoder`` names them (``layers.N…``),
    from either file layout; {} when the file holds no TAESD-style decoder."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("decoder.layers."):
            out[key.removeprefix("decoder.")] = value
        elif key.startswith("encoder."):
            continue
        elif found := _SEQUENTIAL.match(key):  # nn.Sequential: index 0 is the weightless clamp
            out[f"layers.{int(found.group(1)) - 1}.{found.group(2)}"] = value
    return out


def is_taef2(keys: list[str] | set[str]) -> bool:
    """Whether a file's tensor names are a TAEF2 decoder's (a TAESD decoder with pool branches)."""
    decoder = decoder_weights(dict.fromkeys(keys))  # type: ignore[arg-type]
    return "layers.0.weight" in decoder and any(".pool.0.weight" in k for k in decoder)


def read_file(path: Path) -> dict[str, torch.Tensor]:
    """A TAEF2 file's tensors (safetensors, or a ``.pth`` through ``torch.load(weights_only=True)``
    in :mod:`studio.library.safe_load`, which refuses anything that is not tensors)."""
    from studio.library.safe_load import load_state_dict

    return load_state_dict(path)


def _layer(key: str) -> int:
    return int(key.split(".")[1])


def build_decoder(state: dict[str, torch.Tensor], dtype: torch.dtype) -> Any:
    """An ``AutoencoderTiny`` whose decoder is the file's TAEF2 (sizes read from the tensors).
    Typed Any: mypy resolves diffusers' model classes without their torch attributes."""
    import torch
    from diffusers import AutoencoderTiny

    weights = decoder_weights(state)
    if "layers.0.weight" not in weights:
        raise ValueError("no TAESD-style decoder in the file (layers.0.weight is missing)")
    latent_channels = int(weights["layers.0.weight"].shape[1])
    blocks = sorted({_layer(k) for k in weights if ".conv.0.weight" in k})
    convs = sorted({_layer(k) for k in weights
                    if re.fullmatch(r"layers\.\d+\.weight", k) and _layer(k) > 0})
    # Stages: the blocks between one convolution and the next (the last conv is conv_out).
    counts: list[int] = []
    widths: list[int] = []
    for start, end in zip([0, *convs[:-1]], convs, strict=True):
        inside = [b for b in blocks if start < b < end]
        if not inside:
            raise ValueError("the decoder's blocks are not laid out as TAESD's")
        counts.append(len(inside))
        widths.append(int(weights[f"layers.{inside[0]}.conv.0.weight"].shape[0]))
    model: Any = AutoencoderTiny(latent_channels=latent_channels,
                            decoder_block_out_channels=tuple(widths),
                            num_decoder_blocks=tuple(counts))
    for index in sorted({_layer(k) for k in weights if ".pool." in k}):
        block = model.decoder.layers[index]
        wide = int(weights[f"layers.{index}.pool.0.weight"].shape[0])
        width = int(weights[f"layers.{index}.pool.0.weight"].shape[1])
        block.pool = torch.nn.Sequential(
            torch.nn.Conv2d(width, wide, 1, bias=False), torch.nn.GroupNorm(4, wide),
            torch.nn.ReLU(inplace=True), torch.nn.Conv2d(wide, width, 1, bias=False))
        block.register_forward_pre_hook(_add_pool)
    model.decoder.load_state_dict(weights, strict=True)
    if dtype != model.dtype:
        model = model.to(dtype)
    return model.eval().requires_grad_(False)


def _add_pool(block: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
    x = args[0]
    return (x + block.get_submodule("pool")(x),)
