"""CycleGAN generators: the ResNet generator of pytorch-CycleGAN-and-pix2pix, loaded unchanged.

The network is written here with the reference's exact module layout, so its state-dict keys are
the reference's (``model.1.weight``, ``model.10.conv_block.1.weight``, …, ``model.26.weight`` for
9 blocks) and released ``latest_net_G.pth`` files and training outputs (``*_net_G_A.pth``) load with
``strict=True``. Blocks (6 or 9 or any), width (ngf), input/output channels and dropout are read
from the state dict; InstanceNorm running statistics that old (PyTorch < 0.4) checkpoints carry
are dropped, as the reference's ``__patch_instance_norm_state_dict`` does.

Translation follows the reference's ``--preprocess none``: the resolution is kept, the image is
padded to a multiple of 4 (and cropped back), pixels are mapped to [-1, 1]. Images larger than a
tile run tile by tile with the InstanceNorm statistics of the whole image, computed layer by layer
(:mod:`studio.pipelines.cyclegan.stream`): the result equals the untiled one up to ±1-level
rounding, with memory bounded by two quarter-resolution buffers and one tile. Beyond
:data:`EXACT_MEMORY_LIMIT` (or with ``stats="estimate"``) the statistics are estimated on a copy
downscaled to ``guide_side`` and tiles are blended over overlapping edges instead: fewer buffers,
colours slightly off. torch is imported lazily (DESIGN rule 7).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from studio.core.jobs import CancelToken, JobCancelled, UserFacingError

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.weight$")
_STALE_NORM_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64
#: The estimate's statistics come from the image downscaled to at most this side (the guide pass at
#: 1024² needs about a quarter of an untiled 2048² pass); up to it they are exact too.
DEFAULT_GUIDE_SIDE = 1024
#: Where tiled statistics come from: see :meth:`CycleGANGenerator.translate`.
STATS_MODES = ("exact", "estimate")
#: Exact statistics keep two quarter-resolution buffers (128 bytes per pixel at ngf 64, fp32);
#: above this they are estimated instead (e.g. ngf 64 beyond ~33 megapixels).
EXACT_MEMORY_LIMIT = 4 * 2**30
MIN_SIDE = 16  # below this the reflection paddings inside the network have nothing to reflect


@dataclass(frozen=True)
class GeneratorSpec:
    """The shape of a ResNet generator, as read from its state dict."""

    input_nc: int
    output_nc: int
    ngf: int
    n_blocks: int
    dropout: bool = False

    @property
    def final_conv_index(self) -> int:
        return 17 + self.n_blocks


def clean_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Drop what the generator does not hold: InstanceNorm running stats (old checkpoints), a
    DataParallel ``module.`` prefix, and pickled metadata."""
    out = {}
    for key, value in state.items():
        if not isinstance(key, str) or not hasattr(value, "shape"):
            continue
        key = key[7:] if key.startswith("module.") else key
        if key.endswith(_STALE_NORM_SUFFIXES):
            continue
        out[key] = value
    return out


def spec_from_keys(shapes: dict[str, tuple[int, ...]]) -> GeneratorSpec | None:
    """The generator's shape from ``{key: shape}``; None when it is not a ResNet generator."""
    first = shapes.get("model.1.weight")
    blocks = {int(m.group(1)) for k in shapes if (m := _BLOCK_KEY.match(k))}
    if first is None or len(first) != 4 or not blocks:
        return None
    n_blocks = len(blocks)
    if blocks != set(range(10, 10 + n_blocks)):
        return None
    dropout = "model.10.conv_block.6.weight" in shapes
    last = shapes.get(f"model.{17 + n_blocks}.weight")
    if last is None or len(last) != 4:
        return None
    return GeneratorSpec(input_nc=int(first[1]), output_nc=int(last[0]), ngf=int(first[0]),
                         n_blocks=n_blocks, dropout=dropout)


def spec_from_state_dict(state: dict[str, Any]) -> GeneratorSpec:
    spec = spec_from_keys({k: tuple(v.shape) for k, v in state.items()})
    if spec is None:
        raise UserFacingError("This file is not a CycleGAN ResNet generator (no model.1.weight / "
                              "model.N.conv_block keys).")
    return spec


