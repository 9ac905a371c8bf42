"""``bench/txt2img.py --family NAME``: one family's txt2img through Studio against its plain
diffusers pipeline, in one process, alternating (#15).

    python bench/txt2img.py --family qwen-image --rounds 5
    python bench/txt2img.py --family all --rounds 5      # every family below, one after another
    python bench/txt2img.py --family chroma --profile    # and Studio's own work in one call

The model is built by bench/family_builders.py (random weights, the family's real classes, narrow
on the CPU). The studio side is ``Txt2ImgService.run`` with fast previews on, saving the PNG with
its metadata, as a user's run does; the raw side loads the same folder with diffusers'
``DiffusionPipeline`` and calls it with the family's own arguments (its CFG argument, the negative
prompt where the family takes one), the same seed on a CPU generator. Each call is timed in wall
seconds and in the process's CPU seconds (``time.process_time``, every thread): on a machine that
other programs share, wall time measures the neighbours too, CPU time mostly this work.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FamilyCase:
    """How the plain diffusers call of one family looks."""

    builder: str  # "module:function" in bench/ that saves the random-weight folder
    cfg: float
    cfg_argument: str = "guidance_scale"  # Qwen-Image: true_cfg_scale
    negative: bool = True  # the family takes a negative prompt (CFG)
    note: str = ""


FAMILY_CASES: dict[str, FamilyCase] = {
    "sd1": FamilyCase("txt2img:build_random_sd15", 7.0, note="SD 1.5, narrow UNet"),
    "sdxl": FamilyCase("family_builders:build_random_sdxl", 7.0, note="SDXL, narrow UNet"),
    "sd3": FamilyCase("family_builders:build_random_sd3", 3.5,
                      note="SD 3.5 medium's blocks, no T5"),
    "flux": FamilyCase("family_builders:build_random_flux", 3.5, negative=False,
                       note="FLUX.1 dev, distilled guidance: one pass a step"),
    "flux2": FamilyCase("family_builders:build_random_flux2", 1.0, negative=False,
                        note="FLUX.2 klein, distilled: guidance ignored, one pass a step"),
    "chroma": FamilyCase("family_builders:build_random_chroma", 4.0, note="Chroma1-HD, CFG"),
    "qwen-image": FamilyCase("family_builders:build_random_qwen_image", 4.0, "true_cfg_scale",
                             note="Qwen-Image, true CFG with the negative prompt"),
    "z-image": FamilyCase("family_builders:build_random_z_image", 4.0, note="Z-Image, CFG"),
}

#: the CPU run of a family: small enough that one image is a few CPU seconds
CPU_SIZE, CPU_STEPS = 256, 16


def _builder(dotted: str) -> Callable[..., Path]:
    import importlib

    module, name = dotted.split(":")
    return getattr(importlib.import_module(f"bench.{module}"), name)


def timed(call: Callable[[], Any], device: str) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``call()``."""
    from bench.txt2img import _sync

    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def alternate(studio: Callable[[], tuple[float, float]], raw: Callable[[], tuple[float, float]],
              rounds: int) -> dict[str, float]:
    """One warm-up each, then ``rounds`` rounds of one timing each, the side that goes first
    alternating (studio first, raw first, …: neither side always runs just after the other,
    whose left-over work — freed memory, a garbage collection — would land on it). The
    medians of wall and CPU seconds on each side and their ratios."""
    import gc

    def clean(side: Callable[[], tuple[float, float]]) -> tuple[float, float]:
        gc.collect()  # the previous call's garbage is collected outside the timing
        return side()

    studio()
    raw()
    s_t: list[tuple[float, float]] = []
    r_t: list[tuple[float, float]] = []
    for i in range(rounds):
        if i % 2:
            r_t.append(clean(raw))
            s_t.append(clean(studio))
        else:
            s_t.append(clean(studio))
            r_t.append(clean(raw))
    out = {}
    for i, clock in enumerate(("wall", "cpu")):
        out[f"studio_{clock}"] = statistics.median(t[i] for t in s_t)
        out[f"raw_{clock}"] = statistics.median(t[i] for t in r_t)
        out[f"ratio_{clock}"] = out[f"studio_{clock}"] / out[f"raw_{clock}"]
    out["rounds"] = rounds
    return out


