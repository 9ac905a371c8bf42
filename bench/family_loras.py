"""Benchmark: a FLUX.1 LoRA through Studio's path against plain diffusers, in one process.

    python bench/family_loras.py                 # CPU: narrow FLUX.1 architecture, 256 px, 10 steps
    python bench/family_loras.py --device cuda   # fp16, FLUX.1 dev's full architecture, 512 px

Random weights on both sides (nothing downloaded): the model of ``bench/txt2img.py --family flux``
and a random rank-16 LoRA on its double and single blocks, written in kohya's layout and in BFL's
(``diffusion_model.…lora_A``, which Studio renames before diffusers reads it).

- generating with the LoRA: ``Txt2ImgService.run`` (the LoRA named in the request, loaded once and
  kept; fast previews; the PNG saved) against the diffusers pipeline with the same file loaded by
  ``load_lora_weights`` + ``set_adapters``; studio/raw, target ≤ 1.03;
- loading it: Studio's ``apply_loras`` (plan, header read, load, weights) against diffusers'
  ``load_lora_weights`` + ``set_adapters``, each followed by unloading — the kohya file on both
  sides, then the BFL file on Studio's side against the kohya file on diffusers' (what a user of
  plain diffusers would have to convert by hand). Medians of alternating rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.family_builders import build_random_flux  # noqa: E402
from bench.txt2img import (  # noqa: E402
    CPU_CASE,
    CUDA_CASE,
    BenchSetup,
    _alternate,
    _sync,
    print_ratio,
    time_raw,
    time_studio,
)


def write_loras(transformer, folder: Path, rank: int = 16) -> tuple[Path, Path]:
    """A random LoRA on the double blocks' attention and the single blocks' output, as kohya and
    as BFL write it."""
    import torch
    from safetensors.torch import save_file

    config = transformer.config
    width = config.num_attention_heads * config.attention_head_dim
    modules = {}
    for i in range(config.num_layers):
        modules[f"double_blocks.{i}.img_attn.qkv"] = (3 * width, width)
        modules[f"double_blocks.{i}.img_attn.proj"] = (width, width)
        modules[f"double_blocks.{i}.txt_attn.qkv"] = (3 * width, width)
    for i in range(config.num_single_layers):
        modules[f"single_blocks.{i}.linear2"] = (width, 5 * width)
    gen = torch.Generator().manual_seed(0)
    kohya, bfl = {}, {}
    for name, (out, inp) in modules.items():
        down = torch.randn(rank, inp, generator=gen) * 0.02
        up = torch.randn(out, rank, generator=gen) * 0.02
        flat = "lora_unet_" + name.replace(".", "_")
        kohya[f"{flat}.lora_down.weight"], kohya[f"{flat}.lora_up.weight"] = down, up
        kohya[f"{flat}.alpha"] = torch.tensor(float(rank))
        bfl[f"diffusion_model.{name}.lora_A.weight"] = down.clone()
        bfl[f"diffusion_model.{name}.lora_B.weight"] = up.clone()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(kohya, str(folder / "ink-kohya.safetensors"))
    save_file(bfl, str(folder / "ink-bfl.safetensors"))
    return folder / "ink-kohya.safetensors", folder / "ink-bfl.safetensors"


def run(case: BenchSetup, rounds: int, workdir: Path) -> None:
    import torch
    from diffusers import FluxPipeline

    from studio.core.config import Settings, default_paths
    from studio.core.requests import Txt2ImgRequest
    from studio.pipelines.diffusion.loras import apply_loras, plan_loras, unload_loras
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    os.environ["STUDIO_HOME"] = str(workdir / "studio-home")
    model = build_random_flux(workdir / "flux", case.full_size)
    dtype = torch.float16 if case.dtype_name == "fp16" else torch.float32
    raw = FluxPipeline.from_pretrained(str(model), dtype=dtype, local_files_only=True)
    raw.set_progress_bar_config(disable=True)
    raw = raw.to(case.device)
    kohya, bfl = write_loras(raw.transformer, workdir / "loras")
    settings = Settings(device=case.device, precision=case.dtype_name, preview_mode="fast")
    service = Txt2ImgService(lambda: settings, default_paths)
    request = Txt2ImgRequest(model=str(model), prompt="a lighthouse on a cliff at dusk, oil paint",
                             steps=case.steps, cfg=3.5, width=case.size, height=case.size,
                             seed=1, loras=[{"name": str(kohya), "weight": 0.8}])
    raw.load_lora_weights(str(kohya.parent), weight_name=kohya.name, adapter_name="ink")
    raw.set_adapters(["ink"], [0.8])
    print_ratio(f"FLUX.1 txt2img with a kohya LoRA on {case.device} ({case.size} px, "
                f"{case.steps} steps, fast previews, PNG saved)",
                _alternate(lambda: time_studio(service, request, case.device),
                           lambda: time_raw(raw, request, case.device), rounds))
    raw.unload_lora_weights()

    def studio_load(file: Path):
        def timed() -> float:
            plan = plan_loras("", [{"name": str(file), "weight": 0.8}], settings,
                              default_paths())
            _sync(case.device)
            start = time.perf_counter()
            apply_loras(raw, plan, "flux", "bench")
            _sync(case.device)
            elapsed = time.perf_counter() - start
            unload_loras(raw)
            return elapsed
        return timed

    def raw_load() -> float:
        _sync(case.device)
        start = time.perf_counter()
        raw.load_lora_weights(str(kohya.parent), weight_name=kohya.name, adapter_name="ink")
        raw.set_adapters(["ink"], [0.8])
        _sync(case.device)
        elapsed = time.perf_counter() - start
        raw.unload_lora_weights()
        return elapsed

    print_ratio("loading the kohya LoRA (Studio's apply_loras vs load_lora_weights + "
                "set_adapters)", _alternate(studio_load(kohya), raw_load, rounds))
    print_ratio("loading the BFL LoRA (Studio renames it; diffusers given the kohya file)",
                _alternate(studio_load(bfl), raw_load, rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    case = CUDA_CASE if args.device == "cuda" else CPU_CASE
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        run(case, args.rounds, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
