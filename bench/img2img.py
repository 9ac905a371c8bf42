"""Benchmark: outpainting and SD upscale through Studio against the same plain diffusers calls.

    python bench/img2img.py                  # CPU: narrow SD1.5-architecture model, 10 steps
    python bench/img2img.py --device cuda    # fp16, full-size SD1.5 architecture, 20 steps

Random weights (nothing is downloaded), one process, the same seeds; runs alternate (studio,
plain, studio, plain, …) after one warm-up each and the medians are compared (target
studio/plain ≤ 1.03):

- outpaint: a 256×192 picture extended by 64 px left and right. Studio: ``Img2ImgService.run``
  (reading the file, the edge-filled canvas and feathered mask, the inpaint call, pasting the
  original back, saving the PNG with its parameters). Plain: diffusers' inpaint pipeline on the
  same components with the same canvas and mask, then ``apply_overlay``.
- SD upscale: the picture ×2 with Lanczos, refined in 256-px tiles (64-px overlap) by img2img at
  strength 0.4. Plain: the same resize, diffusers' img2img per tile and the same blending.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="studio-bench-img2img-") as tmp:
        os.environ["STUDIO_HOME"] = str(Path(tmp) / "studio-home")
        for name, result in run(args.device, args.rounds, Path(tmp)):
            print(f"{name}: studio {result['studio_s']:.3f} s, plain {result['raw_s']:.3f} s, "
                  f"ratio {result['ratio']:.3f}")
    return 0


def run(device: str, rounds: int, workdir: Path) -> list[tuple[str, dict[str, float]]]:
    import numpy as np
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline
    from PIL import Image

    from bench.txt2img import CPU_CASE, CUDA_CASE, _alternate, _sync, build_random_sd15
    from studio.core.config import Settings, default_paths
    from studio.core.jobs import CancelToken
    from studio.core.requests import Img2ImgRequest
    from studio.pipelines.cyclegan.model import blend_tiles
    from studio.pipelines.diffusion.img2img import Img2ImgService
    from studio.pipelines.diffusion.outpaint import outpaint_canvas
    from studio.pipelines.diffusion.sd_upscale import sd_upscale_grid

    case = CUDA_CASE if device == "cuda" else CPU_CASE
    model = build_random_sd15(workdir / "model", case.full_size)
    rng = np.random.default_rng(0)
    picture = Image.fromarray((rng.random((192, 256, 3)) * 255).astype(np.uint8))
    source = workdir / "picture.png"
    picture.save(source)
    settings = Settings(device=device, precision=case.dtype_name, preview_mode="fast")
    service = Img2ImgService(lambda: settings, default_paths)
    common = dict(model=str(model), image=str(source), prompt="a lighthouse on a cliff",
                  steps=case.steps, cfg=6.0, seed=1)
    outpaint = Img2ImgRequest(**common, strength=1.0, outpaint_left=64, outpaint_right=64,
                              mask_blur=8)
    upscale = Img2ImgRequest(**common, strength=0.4, sd_upscale=2.0, sd_upscale_tile=256,
                             sd_upscale_overlap=64)

    class Quiet:
        def __call__(self, *args: object) -> None:
            pass

        partial = message = __call__

    def studio(request: Img2ImgRequest) -> float:
        _sync(device)
        start = time.perf_counter()
        service.run(request, Quiet(), CancelToken())
        _sync(device)
        return time.perf_counter() - start

    studio(outpaint)  # loads the model into the service's cache
    base = service.cache.current
    inpaint = StableDiffusionInpaintPipeline(**base.components)
    img2img = StableDiffusionImg2ImgPipeline(**base.components)
    for pipe in (inpaint, img2img):
        pipe.set_progress_bar_config(disable=True)
    canvas, mask = outpaint_canvas(picture, dataclasses.replace(outpaint, width=256,
                                                                height=192))

    def plain_outpaint() -> float:
        _sync(device)
        start = time.perf_counter()
        out = inpaint(prompt=outpaint.prompt, image=canvas, mask_image=mask, width=canvas.width,
                      height=canvas.height, strength=1.0, num_inference_steps=case.steps,
                      guidance_scale=6.0, generator=torch.Generator("cpu").manual_seed(1)
                      ).images[0]
        inpaint.image_processor.apply_overlay(mask, canvas, out)
        _sync(device)
        return time.perf_counter() - start

    width, height = 512, 384
    grid = sd_upscale_grid(width, height, upscale)

    def plain_upscale() -> float:
        _sync(device)
        start = time.perf_counter()
        big = picture.resize((width, height), Image.Resampling.LANCZOS)
        pixels = torch.from_numpy(np.asarray(big, dtype=np.float32) / 255).permute(2, 0, 1)[None]

        def tile(crop: torch.Tensor) -> torch.Tensor:
            crop_px = (crop[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            done = img2img(prompt=upscale.prompt, image=Image.fromarray(crop_px), strength=0.4,
                           num_inference_steps=case.steps, guidance_scale=6.0,
                           generator=torch.Generator("cpu").manual_seed(1)).images[0]
            return torch.from_numpy(np.asarray(done, dtype=np.float32) / 255).permute(2, 0,
                                                                                      1)[None]

        blend_tiles(pixels, grid, 64, tile, 3)
        _sync(device)
        return time.perf_counter() - start

    return [(f"outpaint on {device} (256×192 + 64 px left and right, {case.steps} steps)",
             _alternate(lambda: studio(outpaint), plain_outpaint, rounds)),
            (f"SD upscale on {device} (256×192 ×2, {len(grid)} tiles of 256 px, "
             f"{case.steps} steps at strength 0.4)",
             _alternate(lambda: studio(upscale), plain_upscale, rounds))]


if __name__ == "__main__":
    raise SystemExit(main())
