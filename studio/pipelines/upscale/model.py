"""Upscaler models: ESRGAN / Real-ESRGAN (RRDBNet) and Real-ESRGAN Compact (SRVGGNetCompact),
built from their weights' key layout and run in blended tiles.

These two architectures are what nearly every ``.pth`` / ``.safetensors`` upscaler people share
uses (4x-UltraSharp, RealESRGAN_x4plus, x4plus_anime_6B, RealESRGAN_x2plus, realesr-general-x4v3,
realesr-animevideov3, the OpenModelDB ESRGAN family). The weights are read by
:func:`studio.library.safe_load.load_state_dict` — safetensors, or ``torch.load(weights_only=True)``
for pickles — so an upscaler file never runs code. The layouts read are:

* **RRDBNet**, BasicSR's names (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``, ``conv_up1``,
  ``conv_up2``, ``conv_hr``, ``conv_last``; the x2 and x1 models put a pixel-unshuffle in front)
  and the original ESRGAN's (``model.0``, ``model.1.sub.N.RDBK.convJ.0``, …), renamed on load;
  ``params_ema`` / ``params`` wrappers are unwrapped.
* **SRVGGNetCompact**: ``body.0`` … ``body.N`` (convolutions and PReLUs), a pixel shuffle, plus
  the nearest-neighbour upscaled input.

Large images run in tiles (:func:`upscale_tensor`): each tile is upscaled alone and the
overlapping borders are blended with linear ramps (the weights CycleGAN's tiling uses), so no
seam shows; a cancel is honoured between tiles and progress counts tiles.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from studio.core.jobs import CancelToken, UserFacingError
from studio.pipelines.cyclegan.model import blend_tiles, pad_to_multiple, tile_grid

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

DEFAULT_TILE = 512  # input pixels per tile side
DEFAULT_OVERLAP = 32  # input pixels shared (and blended) by neighbouring tiles
_OLD_BLOCK = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_MAIN = {"model.0": "conv_first", "model.3": "conv_up1", "model.6": "conv_up2",
             "model.8": "conv_hr", "model.10": "conv_last"}


@dataclass(frozen=True)
class UpscalerSpec:
    """What the weights say about the network: ``arch`` (``RRDBNet`` or ``SRVGGNetCompact``),
    its ``scale`` and sizes."""

    arch: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    features: int = 64
    blocks: int = 23  # RRDB blocks, or convolutions of the compact net
    growth: int = 32


def unwrap(state: dict[str, Any]) -> dict[str, Any]:
    """The bare state dict: ``params_ema`` / ``params`` / ``state_dict`` unwrapped, ``module.``
    prefixes dropped, the original ESRGAN names renamed to BasicSR's."""
    for key in ("params_ema", "params", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    if "model.0.weight" not in state:
        return state
    out: dict[str, Any] = {}
    blocks = sorted({int(m.group(1)) for k in state if (m := _OLD_BLOCK.match(k))})
    trunk = f"model.1.sub.{len(blocks)}."
    for key, value in state.items():
        match = _OLD_BLOCK.match(key)
        if match:
            n, rdb, conv, what = match.groups()
            out[f"body.{n}.rdb{rdb}.conv{conv}.{what}"] = value
        elif key.startswith(trunk):
            out["conv_body." + key[len(trunk):]] = value
        else:
            prefix, _, what = key.rpartition(".")
            if prefix not in _OLD_MAIN:
                raise UserFacingError(
                    f"This ESRGAN model has a layer ({key}) of a layout Studio does not know: "
                    "only 4× models in the original ESRGAN layout are read; convert it to the "
                    "BasicSR (Real-ESRGAN) layout or use a 4× model.")
            out[f"{_OLD_MAIN[prefix]}.{what}"] = value
    return out


def spec_from_state_dict(state: dict[str, Any]) -> UpscalerSpec:
    """The architecture of an unwrapped state dict; a refusal that says why otherwise."""
    if "conv_first.weight" in state and "conv_last.weight" in state:
        first = state["conv_first.weight"]
        features, in_ch = int(first.shape[0]), int(first.shape[1])
        blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
        growth = int(state["body.0.rdb1.conv1.weight"].shape[0])
        out_ch = int(state["conv_last.weight"].shape[0])
        scale = {out_ch: 4, out_ch * 4: 2, out_ch * 16: 1}.get(in_ch)
        if scale is None:
            raise UserFacingError(f"This RRDBNet takes {in_ch} input channels for {out_ch} "
                                  "output channels: not a 1×, 2× or 4× upscaler.")
        return UpscalerSpec("RRDBNet", scale, out_ch, out_ch, features, blocks, growth)
    body = sorted({int(k.split(".")[1]) for k in state if re.match(r"^body\.\d+\.weight$", k)})
    if body and body[0] == 0 and state["body.0.weight"].ndim == 4:
        last = state[f"body.{body[-1]}.weight"]
        in_ch = int(state["body.0.weight"].shape[1])
        scale = math.isqrt(int(last.shape[0]) // in_ch)
        if scale * scale * in_ch != int(last.shape[0]):
            raise UserFacingError("This compact upscaler's last layer does not give a whole "
                                  "scale factor.")
        convs = sum(1 for i in body if state[f"body.{i}.weight"].ndim == 4)
        return UpscalerSpec("SRVGGNetCompact", scale, in_ch, in_ch,
                            int(state["body.0.weight"].shape[0]), convs - 2)
    raise UserFacingError("Not an upscaler Studio can run: it reads ESRGAN / Real-ESRGAN "
                          "(RRDBNet) and Real-ESRGAN Compact models (.pth or .safetensors).")


def build_network(spec: UpscalerSpec) -> nn.Module:
    """The torch module for ``spec`` (random weights until a state dict is loaded)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    if spec.arch == "SRVGGNetCompact":
        class Compact(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                layers: list[nn.Module] = [nn.Conv2d(spec.in_channels, spec.features, 3, 1, 1),
                                           nn.PReLU(spec.features)]
                for _ in range(spec.blocks):
                    layers += [nn.Conv2d(spec.features, spec.features, 3, 1, 1),
                               nn.PReLU(spec.features)]
                layers.append(nn.Conv2d(spec.features,
                                        spec.out_channels * spec.scale ** 2, 3, 1, 1))
                self.body = nn.ModuleList(layers)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out = x
                for layer in self.body:
                    out = layer(out)
                return F.pixel_shuffle(out, spec.scale) + F.interpolate(
                    x, scale_factor=spec.scale, mode="nearest")

        return Compact()

    class DenseBlock(nn.Module):
        def __init__(self, nf: int, gc: int) -> None:
            super().__init__()
            for i in range(4):
                setattr(self, f"conv{i + 1}", nn.Conv2d(nf + i * gc, gc, 3, 1, 1))
            self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            feats = [x]
            for i in range(4):
                conv = getattr(self, f"conv{i + 1}")
                feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
            return self.conv5(torch.cat(feats, 1)) * 0.2 + x

    class RRDB(nn.Module):
        def __init__(self, nf: int, gc: int) -> None:
            super().__init__()
            self.rdb1, self.rdb2, self.rdb3 = (DenseBlock(nf, gc) for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x

    class RRDBNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            nf, unshuffle = spec.features, {4: 1, 2: 2, 1: 4}[spec.scale]
            self.unshuffle = unshuffle
            self.conv_first = nn.Conv2d(spec.in_channels * unshuffle ** 2, nf, 3, 1, 1)
            self.body = nn.Sequential(*(RRDB(nf, spec.growth) for _ in range(spec.blocks)))
            self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_last = nn.Conv2d(nf, spec.out_channels, 3, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.unshuffle > 1:
                x = F.pixel_unshuffle(x, self.unshuffle)
            feat = self.conv_first(x)
            feat = feat + self.conv_body(self.body(feat))
            for conv in (self.conv_up1, self.conv_up2):
                feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")),
                                    0.2)
            return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    return RRDBNet()


class Upscaler:
    """A loaded upscaler: :meth:`upscale` takes and gives PIL images."""

    def __init__(self, state: dict[str, Any], device: str = "cpu", name: str = "") -> None:
        state = unwrap(state)
        self.spec = spec_from_state_dict(state)
        self.name = name
        net = build_network(self.spec)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise UserFacingError(f"The upscaler's weights do not fit a {self.spec.arch} "
                                  f"({str(exc).splitlines()[0]}).") from exc
        self.net = net.eval().to(device)
        self.device = device

    @property
    def scale(self) -> int:
        return self.spec.scale

    def upscale(self, image: Image.Image, *, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                progress: Callable[[int, int], None] | None = None,
                cancel: CancelToken | None = None) -> Image.Image:
        """``image`` (PIL, RGB) ``scale`` times larger; alpha is the caller's business."""
        import numpy as np
        import torch
        from PIL import Image

        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
        x = x.permute(2, 0, 1)[None].to(self.device)
        y = upscale_tensor(self.net, x, self.scale, tile=tile, overlap=overlap,
                           progress=progress, cancel=cancel)
        out = (y[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round()
        return Image.fromarray(out.astype(np.uint8))


def upscale_tensor(net: nn.Module, x: torch.Tensor, scale: int, *, tile: int = DEFAULT_TILE,
                   overlap: int = DEFAULT_OVERLAP,
                   progress: Callable[[int, int], None] | None = None,
                   cancel: CancelToken | None = None) -> torch.Tensor:
    """``net(x)`` for a (1, C, H, W) tensor; in tiles of ``tile`` input pixels (0: never) whose
    ``overlap`` is blended with linear ramps when the image is larger than one tile.

    The image is padded (reflected) to a multiple of 4 first, as the x1 / x2 RRDBNets need
    (their pixel unshuffle), and the output cropped back to ``scale`` × the input."""
    import torch

    height, width = x.shape[-2:]
    x = pad_to_multiple(x)
    h, w = x.shape[-2:]
    tile = max(16, tile // 4 * 4) if tile else max(h, w)
    overlap = max(0, min(overlap // 4 * 4, tile // 2))
    grid = tile_grid(h, w, tile, overlap)
    total = len(grid)
    if progress:
        progress(0, total)
    with torch.inference_mode():
        if total == 1:
            out = net(x).float()
            if progress:
                progress(1, 1)
        else:
            out = blend_tiles(x, grid, overlap, net, x.shape[1], scale=scale,
                              progress=progress, total=total, cancel=cancel)
    return out[..., :height * scale, :width * scale]
