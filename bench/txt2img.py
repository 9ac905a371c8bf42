"""Benchmark: Studio's text-to-image path against plain diffusers, side by side in one process.

    python bench/txt2img.py                 # CPU: narrow SD1.5-architecture UNet, 256 px, 10 steps
    python bench/txt2img.py --device cuda   # fp16, full-size SD1.5 architecture, 512 px, 20 steps
    python bench/txt2img.py --family sd3    # SD 3.5's architecture (narrow on the CPU), txt2img only
    python bench/txt2img.py --family all --rounds 5   # every family (bench/family_bench.py):
                                            # sd1 sdxl sd3 flux flux2 chroma qwen-image z-image
    python bench/txt2img.py --controlnet    # only the ControlNet and T2I-Adapter cases

Both sides use random weights (nothing is downloaded), the same request and the same seed. The
studio side goes through ``Txt2ImgService.run`` with fast previews ON and saves each PNG (as a user
run does); the raw side calls the diffusers pipeline directly. Runs alternate (studio, raw, studio,
raw, …) after one warm-up each, and the medians are compared: the target is studio/raw ≤ 1.03.

Then, on the same model:

- hires fix: ``Txt2ImgService.run`` with the hires fix (×1.5, Lanczos, half the steps at denoise
  0.5) against diffusers' txt2img, a Lanczos resize and diffusers' img2img on the same
  components; and an upscaler model (a random-weight RRDBNet, as RealESRGAN_x4plus: full size on
  CUDA, narrower on the CPU) through ``UpscaleService.run`` (reading and saving the PNG) against
  the network called directly on the same pixels; each studio/raw, target ≤ 1.03;

- ControlNet: one random-weight ControlNet (canny on a drawing) through ``Txt2ImgService.run``
  against diffusers' ControlNet pipeline on the same components (the raw side makes the same
  canny map); studio/raw, target ≤ 1.03;
- T2I-Adapter: one random-weight full adapter through ``Txt2ImgService.run`` against diffusers'
  StableDiffusionAdapterPipeline on the same components; studio/raw, target ≤ 1.03;

- previews: what one fast preview (``latents_to_rgb``) costs at 512 and 1024 px, next to one UNet
  step of this case (target: a few per cent of a step at most);
- Ctrl+C: ``studio generate`` in a subprocess, SIGINT once its first image is written; the time
  from the signal to the process's exit (the job stops within a step), and the images kept.

The window's launch time and event-loop stalls follow (``--no-gui`` skips them); see
bench/gui_responsiveness.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = Path(__file__).resolve().parents[1] / "assets" / "configs" / "sd15"


@dataclass
class BenchSetup:
    """One benchmark case."""

    device: str
    dtype_name: str  # fp32 | fp16
    size: int
    steps: int
    full_size: bool


CPU_CASE = BenchSetup("cpu", "fp32", 256, 10, full_size=False)
CUDA_CASE = BenchSetup("cuda", "fp16", 512, 20, full_size=True)


def build_random_sd15(dest: Path, full_size: bool, seed: int = 0) -> Path:
    """Save a random-weight SD1.5-architecture pipeline (narrower UNet/VAE unless full_size)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from studio.library.clip_tokenizer import PAD_CLIP_L, write_clip_tokenizer

    torch.manual_seed(seed)
    unet_cfg = UNet2DConditionModel.load_config(str(CONFIGS / "unet"))
    vae_cfg = AutoencoderKL.load_config(str(CONFIGS / "vae"))
    if not full_size:
        unet_cfg["block_out_channels"] = [64, 128, 256, 256]
        vae_cfg["block_out_channels"] = [32, 64, 128, 128]
    unet = UNet2DConditionModel.from_config(unet_cfg)
    vae = AutoencoderKL.from_config(vae_cfg)
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(str(CONFIGS / "text_encoder")))
    tok_dir = write_clip_tokenizer(dest.parent / f".{dest.name}-tokenizer", PAD_CLIP_L)
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(str(tok_dir)),
        scheduler=PNDMScheduler.from_pretrained(str(CONFIGS), subfolder="scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if full_size:
        pipe = pipe.to(torch.float16)  # halves the bytes written and read
    pipe.save_pretrained(str(dest), safe_serialization=True)
    return dest


class _QuietSink:
    """Progress sink that keeps the previews (so they are really computed) and nothing else."""

    def __init__(self) -> None:
        self.previews = 0

    def __call__(self, step: int, total: int, preview: object = None) -> None:
        if preview is not None:
            self.previews += 1

    def partial(self, result: object) -> None:
        pass

    def message(self, text: str) -> None:
        pass


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_studio(service, request, device: str) -> float:
    from studio.core.jobs import CancelToken

    sink = _QuietSink()
    _sync(device)
    start = time.perf_counter()
    service.run(request, sink, CancelToken())
    _sync(device)
    elapsed = time.perf_counter() - start
    assert sink.previews > 0, "previews were not produced"
    return elapsed


def time_raw(pipe, request, device: str) -> float:
    import torch

    _sync(device)
    start = time.perf_counter()
    pipe(request.prompt, negative_prompt=request.negative_prompt,
         num_inference_steps=request.steps, guidance_scale=request.cfg, width=request.width,
         height=request.height, generator=torch.Generator("cpu").manual_seed(request.seed))
    _sync(device)
    return time.perf_counter() - start


def run_txt2img_bench(case: BenchSetup, rounds: int, workdir: Path) -> dict[str, float]:
    """Time studio vs raw diffusers for ``rounds`` alternating rounds; returns the medians."""
    import torch
    from diffusers import StableDiffusionPipeline

    from studio.core.config import Settings, default_paths
    from studio.core.requests import Txt2ImgRequest
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    os.environ["STUDIO_HOME"] = str(workdir / "studio-home")
    model = build_random_sd15(workdir / "model", case.full_size)
    dtype = torch.float16 if case.dtype_name == "fp16" else torch.float32
    settings = Settings(device=case.device, precision=case.dtype_name, preview_mode="fast")
    service = Txt2ImgService(lambda: settings, default_paths)
    raw = StableDiffusionPipeline.from_pretrained(str(model), dtype=dtype,
                                                  safety_checker=None, local_files_only=True)
    raw.set_progress_bar_config(disable=True)
    raw = raw.to(case.device)
    request = Txt2ImgRequest(model=str(model), prompt="a lighthouse on a cliff at dusk, oil paint",
                             negative_prompt="blurry", steps=case.steps, cfg=7.0,
                             width=case.size, height=case.size, seed=1)

    time_studio(service, request, case.device)  # warm-up: load, hash, first-call overheads
    time_raw(raw, request, case.device)
    studio_t, raw_t = [], []
    for _ in range(rounds):
        studio_t.append(time_studio(service, request, case.device))
        raw_t.append(time_raw(raw, request, case.device))
    med_s, med_r = statistics.median(studio_t), statistics.median(raw_t)
    return {"studio_s": med_s, "raw_s": med_r, "ratio": med_s / med_r,
            "studio_it_s": case.steps / med_s, "raw_it_s": case.steps / med_r}


def _alternate(studio, raw, rounds: int) -> dict[str, float]:
    """One warm-up each, then ``rounds`` alternating timings; the medians and their ratio."""
    studio()
    raw()
    studio_t, raw_t = [], []
    for _ in range(rounds):
        studio_t.append(studio())
        raw_t.append(raw())
    med_s, med_r = statistics.median(studio_t), statistics.median(raw_t)
    return {"studio_s": med_s, "raw_s": med_r, "ratio": med_s / med_r}


def run_hires_bench(case: BenchSetup, rounds: int, model: Path) -> dict[str, float]:
    """The hires fix (×1.5, Lanczos) against diffusers' txt2img → resize → img2img."""
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
    from PIL import Image

    from studio.core.config import Settings, default_paths
    from studio.core.requests import Txt2ImgRequest
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    dtype = torch.float16 if case.dtype_name == "fp16" else torch.float32
    settings = Settings(device=case.device, precision=case.dtype_name, preview_mode="fast")
    service = Txt2ImgService(lambda: settings, default_paths)
    first = StableDiffusionPipeline.from_pretrained(str(model), dtype=dtype, safety_checker=None,
                                                    local_files_only=True).to(case.device)
    second = StableDiffusionImg2ImgPipeline(**first.components)
    for pipe in (first, second):
        pipe.set_progress_bar_config(disable=True)
    request = Txt2ImgRequest(model=str(model), prompt="a lighthouse on a cliff at dusk",
                             negative_prompt="blurry", steps=case.steps, cfg=7.0,
                             width=case.size, height=case.size, seed=1, hires=True,
                             hires_scale=1.5, hires_upscaler="Lanczos",
                             hires_steps=case.steps // 2, hires_denoise=0.5)
    width, height = request.hires_size()

    def raw() -> float:
        _sync(case.device)
        start = time.perf_counter()
        common = dict(prompt=request.prompt, negative_prompt=request.negative_prompt,
                      guidance_scale=request.cfg)
        base = first(**common, num_inference_steps=request.steps, width=request.width,
                     height=request.height,
                     generator=torch.Generator("cpu").manual_seed(request.seed)).images[0]
        second(**common, image=base.resize((width, height), Image.Resampling.LANCZOS),
               strength=request.hires_denoise, num_inference_steps=request.hires_steps,
               generator=torch.Generator("cpu").manual_seed(request.seed))
        _sync(case.device)
        return time.perf_counter() - start

    return _alternate(lambda: time_studio(service, request, case.device), raw, rounds)


def run_controlnet_bench(case: BenchSetup, rounds: int, model: Path,
                         workdir: Path) -> dict[str, float]:
    """One ControlNet (a random-weight ControlNetModel built from the model's UNet, canny on a
    drawing) through ``Txt2ImgService.run`` against diffusers' StableDiffusionControlNetPipeline
    on the same components, the raw side making the same canny map with scikit-image."""
    import numpy as np
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, UNet2DConditionModel
    from PIL import Image, ImageDraw, ImageOps
    from skimage.feature import canny

    from studio.core.config import Settings, default_paths
    from studio.core.requests import Txt2ImgRequest
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    dtype = torch.float16 if case.dtype_name == "fp16" else torch.float32
    folder = default_paths().models_dir / "controlnet" / "bench-canny"
    if not folder.is_dir():
        torch.manual_seed(3)
        unet = UNet2DConditionModel.from_pretrained(str(model / "unet"))
        ControlNetModel.from_unet(unet).save_pretrained(str(folder))
    drawing = workdir / "drawing.png"
    sketch = Image.new("RGB", (case.size * 2, case.size * 2), "white")
    ImageDraw.Draw(sketch).ellipse((40, 40, case.size * 2 - 40, case.size * 2 - 40),
                                   outline="black", width=6)
    sketch.save(drawing)
    settings = Settings(device=case.device, precision=case.dtype_name, preview_mode="fast")
    service = Txt2ImgService(lambda: settings, default_paths)
    base = StableDiffusionControlNetPipeline.from_pretrained(
        str(model), controlnet=ControlNetModel.from_pretrained(str(folder), torch_dtype=dtype),
        torch_dtype=dtype, safety_checker=None, local_files_only=True).to(case.device)
    base.set_progress_bar_config(disable=True)
    request = Txt2ImgRequest(model=str(model), prompt="a lighthouse on a cliff at dusk",
                             negative_prompt="blurry", steps=case.steps, cfg=7.0,
                             width=case.size, height=case.size, seed=1,
                             controlnets=[{"model": "bench-canny", "image": str(drawing),
                                           "preprocess": "canny", "weight": 0.9}])

    def raw() -> float:
        _sync(case.device)
        start = time.perf_counter()
        fitted = ImageOps.fit(Image.open(drawing).convert("RGB"), (case.size, case.size),
                              Image.Resampling.LANCZOS)
        edges = canny(np.asarray(fitted.convert("L"), dtype=np.float64), sigma=1.0,
                      low_threshold=100, high_threshold=200)
        control = Image.fromarray((edges * 255).astype(np.uint8)).convert("RGB")
        base(prompt=request.prompt, negative_prompt=request.negative_prompt,
             guidance_scale=request.cfg, num_inference_steps=request.steps, width=case.size,
             height=case.size, image=control, controlnet_conditioning_scale=0.9,
             generator=torch.Generator("cpu").manual_seed(request.seed))
        _sync(case.device)
        return time.perf_counter() - start

    return _alternate(lambda: time_studio(service, request, case.device), raw, rounds)


def run_adapter_bench(case: BenchSetup, rounds: int, model: Path,
                      workdir: Path) -> dict[str, float]:
    """One T2I-Adapter (a random-weight full adapter sized to the model's UNet, on a ready
    control map) through ``Txt2ImgService.run`` against diffusers' StableDiffusionAdapterPipeline
    on the same components."""
    import json

    import torch
    from diffusers import StableDiffusionAdapterPipeline, T2IAdapter
    from PIL import Image, ImageDraw, ImageOps

    from studio.core.config import Settings, default_paths
    from studio.core.requests import Txt2ImgRequest
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    dtype = torch.float16 if case.dtype_name == "fp16" else torch.float32
    folder = default_paths().models_dir / "controlnet" / "bench-t2iadapter"
    if not folder.is_dir():
        unet = json.loads((model / "unet" / "config.json").read_text())
        torch.manual_seed(4)
        T2IAdapter(in_channels=3, channels=list(unet["block_out_channels"]), num_res_blocks=2,
                   downscale_factor=8, adapter_type="full_adapter").save_pretrained(str(folder))
    drawing = workdir / "adapter-map.png"
    sketch = Image.new("RGB", (case.size, case.size), "black")
    ImageDraw.Draw(sketch).ellipse((20, 20, case.size - 20, case.size - 20), outline="white",
                                   width=4)
    sketch.save(drawing)
    settings = Settings(device=case.device, precision=case.dtype_name, preview_mode="fast")
    service = Txt2ImgService(lambda: settings, default_paths)
    base = StableDiffusionAdapterPipeline.from_pretrained(
        str(model), adapter=T2IAdapter.from_pretrained(str(folder), torch_dtype=dtype),
        torch_dtype=dtype, safety_checker=None, local_files_only=True).to(case.device)
    base.set_progress_bar_config(disable=True)
    request = Txt2ImgRequest(model=str(model), prompt="a lighthouse on a cliff at dusk",
                             negative_prompt="blurry", steps=case.steps, cfg=7.0,
                             width=case.size, height=case.size, seed=1,
                             controlnets=[{"model": "bench-t2iadapter", "image": str(drawing),
                                           "weight": 0.9}])

    def raw() -> float:
        _sync(case.device)
        start = time.perf_counter()
        control = ImageOps.fit(Image.open(drawing).convert("RGB"), (case.size, case.size),
                               Image.Resampling.LANCZOS)
        base(prompt=request.prompt, negative_prompt=request.negative_prompt,
             guidance_scale=request.cfg, num_inference_steps=request.steps, width=case.size,
             height=case.size, image=control, adapter_conditioning_scale=0.9,
             generator=torch.Generator("cpu").manual_seed(request.seed))
        _sync(case.device)
        return time.perf_counter() - start

    return _alternate(lambda: time_studio(service, request, case.device), raw, rounds)


def run_upscale_bench(case: BenchSetup, rounds: int, workdir: Path) -> dict[str, float]:
    """An RRDBNet upscaler through the upscale job against the network called directly."""
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from studio.core.config import Settings, default_paths
    from studio.core.jobs import CancelToken
    from studio.core.requests import UpscaleRequest
    from studio.pipelines.upscale.model import UpscalerSpec, build_network
    from studio.pipelines.upscale.service import UpscaleService

    torch.manual_seed(0)
    spec = UpscalerSpec("RRDBNet", 4) if case.full_size else \
        UpscalerSpec("RRDBNet", 4, features=32, blocks=2, growth=16)
    net = build_network(spec).eval()
    weights = workdir / "4x-bench.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    net = net.to(case.device)
    side = case.size // 2
    picture = workdir / "upscale-in.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(picture)
    settings = Settings(device=case.device)
    service = UpscaleService(lambda: settings, default_paths)
    request = UpscaleRequest(model=str(weights), inputs=[str(picture)], tile=side)

    def studio() -> float:
        _sync(case.device)
        start = time.perf_counter()
        service.run(request, _QuietSink(), CancelToken())
        _sync(case.device)
        return time.perf_counter() - start

    def raw() -> float:
        _sync(case.device)
        start = time.perf_counter()
        pixels = np.asarray(Image.open(picture).convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(case.device)
        with torch.inference_mode():
            y = net(x)
        out = (y[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round()
        Image.fromarray(out.astype(np.uint8)).save(workdir / "upscale-raw.png")
        _sync(case.device)
        return time.perf_counter() - start

    return {**_alternate(studio, raw, rounds), "side": side}


def print_ratio(title: str, result: dict[str, float]) -> None:
    verdict = "OK" if result["ratio"] <= 1.03 else "ABOVE TARGET"
    print(title)
    print(f"  studio median {result['studio_s']:.3f} s   raw median {result['raw_s']:.3f} s   "
          f"ratio studio/raw = {result['ratio']:.3f}  (target <= 1.03: {verdict})")


def print_controlnet(case: BenchSetup, result: dict[str, float]) -> None:
    print_ratio(f"ControlNet on {case.device} (one, canny, {case.size} px, {case.steps} steps)",
                result)


def print_adapter(case: BenchSetup, result: dict[str, float]) -> None:
    print_ratio(f"T2I-Adapter on {case.device} (one, a ready map, {case.size} px, {case.steps} "
                "steps)", result)


def print_txt2img(case: BenchSetup, rounds: int, result: dict[str, float]) -> None:
    print(f"txt2img on {case.device} ({case.dtype_name}, {case.size}x{case.size}, {case.steps} "
          f"steps, {'full-size' if case.full_size else 'narrow'} SD1.5 architecture, "
          f"{rounds} alternating rounds, fast previews on)")
    print(f"  studio  median {result['studio_s']:.3f} s   {result['studio_it_s']:.2f} it/s")
    print(f"  raw     median {result['raw_s']:.3f} s   {result['raw_it_s']:.2f} it/s")
    verdict = "OK" if result["ratio"] <= 1.03 else "ABOVE TARGET"
    print(f"  ratio studio/raw = {result['ratio']:.3f}  (target <= 1.03: {verdict})")


def measure_previews(step_s: float, rounds: int = 50) -> dict[str, float]:
    """Seconds of one fast preview (median and best of ``rounds``) of a 512 px SD and a 1024 px
    SDXL latent. On a CPU that other programs share, the best is the preview's own cost and the
    median adds what waiting for torch's threads costs there."""
    import torch

    from studio.pipelines.diffusion.previews import latents_to_rgb

    cases = [("sd1", 512), ("sdxl", 1024)]
    latents = {family: torch.randn(1, 4, side // 8, side // 8,
                                   generator=torch.Generator().manual_seed(0))
               for family, side in cases}
    for _ in range(5):  # warm-up: factor matrices, torch's thread pool
        for family, _side in cases:
            latents_to_rgb(latents[family], family)
    out = {"step_s": step_s}
    for family, side in cases:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            latents_to_rgb(latents[family], family)
            times.append(time.perf_counter() - start)
        out[f"{family}_{side}"] = statistics.median(times)
        out[f"{family}_{side}_best"] = min(times)
    return out


def print_previews(case: BenchSetup, result: dict[str, float]) -> None:
    step = result["step_s"]
    share = result["sd1_512"] * (case.size / 512) ** 2 / step
    print(f"fast preview: {result['sd1_512'] * 1e3:.2f} ms at 512 px (SD; best "
          f"{result['sd1_512_best'] * 1e3:.2f}), {result['sdxl_1024'] * 1e3:.2f} ms at 1024 px "
          f"(SDXL; best {result['sdxl_1024_best'] * 1e3:.2f}); one step of this case ({case.size} "
          f"px, raw median / steps) {step * 1e3:.0f} ms: a {case.size} px preview is about "
          f"{share:.2%} of a step")


def measure_ctrl_c(model: Path, workdir: Path, case: BenchSetup, steps: int = 30,
                   count: int = 4) -> dict[str, float]:
    """``studio generate`` in a subprocess; SIGINT when the first image is out; seconds to exit."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, STUDIO_HOME=str(workdir / "ctrl-c-home"))
    out_dir = workdir / "ctrl-c-out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "generate", "--model", str(model), "--prompt",
         "a lighthouse", "--steps", str(steps), "--width", str(case.size), "--height",
         str(case.size), "--count", str(count), "--seed", "1", "--device", case.device,
         "--out", str(out_dir)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.perf_counter()
    try:
        first = proc.stdout.readline().strip()
        first_s = time.perf_counter() - started
        if not first:
            raise RuntimeError(proc.stderr.read()[-2000:])
        signalled = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=600)
        exit_s = time.perf_counter() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = len(list(out_dir.rglob("*.png")))
    return {"exit_s": exit_s, "first_s": first_s, "steps": steps, "kept": kept, "count": count,
            "code": proc.returncode}


def print_ctrl_c(result: dict[str, float]) -> None:
    print(f"studio generate, Ctrl+C after the first image ({result['steps']} steps, out "
          f"{result['first_s']:.1f} s after the start): exited {result['exit_s']:.2f} s after the "
          f"signal (status {result['code']}), {result['kept']} of {result['count']} images kept")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-gui", action="store_true",
                        help="skip the window launch time and event-loop stall measurements")
    parser.add_argument("--controlnet", action="store_true",
                        help="only the ControlNet case (the default run has it too)")
    parser.add_argument("--family", default="",
                        help="one family's txt2img against its diffusers pipeline, wall and "
                             "CPU time (sd1, sdxl, sd3, flux, flux2, chroma, qwen-image, "
                             "z-image; several with commas, or all); see bench/family_bench.py")
    parser.add_argument("--profile", action="store_true",
                        help="with --family: split one studio call (cProfile) into the diffusers "
                             "call and Studio's own work")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch's CPU threads (0: its default); 1 keeps CPU time steady on "
                             "a machine other programs load (no threads spinning for a core)")
    args = parser.parse_args(argv)
    case = CUDA_CASE if args.device == "cuda" else CPU_CASE
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.family:
        from bench.family_bench import FAMILY_CASES, run_families

        families = list(FAMILY_CASES) if args.family == "all" else args.family.split(",")
        with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
            run_families(families, case.device, case.dtype_name, args.rounds, case.full_size,
                         Path(tmp), profile=args.profile)
        return 0
    if args.controlnet:
        with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
            os.environ["STUDIO_HOME"] = str(Path(tmp) / "studio-home")
            model = build_random_sd15(Path(tmp) / "model", case.device == "cuda")
            print_controlnet(case, run_controlnet_bench(case, args.rounds, model, Path(tmp)))
            print_adapter(case, run_adapter_bench(case, args.rounds, model, Path(tmp)))
        return 0
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        result = run_txt2img_bench(case, args.rounds, Path(tmp))
        print_txt2img(case, args.rounds, result)
        print_ratio(f"hires fix on {case.device} ({case.size} px → ×1.5 Lanczos, {case.steps} + "
                    f"{case.steps // 2} steps at denoise 0.5)",
                    run_hires_bench(case, args.rounds, Path(tmp) / "model"))
        print_controlnet(case, run_controlnet_bench(case, args.rounds, Path(tmp) / "model",
                                                    Path(tmp)))
        print_adapter(case, run_adapter_bench(case, args.rounds, Path(tmp) / "model", Path(tmp)))
        upscale = run_upscale_bench(case, args.rounds, Path(tmp))
        print_ratio(f"upscaler on {case.device} (RRDBNet ×4, {upscale['side']} px in, PNG read "
                    "and written on both sides)", upscale)
        print_previews(case, measure_previews(result["raw_s"] / case.steps))
        print_ctrl_c(measure_ctrl_c(Path(tmp) / "model", Path(tmp), case))
    if not args.no_gui:
        from bench.gui_responsiveness import run as run_gui

        run_gui()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