def build_generator(spec: GeneratorSpec, fixed_norm: bool = True) -> nn.Module:
    """A ResNet generator with the reference's module layout (so its keys match).

    ``fixed_norm`` uses :class:`GuidedInstanceNorm` (plain InstanceNorm until a guide pass fills
    it); False builds the bare reference network with ``nn.InstanceNorm2d`` (benchmarks, tests).
    """
    import torch
    from torch import nn

    class GuidedInstanceNorm(nn.InstanceNorm2d):
        """InstanceNorm2d (affine False) that can record its statistics or apply recorded ones."""

        def __init__(self, channels: int) -> None:
            super().__init__(channels, affine=False, track_running_stats=False)
            self.recording = False
            self.stats: tuple[torch.Tensor, torch.Tensor] | None = None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.recording:
                var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, unbiased=False)
                self.stats = (mean, var)
            elif self.stats is not None:
                mean, var = self.stats
                return (x - mean) * torch.rsqrt(var + self.eps)
            return super().forward(x)

    def norm(channels: int) -> nn.Module:
        if fixed_norm:
            return GuidedInstanceNorm(channels)
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)

    class ResnetBlock(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, padding=0, bias=True),
                      norm(dim), nn.ReLU(True)]
            if spec.dropout:
                layers.append(nn.Dropout(0.5))  # identity in eval; keeps the key indices
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, padding=0, bias=True),
                       norm(dim)]
            self.conv_block = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv_block(x)

    ngf = spec.ngf
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(spec.input_nc, ngf, 7, padding=0),
                         norm(ngf), nn.ReLU(True)]
    for i in range(2):
        mult = 2 ** i
        layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                   norm(ngf * mult * 2), nn.ReLU(True)]
    for _ in range(spec.n_blocks):
        layers.append(ResnetBlock(ngf * 4))
    for i in range(2):
        mult = 2 ** (2 - i)
        layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1,
                                      output_padding=1),
                   norm(ngf * mult // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, spec.output_nc, 7, padding=0), nn.Tanh()]

    class ResnetGenerator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

    return ResnetGenerator()


def load_generator_state(path: Path) -> dict[str, Any]:
    """A generator's tensors from ``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors``."""
    from studio.library.safe_load import load_state_dict

    state = load_state_dict(Path(path))
    for wrapper in ("state_dict", "netG", "G"):  # a few training scripts nest the weights
        if isinstance(state.get(wrapper), dict) and "model.1.weight" not in state:
            state = state[wrapper]
    return clean_state_dict(state)


class _RecordingNorm(Protocol):
    """A GuidedInstanceNorm of :func:`build_generator` (defined there, where torch is imported)."""

    recording: bool
    stats: tuple[torch.Tensor, torch.Tensor] | None


class CycleGANGenerator:
    """A loaded generator on a device, ready to translate PIL images."""

    def __init__(self, path: Path, device: str = "cpu", dtype: torch.dtype | None = None) -> None:
        import torch

        self.path = Path(path)
        state = load_generator_state(self.path)
        self.spec = spec_from_state_dict(state)
        self.device = device
        self.dtype = dtype or torch.float32
        net = build_generator(self.spec)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0][:200]
            raise UserFacingError(f"{self.path.name} does not match a CycleGAN ResNet generator "
                                  f"({first}).") from exc
        self.net = net.to(device=device, dtype=self.dtype).eval().requires_grad_(False)
        self._norms = [cast("_RecordingNorm", m) for m in self.net.modules()
                       if hasattr(m, "recording")]

    # -- tensors ---------------------------------------------------------------------------
    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """PIL → 1×C×H×W in [-1, 1] on the device (RGB, or L for one-channel models)."""
        import torch

        image = image.convert("L" if self.spec.input_nc == 1 else "RGB")
        arr = np.asarray(image, dtype=np.float32)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        t = torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(0)
        return (t / 127.5 - 1.0).to(self.device, self.dtype)

    @staticmethod
    def to_image(t: torch.Tensor) -> Image.Image:
        """1×C×H×W in [-1, 1] → PIL (the reference's ``tensor2im``: (x + 1) / 2 × 255)."""
        from PIL import Image

        arr = ((t[0].float().clamp(-1, 1) + 1.0) * 127.5).round().byte().cpu().numpy()
        if arr.shape[0] == 1:
            return Image.fromarray(arr[0], mode="L").convert("RGB")
        return Image.fromarray(arr.transpose(1, 2, 0), mode="RGB")

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on ``x`` of any size: pad right/bottom to a multiple of 4, crop back."""
        h, w = x.shape[-2:]
        return self.net(pad_to_multiple(x))[..., :h, :w]

    # -- whole images ----------------------------------------------------------------------
    def translate(self, image: Image.Image, *, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                  stats: str = "exact", guide_side: int | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: CancelToken | None = None) -> Image.Image:
        """Translate a PIL image at its own resolution; tiles when it is larger than ``tile``.

        ``stats`` says where a tiled image's InstanceNorm statistics come from: ``"exact"`` (the
        whole image, layer by layer; the result equals the untiled one up to rounding) or
        ``"estimate"`` (one pass over a copy downscaled to ``guide_side``, then tiles blended
        over ``overlap`` pixels: less work, colours slightly off). Exact falls back to the
        estimate when its buffers would pass :data:`EXACT_MEMORY_LIMIT`. ``progress(done,
        total)`` counts in tiles of the image plus one for the statistics.
        """
        import torch

        if stats not in STATS_MODES:
            raise ValueError(f"stats must be one of {STATS_MODES}, not {stats!r}")
        with torch.inference_mode():
            x = self.to_tensor(image)
            h, w = x.shape[-2:]
            if tile <= 0 or (h <= tile and w <= tile):
                if progress:
                    progress(0, 1)
                y = self.forward_padded(x)
                if progress:
                    progress(1, 1)
                return self.to_image(y)
            if stats == "exact" and self.exact_fits(h, w):
                return self.to_image(self._exact(x, tile, progress, cancel))
            return self.to_image(self._tiled(x, tile, overlap, guide_side or DEFAULT_GUIDE_SIDE,
                                             progress, cancel))

    def exact_fits(self, height: int, width: int) -> bool:
        """Whether exact tiled statistics for this size stay within :data:`EXACT_MEMORY_LIMIT`."""
        from studio.pipelines.cyclegan.stream import buffer_bytes

        return buffer_bytes(self.spec, height, width, self.dtype.itemsize) <= EXACT_MEMORY_LIMIT

    def _exact(self, x: torch.Tensor, tile: int, progress: Callable[[int, int], None] | None,
               cancel: CancelToken | None) -> torch.Tensor:
        from studio.pipelines.cyclegan.stream import StreamingTranslator

        height, width = x.shape[-2:]
        x = pad_to_multiple(x)
        runner = StreamingTranslator(self.net.model, self.spec.n_blocks, tile, progress, cancel)
        total = runner.tile_count(*x.shape[-2:]) + 1  # + the statistics, as in the estimate
        if progress:
            progress(0, total)
        try:
            y = runner.run(x, total)
        finally:
            for m in self._norms:
                m.stats = None
        if progress:
            progress(total, total)
        return y[..., :height, :width]

    def _record_guide(self, x: torch.Tensor, guide_side: int) -> None:
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        scale = min(1.0, guide_side / max(h, w))
        guide = x if scale >= 1.0 else F.interpolate(
            x, size=(max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale))),
            mode="bilinear", align_corners=False, antialias=True)
        for m in self._norms:
            m.recording, m.stats = True, None
        try:
            self.forward_padded(guide)
        finally:
            for m in self._norms:
                m.recording = False

    def _tiled(self, x: torch.Tensor, tile: int, overlap: int, guide_side: int,
               progress: Callable[[int, int], None] | None,
               cancel: CancelToken | None) -> torch.Tensor:

        tile = max(MIN_SIDE, tile // 4 * 4)
        overlap = max(0, min(overlap // 4 * 4, tile // 2))
        # Pad once for the whole image, so every tile starts on the network's 4-pixel grid and
        # sees the same pixels the untiled pass would; crop back at the end.
        height, width = x.shape[-2:]
        x = pad_to_multiple(x)
        h, w = x.shape[-2:]
        grid = tile_grid(h, w, tile, overlap)
        total = len(grid) + 1  # +1: the guide pass
        if progress:
            progress(0, total)
        self._record_guide(x, guide_side)
        try:
            if progress:
                progress(1, total)
            out = blend_tiles(x, grid, overlap, self.forward_padded, self.spec.output_nc,
                              progress=progress, first=1, total=total, cancel=cancel)
        finally:
            for m in self._norms:
                m.stats = None
        return out[..., :height, :width]


def pad_to_multiple(x: torch.Tensor, multiple: int = 4) -> torch.Tensor:
    """Pad right/bottom to a multiple of ``multiple`` (at least :data:`MIN_SIDE`), reflecting the
    edge (replicating it when the image is too small to reflect)."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph = max(MIN_SIDE, math.ceil(h / multiple) * multiple) - h
    pw = max(MIN_SIDE, math.ceil(w / multiple) * multiple) - w
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets along one axis (``length`` and ``tile`` multiples of 4, the network's stride):
    multiples of 4, the last flush with the end, neighbours overlapping by at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = max(4, (tile - overlap) // 4 * 4)
    starts = list(range(0, length - tile, stride))
    last = length - tile  # a multiple of 4: the image was padded to one
    if not starts or starts[-1] != last:
        starts.append(last)
    return starts


def tile_grid(h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(y0, x0, height, width)`` of every tile of an ``h``×``w`` image (both multiples of 4),
    row by row (:func:`tile_starts` on each axis)."""
    return [(y0, x0, min(tile, h - y0), min(tile, w - x0))
            for y0 in tile_starts(h, tile, overlap) for x0 in tile_starts(w, tile, overlap)]


def blend_tiles(x: torch.Tensor, grid: list[tuple[int, int, int, int]], overlap: int,
                run: Callable[[torch.Tensor], torch.Tensor], channels: int, *, scale: int = 1,
                progress: Callable[[int, int], None] | None = None, first: int = 0,
                total: int = 0, cancel: CancelToken | None = None) -> torch.Tensor:
    """``run(tile)`` for every tile of ``grid`` over ``x`` (1, C, H, W), each output ``scale``
    times the tile's size, blended where tiles overlap with :func:`blend_weights` ramps;
    ``progress(first + done, total)`` after each, a cancel honoured between two. Float32,
    uncropped."""
    import torch

    h, w = x.shape[-2:]
    out = torch.zeros((1, channels, h * scale, w * scale), dtype=torch.float32, device=x.device)
    weight = torch.zeros((1, 1, h * scale, w * scale), dtype=torch.float32, device=x.device)
    for done, (y0, x0, th, tw) in enumerate(grid, 1):
        if cancel is not None and cancel.cancelled:
            raise JobCancelled()
        piece = run(x[..., y0:y0 + th, x0:x0 + tw]).float()
        ramp = blend_weights(th * scale, tw * scale, overlap * scale, top=y0 > 0, left=x0 > 0,
                             bottom=y0 + th < h, right=x0 + tw < w)
        ramp_t = torch.from_numpy(ramp).to(x.device)[None, None]
        region = (..., slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale))
        out[region] += piece * ramp_t
        weight[region] += ramp_t
        if progress is not None:
            progress(first + done, total)
    return out / weight.clamp_min(1e-8)


def blend_weights(h: int, w: int, overlap: int, *, top: bool, left: bool, bottom: bool,
                  right: bool) -> np.ndarray:
    """Per-pixel weights of one tile: 1 inside, rising linearly across an overlap that borders
    another tile (never 0, so every pixel keeps some weight)."""
    def ramp(n: int, start: bool, end: bool) -> np.ndarray:
        r = np.ones(n, dtype=np.float32)
        k = min(overlap, n // 2)
        if k > 0:
            up = (np.arange(k, dtype=np.float32) + 0.5) / k
            if start:
                r[:k] = np.minimum(r[:k], up)
            if end:
                r[n - k:] = np.minimum(r[n - k:], up[::-1])
        return r

    return np.outer(ramp(h, top, bottom), ramp(w, left, right)).astype(np.float32)
