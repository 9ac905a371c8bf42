"""CycleGAN benchmark: the studio's translation against the bare generator, and what tiling costs.

1. Throughput at 512×512: ``CycleGANGenerator.translate`` (PIL in, PIL out: normalising, padding,
   the forward pass, converting back) against the bare reference module's ``forward`` on a ready
   tensor, alternating runs in one process. Target ratio (studio / bare throughput) >= 0.95.
2. A 2048×2048 image untiled and in 512-pixel tiles (64 overlap): time, and peak memory above the
   baseline, as the process's resident set (sampled every 5 ms; torch's CPU allocations are not
   visible to tracemalloc, which is reported for the Python side).

Random weights at the real width (ngf 64, 9 blocks) by default; ``--ngf 16`` for a quick run.
Usage: python bench/transform.py [--ngf 64] [--reps 3] [--big 2048] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from studio.devices import process_rss  # noqa: E402
from studio.pipelines.cyclegan import CycleGANGenerator, GeneratorSpec, build_generator  # noqa: E402


class PeakRSS:
    """Samples the resident set size in a thread; ``peak`` is the largest rise above the start."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0

    def __enter__(self) -> PeakRSS:
        self.start = process_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, process_rss() - self.start)
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, process_rss() - self.start)


def photo(side: int) -> Image.Image:
    rng = np.random.default_rng(0)
    small = (rng.random((side // 32, side // 32, 3)) * 255).astype(np.uint8)
    return Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--big", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = GeneratorSpec(3, 3, args.ngf, args.blocks)
    torch.manual_seed(0)
    bare = build_generator(spec, fixed_norm=False).eval().requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "latest_net_G.pth"
        torch.save(bare.state_dict(), path)
        studio = CycleGANGenerator(path, "cpu")
    print(f"generator: {args.blocks} blocks, ngf {args.ngf}, "
          f"{sum(p.numel() for p in bare.parameters()) / 1e6:.1f} M parameters; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    image = photo(512)
    x = studio.to_tensor(image)
    with torch.inference_mode():  # warm-up both
        bare(x)
        studio.translate(image)
    t_bare, t_studio = [], []
    for _ in range(args.reps):
        with torch.inference_mode():
            t0 = time.perf_counter()
            bare(x)
            t_bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        studio.translate(image)
        t_studio.append(time.perf_counter() - t0)
    b, s = statistics.median(t_bare), statistics.median(t_studio)
    print(f"512x512  bare forward {b:.3f} s   studio translate {s:.3f} s   "
          f"throughput ratio studio/bare {b / s:.3f} (target >= 0.95)")

    big = photo(args.big)
    rows = []
    for label, tile in (("untiled", 0), ("tiles 512/64", 512)):
        tracemalloc.start()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            out = studio.translate(big, tile=tile, overlap=64)
            seconds = time.perf_counter() - t0
        _cur, py_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append((label, seconds, mem.peak, py_peak, out))
        print(f"{args.big}x{args.big} {label:13s} {seconds:7.2f} s   peak RSS +{mem.peak / 2**20:7.0f} "
              f"MiB   (Python heap peak {py_peak / 2**20:.0f} MiB)")
    (_, t0_, m0, _, a), (_, t1_, m1, _, c) = rows
    diff = np.abs(np.asarray(a, dtype=float) - np.asarray(c, dtype=float))
    print(f"tiling: time x{t1_ / t0_:.2f}, peak memory x{m1 / max(m0, 1):.2f}; tiled vs untiled "
          f"mean |diff| {diff.mean():.2f} / 255 (guide pass at 1024 px: statistics estimated)")


if __name__ == "__main__":
    main()
