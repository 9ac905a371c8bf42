"""CycleGAN benchmark: the studio's translation against the bare generator, and what tiling costs.

1. Throughput at 512×512: ``CycleGANGenerator.translate`` (PIL in, PIL out: normalising, padding,
   the forward pass, converting back) against the bare reference module's ``forward`` on a ready
   tensor, alternating runs in one process. Target ratio (studio / bare throughput) >= 0.95.
2. Large images (``--big``, 1536 and 2048 px square by default) untiled, in tiles with exact
   InstanceNorm statistics (``stats="exact"``, one row per ``--tiles`` size) and in tiles with
   statistics estimated on a ≤1024 px copy (``stats="estimate"``, 64-px blended overlap): wall and
   CPU seconds (CPU time, summed over threads, is what to compare on a shared machine; ratios are
   against untiled), peak memory and the difference to the untiled image (mean and max over
   pixels and channels, in 8-bit levels). Each run is a fresh spawned process, so one run's freed
   memory cannot hide the next one's peak; peak = the largest resident set above the process's
   own after warm-up (sampled every 5 ms; torch's CPU allocations are invisible to tracemalloc).

Random weights (seeded): the real width by default (ngf 64, 9 blocks); ``--ngf 32`` is quicker.
Usage: python bench/transform.py [--ngf 64] [--reps 3] [--big 1536 2048] [--tiles 512 1024]
       [--estimate-tiles 512] [--threads N] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


class PeakRSS:
    """Samples the resident set size in a thread; ``peak`` is the largest rise above the start."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0

    def __enter__(self) -> PeakRSS:
        from studio.core.devices import process_rss

        self._rss = process_rss
        self.start = process_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self.start)
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss() - self.start)


def photo(side: int) -> Image.Image:
    rng = np.random.default_rng(0)
    small = (rng.random((side // 32, side // 32, 3)) * 255).astype(np.uint8)
    return Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)


def one_run(weights: str, side: int, tile: int, stats: str, threads: int, out: str,
            queue: mp.Queue) -> None:
    """In a spawned process: translate a ``side``² photo once and report (seconds, peak bytes)."""
    import torch

    from studio.pipelines.cyclegan.model import CycleGANGenerator

    if threads:
        torch.set_num_threads(threads)
    gen = CycleGANGenerator(Path(weights), "cpu")
    gen.translate(photo(128), tile=64, stats=stats)  # warm-up: kernels, thread pool
    image = photo(side)
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        result = gen.translate(image, tile=tile, overlap=64, stats=stats)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    result.save(out)
    queue.put((seconds, cpu, mem.peak))


def run_isolated(weights: Path, side: int, tile: int, stats: str, threads: int,
                 tmp: Path) -> tuple[float, float, int, np.ndarray]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    out = tmp / f"{side}-{tile}-{stats}.png"
    proc = ctx.Process(target=one_run, args=(str(weights), side, tile, stats, threads, str(out),
                                             queue))
    proc.start()
    seconds, cpu, peak = queue.get()
    proc.join()
    return seconds, cpu, peak, np.asarray(Image.open(out), dtype=np.int16)


def throughput(studio, bare, reps: int) -> None:
    import torch

    image = photo(512)
    x = studio.to_tensor(image)
    with torch.inference_mode():  # warm-up both
        bare(x)
        studio.translate(image)
    t_bare, t_studio = [], []
    for _ in range(reps):
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


def main() -> None:
    import torch

    from studio.pipelines.cyclegan.model import CycleGANGenerator, GeneratorSpec, build_generator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--big", type=int, nargs="+", default=[1536, 2048])
    ap.add_argument("--tiles", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--estimate-tiles", type=int, nargs="*", default=[512])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = GeneratorSpec(3, 3, args.ngf, args.blocks)
    torch.manual_seed(0)
    bare = build_generator(spec, fixed_norm=False).eval().requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        weights = tmp / "latest_net_G.pth"
        torch.save(bare.state_dict(), weights)
        print(f"generator: {args.blocks} blocks, ngf {args.ngf}, "
              f"{sum(p.numel() for p in bare.parameters()) / 1e6:.1f} M parameters; "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
        if not args.skip_throughput:
            throughput(CycleGANGenerator(weights, "cpu"), bare, args.reps)
        for side in args.big:
            runs = [("untiled", 0, "exact")]
            runs += [(f"exact {t}", t, "exact") for t in args.tiles]
            runs += [(f"estimate {t}/64", t, "estimate") for t in args.estimate_tiles]
            base_cpu = base_mem = 0.0
            reference = None
            for label, tile, stats in runs:
                seconds, cpu, peak, image = run_isolated(weights, side, tile, stats, args.threads,
                                                         tmp)
                if reference is None:
                    reference, base_cpu, base_mem = image, cpu, peak
                diff = np.abs(image - reference)
                print(f"{side}x{side} {label:16s} {seconds:6.1f} s wall, {cpu:6.1f} s CPU "
                      f"(x{cpu / base_cpu:.2f})  peak RSS +{peak / 2**20:5.0f} MiB "
                      f"(x{peak / max(base_mem, 1):.2f})  vs untiled: mean |diff| "
                      f"{diff.mean():6.3f}, max {diff.max():3d} / 255", flush=True)


if __name__ == "__main__":
    main()
