"""Tiled CycleGAN translation with the InstanceNorm statistics of the whole image, exactly.

Every InstanceNorm of the ResNet generator normalises with the mean and variance of its input over
the *whole* image, so a tile cannot be translated on its own: its colours would drift from its
neighbours'. Instead of estimating those statistics on a downscaled copy, this module runs the
network layer group by layer group over the full image, tile by tile, in the order the statistics
are needed:

- encoder (full resolution, ngf channels — the largest activations): each of its three norms gets
  its statistics from a sweep that recomputes the layers before it from the image; the last sweep
  writes the encoder's output into a buffer at a quarter of the resolution;
- each residual block works on that buffer in full-width bands: sweep 1 writes the first
  convolution into a second buffer and gathers its statistics; sweep 2 overwrites that buffer
  with the second convolution band by band (keeping a copy of the one row the next band still
  needs) and gathers its statistics; then the normalised result is added to the first buffer;
- decoder: two sweeps gather the statistics of its two norms, a last one writes the output image.

Each sweep computes a tile from a window that is larger by the receptive field of its few layers
and keeps only the middle, so every tile equals the corresponding region of the untiled pass (up to
float rounding in the statistics' sums); no blending is needed. Memory: two buffers of
``4·ngf × H/4 × W/4`` values (for ngf 64, 128 bytes per image pixel: 1.5 GB for 12 megapixels),
the image in and out, and one tile's activations. The price is recomputation of the encoder and
decoder for each of their norms: about 1.5× the CPU time of one untiled pass (bench/transform.py;
the residual blocks, most of the work, run once).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from studio.core.jobs import CancelToken, JobCancelled

if TYPE_CHECKING:
    import torch

    from studio.pipelines.cyclegan.model import GeneratorSpec

#: Receptive-field margins (in the sweep's input pixels) that make a window's middle exact.
ENCODER_MARGINS = (4, 4, 8)  # conv 7×7; + stride-2 conv; + second stride-2 conv (multiple of 4)
BLOCK_MARGIN = 1  # one 3×3 convolution with reflection padding
DECODER_MARGINS = (1, 1, 2)  # transposed conv; + second; + 7×7 conv (bottleneck pixels)


def buffer_bytes(spec: GeneratorSpec, height: int, width: int, itemsize: int = 4) -> int:
    """Bytes of the two bottleneck buffers for an image of ``height × width`` (padded to 4)."""
    h, w = math.ceil(height / 4), math.ceil(width / 4)
    return 2 * 4 * spec.ngf * h * w * itemsize


def spans(length: int, tile: int, align: int) -> list[tuple[int, int]]:
    """Split ``[0, length)`` into near-equal spans of at most about ``tile``, starting on
    multiples of ``align`` (``length`` is one)."""
    count = max(1, math.ceil(length / max(align, tile)))
    cuts = sorted({min(length, round(length * i / count / align) * align)
                   for i in range(count)} | {length})
    return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


class _RunningStats:
    """Per-channel mean and variance over many tiles (Chan et al.'s pairwise update, float64 on
    the CPU: Apple's MPS has no float64, and C numbers per tile cost nothing to move)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: Any = None
        self.m2: Any = None

    def add(self, x: torch.Tensor) -> None:
        import torch

        if x.dtype != torch.float32:
            x = x.float()
        var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
        k = x.shape[0] * x.shape[2] * x.shape[3]
        mean, m2 = mean.to("cpu", torch.float64), var.to("cpu", torch.float64) * k
        if not self.count:
            self.count, self.mean, self.m2 = k, mean, m2
            return
        total = self.count + k
        delta = mean - self.mean
        self.mean = self.mean + delta * (k / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * k / total)
        self.count = total

    def result(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, biased variance) as 1×C×1×1 tensors of ``like``'s dtype and device, as
        InstanceNorm computes them."""
        shape = (1, -1, 1, 1)
        var = self.m2 / self.count
        return (self.mean.view(shape).to(like.device, like.dtype),
                var.view(shape).to(like.device, like.dtype))


def _normalize_(x: torch.Tensor, norm: Any) -> torch.Tensor:
    """``norm`` applied in place, with the arithmetic of GuidedInstanceNorm (no full-size copy)."""
    import torch

    mean, var = norm.stats
    return x.sub_(mean).mul_(torch.rsqrt(var + norm.eps))


def _chain(layers: Sequence[Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            x = layer(x)
        return x
    return run


def _macs(layers: Sequence[Any], pixel_factor: dict[int, float]) -> float:
    """Relative cost of a layer group: weights × output pixels (as a share of the image's)."""
    return sum(m.weight.numel() * pixel_factor.get(id(m), 1.0) for m in layers
               if hasattr(m, "weight") and m.weight is not None and m.weight.dim() == 4)


class StreamingTranslator:
    """Translates one padded image tensor (``1×C×H×W``, H and W multiples of 4) in tiles with
    exact whole-image InstanceNorm statistics. ``model`` is the generator's ``nn.Sequential``
    (reference layout), its norms GuidedInstanceNorm; the caller clears the statistics this
    leaves in them."""

    def __init__(self, model: Any, n_blocks: int, tile: int,
                 progress: Callable[[int, int], None] | None = None,
                 cancel: CancelToken | None = None) -> None:
        self.enc = list(model[:10])
        self.blocks = [b.conv_block for b in model[10:10 + n_blocks]]
        self.dec = list(model[10 + n_blocks:])
        self.tile = max(16, tile // 4 * 4)
        self.progress, self.cancel = progress, cancel
        # The weights: pixels each conv produces, per pixel of the image.
        factor = {id(self.enc[1]): 1.0, id(self.enc[4]): 1 / 4, id(self.enc[7]): 1 / 16,
                  id(self.dec[0]): 1 / 4, id(self.dec[3]): 1.0, id(self.dec[7]): 1.0}
        for block in self.blocks:
            factor.update({id(m): 1 / 16 for m in block})
        self._factor = factor
        # the progress of one pass (set by run)
        self._units, self._reported, self._done, self._total = 0, 0, 0.0, 1.0

    # -- the plan --------------------------------------------------------------------------
    def tile_count(self, h: int, w: int) -> int:
        """Tiles of the last sweep (the one that writes the image): the image's tile count."""
        t = self.tile // 4
        return len(spans(h // 4, t, 1)) * len(spans(w // 4, t, 1))

    def _work(self) -> float:
        enc, dec, f = self.enc, self.dec, self._factor
        work = _macs(enc[:2], f) + _macs(enc[:5], f) + _macs(enc[:8], f)
        for cb in self.blocks:
            work += _macs(cb[:2], f) + _macs(cb[-3:-1], f)
        return work + _macs(dec[:1], f) + _macs(dec[:4], f) + _macs(dec, f)

    # -- sweeps ----------------------------------------------------------------------------
    def _sweep(self, src: torch.Tensor, layers: Sequence[Any], *, num: int, den: int, margin: int,
               tile: int, sink: Callable[[torch.Tensor, int, int], None]) -> None:
        """Run ``layers`` over ``src`` window by window; ``sink(out, y, x)`` gets each tile's exact
        part at output position (y, x). Output pixels = input pixels × num / den."""
        run = _chain(layers)
        h, w = src.shape[-2:]
        rows, cols = spans(h, tile, den), spans(w, tile, den)
        cost = _macs(layers, self._factor) / (len(rows) * len(cols))
        for y0, y1 in rows:
            for x0, x1 in cols:
                if self.cancel is not None and self.cancel.cancelled:
                    raise JobCancelled()
                wy0, wx0 = max(0, y0 - margin), max(0, x0 - margin)
                window = src[..., wy0:min(h, y1 + margin), wx0:min(w, x1 + margin)]
                out = run(window)
                top, left = (y0 - wy0) * num // den, (x0 - wx0) * num // den
                out = out[..., top:top + (y1 - y0) * num // den,
                          left:left + (x1 - x0) * num // den]
                sink(out, y0 * num // den, x0 * num // den)
                self._advance(cost)

    def _advance(self, cost: float) -> None:
        self._done += cost
        if self.progress:
            units = min(self._units, int(self._units * self._done / self._total))
            if units != self._reported:
                self._reported = units
                self.progress(units, self._units)

    def _stats(self, src: torch.Tensor, layers: Sequence[Any], norm: Any, **kw: Any) -> None:
        acc = _RunningStats()
        self._sweep(src, layers, sink=lambda out, y, x: acc.add(out), **kw)
        norm.stats = acc.result(src)

    def _write(self, src: torch.Tensor, layers: Sequence[Any], dest: torch.Tensor, norm: Any = None,
               **kw: Any) -> None:
        acc = _RunningStats()

        def sink(out: torch.Tensor, y: int, x: int) -> None:
            dest[..., y:y + out.shape[-2], x:x + out.shape[-1]].copy_(out)
            if norm is not None:
                acc.add(out)

        self._sweep(src, layers, sink=sink, **kw)
        if norm is not None:
            norm.stats = acc.result(src)

    def _bands(self, src: torch.Tensor, layers: Sequence[Any], dest: torch.Tensor, norm: Any, band: int) -> None:
        """``dest = layers(src)`` in full-width bands of rows, gathering ``norm``'s statistics;
        ``dest`` may be ``src`` (the rows above a band are then read from a saved copy)."""
        import torch

        run, acc, m = _chain(layers), _RunningStats(), BLOCK_MARGIN
        inplace = dest is src
        h = src.shape[-2]
        rows = spans(h, band, 1)
        cost = _macs(layers, self._factor) / len(rows)
        above = None  # in place: the old values of the m rows above the band
        for y0, y1 in rows:
            if self.cancel is not None and self.cancel.cancelled:
                raise JobCancelled()
            lo, hi = max(0, y0 - m), min(h, y1 + m)
            window = src[..., lo:hi, :]
            if inplace and above is not None:
                window = torch.cat([above, src[..., y0:hi, :]], dim=-2)
            out = run(window)[..., y0 - lo:y1 - lo, :]
            if inplace:
                above = src[..., y1 - m:y1, :].clone()
            dest[..., y0:y1, :].copy_(out)
            acc.add(out)
            self._advance(cost)
        norm.stats = acc.result(src)

    # -- the pass --------------------------------------------------------------------------
    def run(self, x: torch.Tensor, progress_units: int) -> torch.Tensor:
        """The translated image (``1×C_out×H×W``, float32) for the padded input ``x``."""
        import torch

        enc, dec, t = self.enc, self.dec, self.tile
        self._units, self._reported, self._done = progress_units, 0, 0.0
        self._total = self._work()
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        m1, m2, m3 = ENCODER_MARGINS
        # Encoder: the image is the only thing kept at full resolution.
        self._stats(x, enc[:2], enc[2], num=1, den=1, margin=m1, tile=t)
        self._stats(x, enc[:5], enc[5], num=1, den=2, margin=m2, tile=t)
        channels = enc[7].out_channels
        trunk = torch.empty((n, channels, h // 4, w // 4), dtype=x.dtype, device=x.device)
        self._write(x, enc[:8], trunk, norm=enc[8], num=1, den=4, margin=m3, tile=t)
        _normalize_(trunk, enc[8]).relu_()
        # Residual blocks at a quarter of the resolution, in bands of about the memory of a
        # tile above ((tile/2)² pixels of 4·ngf channels = tile² pixels of ngf channels).
        band = max(4, math.ceil((t // 2) ** 2 / (w // 4)))
        inner = torch.empty_like(trunk)
        for cb in self.blocks:
            conv_a, norm_a, conv_b, norm_b = cb[:2], cb[2], cb[-3:-1], cb[-1]
            self._bands(trunk, conv_a, inner, norm_a, band)
            _normalize_(inner, norm_a).relu_()  # dropout, if any, is the identity in eval
            self._bands(inner, conv_b, inner, norm_b, band)
            trunk.add_(_normalize_(inner, norm_b))
        del inner
        # Decoder: back to full resolution, recomputed from the trunk for each norm.
        d1, d2, d3 = DECODER_MARGINS
        self._stats(trunk, dec[:1], dec[1], num=2, den=1, margin=d1, tile=t // 4)
        self._stats(trunk, dec[:4], dec[4], num=4, den=1, margin=d2, tile=t // 4)
        out = torch.empty((n, dec[-2].out_channels, h, w), dtype=torch.float32, device=x.device)
        self._write(trunk, dec, out, num=4, den=1, margin=d3, tile=t // 4)
        return out