class FamilySides:
    """The studio call and the raw call of one family on one built model."""

    def __init__(self, family: str, device: str, dtype_name: str, size: int, steps: int,
                 workdir: Path, full_size: bool = False) -> None:
        import torch
        from diffusers import DiffusionPipeline

        from studio.core.config import Settings, default_paths
        from studio.core.requests import Txt2ImgRequest
        from studio.library.families import FAMILIES
        from studio.pipelines.diffusion.txt2img import Txt2ImgService

        self.case, self.device = FAMILY_CASES[family], device
        os.environ["STUDIO_HOME"] = str(workdir / "studio-home")
        model = _builder(self.case.builder)(workdir / family, full_size)
        dtype = torch.float16 if dtype_name == "fp16" else torch.float32
        settings = Settings(device=device, precision=dtype_name, preview_mode="fast")
        self.service = Txt2ImgService(lambda: settings, default_paths)
        optional = FAMILIES[family].optional_components
        self.pipe = DiffusionPipeline.from_pretrained(str(model), dtype=dtype,
                                                      local_files_only=True,
                                                      **{name: None for name in optional})
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe = self.pipe.to(device)
        self.request = Txt2ImgRequest(
            model=str(model), prompt="a lighthouse on a cliff at dusk, oil paint",
            negative_prompt="blurry" if self.case.negative else "", steps=steps,
            cfg=self.case.cfg, width=size, height=size, seed=1)

    def studio_call(self) -> None:
        from bench.txt2img import _QuietSink
        from studio.core.jobs import CancelToken

        sink = _QuietSink()
        self.service.run(self.request, sink, CancelToken())
        assert sink.previews > 0, "previews were not produced"

    def raw_call(self) -> None:
        import torch

        req = self.request
        kwargs: dict[str, Any] = {self.case.cfg_argument: req.cfg}
        if self.case.negative:
            kwargs["negative_prompt"] = req.negative_prompt
        self.pipe(prompt=req.prompt, num_inference_steps=req.steps, width=req.width,
                  height=req.height, generator=torch.Generator("cpu").manual_seed(req.seed),
                  **kwargs)

    def measure(self, rounds: int) -> dict[str, float]:
        return alternate(lambda: timed(self.studio_call, self.device),
                         lambda: timed(self.raw_call, self.device), rounds)

    def profile(self, top: int = 15) -> str:
        """cProfile of one studio call (warm): how much of it is the diffusers pipeline's own
        call and how much Studio's work around it (request checks, prompt inputs, scheduler,
        PNG with metadata) and inside it (the step callback: previews, progress, cancel). A
        split of one call, so the machine's load shifts both parts alike; the ``top`` Studio
        functions by cumulative time follow."""
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(self.studio_call)
        stats: Any = pstats.Stats(prof)
        pipeline = callbacks = 0.0
        rows = []
        for (path, line, name), (_, calls, _, cumulative, _) in stats.stats.items():
            if "/diffusers/pipelines/" in path and name == "__call__":
                pipeline = max(pipeline, cumulative)
            if "/studio/" in path:
                rows.append((cumulative, calls, f"{Path(path).name}:{line}({name})"))
                if name == "on_step_end":
                    callbacks = max(callbacks, cumulative)
        total = stats.total_tt
        own = total - pipeline + callbacks
        lines = [f"  profile of one studio call: {total:.3f} s; the diffusers pipeline's call "
                 f"{pipeline - callbacks:.3f} s; Studio's own work {own * 1e3:.1f} ms "
                 f"({own / total:.1%}: {(total - pipeline) * 1e3:.1f} ms around the call, "
                 f"{callbacks * 1e3:.1f} ms in its step callbacks)"]
        lines += [f"    {cumulative * 1e3:8.1f} ms {calls:5d}x {where}"
                  for cumulative, calls, where in sorted(rows, reverse=True)[:top]]
        return "\n".join(lines)


def print_family(family: str, device: str, size: int, steps: int,
                 result: dict[str, float]) -> None:
    case = FAMILY_CASES[family]
    verdict = "OK" if result["ratio_cpu"] <= 1.03 else "ABOVE TARGET"
    print(f"{family} txt2img on {device} ({case.note}; {size} px, {steps} steps, CFG "
          f"{case.cfg:g} as {case.cfg_argument}, fast previews, PNG saved; "
          f"{result['rounds']} alternating rounds, medians)")
    print(f"  wall: studio {result['studio_wall']:.3f} s   raw {result['raw_wall']:.3f} s   "
          f"ratio {result['ratio_wall']:.3f}")
    print(f"  CPU:  studio {result['studio_cpu']:.3f} s   raw {result['raw_cpu']:.3f} s   "
          f"ratio {result['ratio_cpu']:.3f}  (target <= 1.03: {verdict})", flush=True)


def run_families(families: list[str], device: str, dtype_name: str, rounds: int,
                 full_size: bool, workdir: Path, profile: bool = False) -> dict[str, dict]:
    """Each family's studio/raw medians, printed as they finish (with the load average)."""
    unknown = [f for f in families if f not in FAMILY_CASES]
    if unknown:
        raise SystemExit(f"--family: one of {', '.join(FAMILY_CASES)} or all "
                         f"(not {', '.join(unknown)})")
    size, steps = (512, 20) if full_size else (CPU_SIZE, CPU_STEPS)
    results = {}
    for family in families:
        before = os.getloadavg()[0]
        try:
            sides = FamilySides(family, device, dtype_name, size, steps, workdir / family,
                                full_size)
            results[family] = sides.measure(rounds)
        except SystemExit as exc:  # a family built narrow only (on CUDA): said, skipped
            print(exc, flush=True)
            continue
        except Exception:  # one family's failure is printed; the others still run
            import traceback

            print(f"{family}: FAILED\n{traceback.format_exc()}", flush=True)
            continue
        print_family(family, device, size, steps, results[family])
        print(f"  load average {before:.1f} before, {os.getloadavg()[0]:.1f} after")
        if profile:
            print(sides.profile())
    return results
