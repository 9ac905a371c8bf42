"""The GPU check (issues #15 and #18): every image family at its real size, Studio against plain
diffusers, peak VRAM per memory setting next to the memory planner's estimate, and the LoRA
trainer against a bare diffusers + peft loop.

    python bench/gpu.py --out gpu.json            # on a CUDA machine (about 8 minutes, 80 GB)
    python bench/gpu.py --dry-run --out dry.json  # the same code on the CPU, tiny models, seconds
    python bench/gpu.py --only flux,sdxl --skip-train

Per family (bench/gpu_families.py: every text-to-image family of studio.library.families,
built at its real architecture size with random weights in bf16, nothing downloaded), one at a
time, memory freed between:

- for each memory setting — ``full``, ``text encoder on CPU`` (the planner's own choice when the
  GPU is said to hold less than the whole model), ``model`` and ``sequential`` offload, ``nf4``
  (the denoiser's linear layers in bitsandbytes NF4, when bitsandbytes is installed) —
  Studio's txt2img path (``Txt2ImgService.run``: planner, memory options, previews, PNG) and the
  plain diffusers call on the same modules, each timed after a warm-up: it/s of each and the
  ratio studio/raw of the times (target ≤ 1.03), and the peak VRAM
  (``torch.cuda.max_memory_allocated``) of Studio's run next to the planner's estimate of what
  that setting holds on the GPU (``planner.gpu_need``);
- a family or setting that would not fit, or that the time budget (``--budget``) no longer
  allows, is skipped with the reason printed.

The LoRA part iterates the trainer's registry (``lora_sd.SUPPORTED_FAMILIES``): for the UNet
families (a family added there is benchmarked here once bench/gpu_families.py has its spec; the
flow-matching ones, FLUX.1 / SD 3.5 / Qwen-Image, are timed against their bare loop by
``bench/lora_train.py --family NAME`` and listed here with that reason) ``LoraTrainer.train_step``
against the bare loop of diffusers' ``train_text_to_image_lora`` examples on the same cached
tensors (bf16 mixed precision, gradient checkpointing, rank 16, 512 px SD 1.5 / 1024 px SDXL),
steps/s and the ratio, and the peak VRAM next to ``lora_estimate``'s figure.

Output: a table on stdout and, with ``--out``, the same rows as JSON. Studio's models never
touch the disk: the pipeline is handed to Studio's model cache, and the folder it resolves
holds the configs only. ``--dry-run`` runs everything on the CPU with the tiny fixtures (VRAM
columns empty; offload settings, which need CUDA, are skipped with that reason) — the test
suite runs it (tests/test_bench_gpu.py) so the script keeps working until a GPU runs it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_families import (  # noqa: E402
    SPECS,
    FamilySpec,
    build_pipeline,
    quantize_nf4,
    real_parameter_counts,
    spec_for,
    write_config_folder,
)

SETTINGS = ("full", "text_encoder_cpu", "model", "sequential", "nf4")
LORA_RESERVE_S = 60.0  # of --budget, kept for each LoRA training family
GB = 1024**3
PROMPT = "a lighthouse on a cliff at dusk, oil paint"


class Quiet:
    """A progress sink that keeps the previews computed and the status messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, step: int, total: int, preview: object = None) -> None:
        pass

    def partial(self, result: object) -> None:
        pass

    def message(self, text: str) -> None:
        self.messages.append(text)


class Budget:
    """The run's time limit, shared out: each family gets an equal part of what is left when
    it starts (a family that finishes early leaves its time to the next ones)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.share_end = self.end

    def left(self) -> float:
        return self.end - time.monotonic()

    def start_share(self, parts_left: int, reserve: float = 0.0) -> None:
        self.share_end = time.monotonic() + max(0.0, self.left() - reserve) / max(1, parts_left)

    def share_left(self) -> float:
        return self.share_end - time.monotonic()


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _timed(call: Any, device: str) -> tuple[float, int | None]:
    """(seconds, peak bytes allocated on the GPU or None) of ``call()``."""
    import torch

    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    call()
    _sync(device)
    elapsed = time.perf_counter() - start
    return elapsed, int(torch.cuda.max_memory_allocated()) if device == "cuda" else None


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def components_in_memory(pipe: Any, run_bytes: int) -> list[Any]:
    """The planner's components of ``pipe`` from its modules: what ``planner.components_of``
    reads from the safetensors headers of a saved folder (floating tensors in the run dtype,
    quantized ones as stored) — the folder here has no weights to read."""
    import torch

    from studio.pipelines.diffusion.planner import Component, _label

    found = []
    for name, module in pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        size = sum(t.numel() * run_bytes if t.is_floating_point() else t.numel() * t.element_size()
                   for t in list(module.parameters()) + list(module.buffers()))
        found.append(Component(name, _label(name, {}), size))
    return found


def _reset(pipe: Any, device: str) -> None:
    """Take Studio's and accelerate's state off ``pipe``'s modules: hooks, cancel watches,
    remembered options; the modules back on ``device``."""
    import torch
    from accelerate.hooks import remove_hook_from_module

    pipe.remove_all_hooks()  # sequential offload's weights come back from the hooks' copies
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            remove_hook_from_module(module, recurse=True)
            for sub in module.modules():
                if getattr(sub, "_studio_watches_cancel", False):
                    sub._forward_pre_hooks.clear()
                    sub._studio_watches_cancel = False
    for name in [n for n in vars(pipe) if n.startswith("_studio_")]:
        delattr(pipe, name)
    for name in ("_all_hooks", "_offload_device", "_offload_gpu_id"):
        vars(pipe).pop(name, None)
    pipe.to(device)


@contextmanager
def _planner_sees(components: list[Any], free_gpu: int | None):
    """Studio's planner reads ``components`` (instead of the weightless folder's headers) and,
    when ``free_gpu`` is given, that much free GPU memory."""
    from studio.pipelines.diffusion import planner

    real_components, real_free = planner.components_of, planner.free_memory
    planner.components_of = lambda entry, run_bytes: components  # type: ignore[assignment]
    if free_gpu is not None:
        planner.free_memory = lambda device: (free_gpu, real_free(device)[1])  # type: ignore
    try:
        yield
    finally:
        planner.components_of, planner.free_memory = real_components, real_free


def run_setting(spec: FamilySpec, pipe: Any, folder: Path, setting: str, device: str,
                dtype: Any, size: int, steps: int) -> dict[str, Any]:
    """One memory setting of one family: Studio's txt2img path, then plain diffusers."""
    import torch

    from studio.core.config import MemoryOptions, Settings, default_paths
    from studio.core.jobs import CancelToken
    from studio.core.requests import Txt2ImgRequest
    from studio.library.families import FAMILIES
    from studio.pipelines.diffusion import planner
    from studio.pipelines.diffusion.batch import cfg_kwargs
    from studio.pipelines.diffusion.txt2img import Txt2ImgService
    from studio.pipelines.model_cache import ModelCache

    family = FAMILIES[spec.key]
    components = components_in_memory(pipe, planner.dtype_bytes(dtype))
    mode = {"nf4": "full"}.get(setting, setting)
    # what is free with this model's weights not counted (they are on the GPU already)
    free_gpu = None if device != "cuda" else int(torch.cuda.mem_get_info()[0]
                                                 + torch.cuda.memory_allocated())
    if setting == "text_encoder_cpu":  # a GPU said to hold a little less than the whole model
        free_gpu = planner.gpu_need(components, "full") - 1
    offload = setting if setting in ("model", "sequential") else "none"
    settings = Settings(device=device, precision="bf16" if device == "cuda" else "fp32",
                        preview_mode="fast").with_memory_options(
                            folder, MemoryOptions(offload=offload))
    cache = ModelCache(loader=lambda entry, load_device, dt, **kw: pipe.to(load_device))
    service = Txt2ImgService(lambda: settings, default_paths, cache=cache)
    request = Txt2ImgRequest(model=str(folder), prompt=PROMPT,
                             negative_prompt="blurry" if family.negative_prompt else "",
                             steps=steps, cfg=spec.cfg, width=size, height=size, seed=1)
    sink = Quiet()
    with _planner_sees(components, free_gpu):
        service.run(request, sink, CancelToken())  # warm-up: placement, first-call costs
        studio_s, peak = _timed(lambda: service.run(request, Quiet(), CancelToken()), device)
    chosen = getattr(pipe, "_studio_cpu_component", "")
    said = next((m for m in sink.messages if " needs ~" in m), "")
    if setting == "text_encoder_cpu" and not chosen:
        mode = "model" if "model offload" in said else mode
    if getattr(pipe, "_studio_planned_offload", "none") != "none":  # the planner offloaded
        mode = pipe._studio_planned_offload
    fell_back = bool(getattr(pipe, "_studio_offload_after_oom", False))
    row: dict[str, Any] = {
        "family": spec.key, "model": spec.label, "setting": setting, "size": size,
        "steps": steps, "studio_s": studio_s, "studio_it_s": steps / studio_s,
        "peak_gb": None if peak is None else peak / GB,
        "estimate_gb": planner.gpu_need(components, mode) / GB, "planner_said": said,
        "ran_as": "model offload after running out of memory" if fell_back else mode,
        "weights_gb": sum(c.bytes for c in components) / GB}
    cache.unload_all()
    _reset(pipe, "cpu" if offload != "none" or setting == "text_encoder_cpu" else device)
    if setting == "text_encoder_cpu":  # plain diffusers has no such setting: Studio's only
        pipe.to(device)
        return row
    if offload == "model":
        pipe.enable_model_cpu_offload()
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload()

    def raw() -> None:
        kwargs = cfg_kwargs(spec.key, spec.cfg)
        if family.negative_prompt:
            kwargs["negative_prompt"] = "blurry"
        pipe(prompt=PROMPT, num_inference_steps=steps, width=size, height=size,
             generator=torch.Generator("cpu").manual_seed(1), **kwargs)

    raw()
    raw_s, raw_peak = _timed(raw, device)
    _reset(pipe, device)
    row.update(raw_s=raw_s, raw_it_s=steps / raw_s, ratio=studio_s / raw_s,
               raw_peak_gb=None if raw_peak is None else raw_peak / GB)
    return row


def run_family(spec: FamilySpec, workdir: Path, dry: bool, budget: Budget,
               settings: tuple[str, ...]) -> list[dict[str, Any]]:
    import torch

    from studio.core.jobs import UserFacingError

    device = "cpu" if dry else "cuda"
    dtype = torch.float32 if dry else torch.bfloat16
    size, steps = (64, 2) if dry else (spec.size, spec.steps)
    rows: list[dict[str, Any]] = []
    if not dry:  # the weights alone must fit, whatever the setting (offload builds on the GPU)
        weights = sum(real_parameter_counts(spec, workdir).values()) * 2
        total = torch.cuda.get_device_properties(0).total_memory
        if weights > 0.9 * total:
            return [{"family": spec.key, "model": spec.label, "setting": "-",
                     "skipped": f"its weights need {weights / GB:.0f} GB in bf16; this GPU has "
                                f"{total / GB:.0f} GB"}]
    start = time.monotonic()
    pipe = build_pipeline(spec, workdir, real=not dry, device=device, dtype=dtype)
    folder = write_config_folder(pipe, workdir / f"{spec.key}-configs")
    built_s = time.monotonic() - start
    for setting in settings:
        reason = _skip_reason(spec, setting, dry, budget)
        if reason:
            rows.append({"family": spec.key, "model": spec.label, "setting": setting,
                         "skipped": reason})
            continue
        if setting == "nf4":
            denoiser = getattr(pipe, "transformer", None) or pipe.unet
            quantize_nf4(denoiser, dtype)
        # offload moves the weights every step: fewer steps, the same on both sides
        n = min(steps, 2) if setting in ("model", "sequential") else steps
        try:
            rows.append(run_setting(spec, pipe, folder, setting, device, dtype, size, n))
        except (torch.OutOfMemoryError, UserFacingError) as exc:
            rows.append({"family": spec.key, "model": spec.label, "setting": setting,
                         "skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"})
            _reset(pipe, "cpu")
        _free(device)
    for row in rows:
        row.setdefault("build_s", built_s)
    del pipe
    _free(device)
    return rows


def _skip_reason(spec: FamilySpec, setting: str, dry: bool, budget: Budget) -> str:
    import importlib.util

    if setting in ("model", "sequential") and dry:
        return "offload needs CUDA (the dry run is on the CPU)"
    if setting == "text_encoder_cpu" and (dry or not spec.big_text_encoder):
        return ("the planner places a text encoder on the CPU only for a CUDA GPU" if dry
                else "no large text encoder")
    if setting == "nf4" and importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed"
    if budget.left() < 20:
        return "the time budget is spent (--budget)"
    if budget.share_left() <= 0:
        return "this family's share of the time budget (--budget) is spent"
    return ""


# -- LoRA training ---------------------------------------------------------------------------
def _bare_step(unet: Any, scheduler: Any, latents: list, texts: list, time_ids: list,
               optimizer: Any, autocast: Any, sdxl: bool, device: str) -> None:
    """One step of diffusers' ``train_text_to_image_lora(_sdxl)`` loop on cached tensors."""
    import torch
    import torch.nn.functional as F

    i = int(torch.randint(len(latents), (1,)))
    lat = latents[i][None].to(device)
    noise = torch.randn_like(lat)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (1,), device=device)
    noisy = scheduler.add_noise(lat, noise, t)
    extra = {}
    if sdxl:
        extra["added_cond_kwargs"] = {"text_embeds": texts[i][1][None].to(device),
                                      "time_ids": time_ids[i][None].to(device)}
    with autocast:
        pred = unet(noisy, t, texts[i][0][None].to(device), return_dict=False, **extra)[0]
    loss = F.mse_loss(pred.float(), noise.float())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def run_lora(family: str, workdir: Path, dry: bool, budget: Budget) -> dict[str, Any]:
    import contextlib
    import copy

    import torch
    from diffusers import DDPMScheduler
    from peft import LoraConfig

    from studio.core.config import Settings, default_paths
    from studio.pipelines.train.lora_config import LoraTrainConfig
    from studio.pipelines.train.lora_data import scan_folder
    from studio.pipelines.train.lora_sd import SD_FAMILIES, UNET_TARGETS, LoraTrainer

    if family not in SD_FAMILIES:  # FLUX.1 / SD 3.5 / Qwen-Image: FlowLoraTrainer
        return {"family": family, "skipped": "flow-matching LoRA training is compared with its "
                "bare loop by bench/lora_train.py --family " + family + " (tiny models); at "
                "real size only its estimate is known"}
    spec = spec_for(family)
    if spec is None:
        return {"family": family, "skipped": "bench/gpu_families.py has no spec for it yet"}
    if budget.left() < 30:
        return {"family": family, "skipped": "the time budget is spent (--budget)"}
    device = "cpu" if dry else "cuda"
    resolution, rank, steps = (64, 4, 3) if dry else (spec.size, 16, 20)
    half = "no" if dry else "bf16"
    pipe = build_pipeline(spec, workdir, real=not dry, device=device,
                          dtype=torch.float32)  # the trainer casts as its settings say
    from bench.lora_train import training_images

    data = training_images(workdir / "lora-data", resolution)
    config = LoraTrainConfig(data_dir=data, base=spec.label, name=f"gpu-{family}", rank=rank,
                             alpha=float(rank), lr=1e-4, steps=10**6, resolution=resolution,
                             mixed_precision=half, gradient_checkpointing=not dry)
    bare_unet = copy.deepcopy(pipe.unet)
    trainer = LoraTrainer(config, Settings(device=device), default_paths(), device)
    trainer.attach(pipe, spec.label, family, scan_folder(data, "", resolution))
    if device == "cuda":
        bare_unet.to("cpu")
        torch.cuda.empty_cache()
    trainer.train_step()  # warm-up
    studio_s, peak = _timed(lambda: [trainer.train_step() for _ in range(steps)], device)
    estimate = trainer.estimate().total
    trainer.models.clear()
    trainer.unet = trainer.optimizer = trainer.pipe = None
    del pipe, trainer.accelerator
    _free(device)
    # the bare loop: the same UNet weights, LoRA, cached tensors and precision
    latents, texts, time_ids = trainer.latents, trainer.texts, trainer.time_ids
    unet = bare_unet.to(device, dtype=torch.bfloat16 if half == "bf16" else torch.float32)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=UNET_TARGETS))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    if not dry:
        unet.enable_gradient_checkpointing()
    unet.train()
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if half == "bf16"
                else contextlib.nullcontext())

    def bare() -> None:
        _bare_step(unet, scheduler, latents, texts, time_ids, optimizer, autocast,
                   family == "sdxl", device)

    bare()
    bare_s, bare_peak = _timed(lambda: [bare() for _ in range(steps)], device)
    return {"family": family, "model": spec.label, "resolution": resolution, "rank": rank,
            "steps": steps, "studio_steps_s": steps / studio_s, "bare_steps_s": steps / bare_s,
            "ratio": bare_s / studio_s, "peak_gb": None if peak is None else peak / GB,
            "bare_peak_gb": None if bare_peak is None else bare_peak / GB,
            "estimate_gb": estimate / GB}


# -- output ------------------------------------------------------------------------------------
def _num(value: Any, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def print_tables(rows: list[dict], lora: list[dict], device: str) -> None:
    print(f"\nimage families on {device}: Studio's txt2img vs plain diffusers (times are whole "
          "calls: prompt, steps, decode; Studio's also previews and the PNG)")
    print(f"{'family':<14}{'setting':<17}{'px':>5}{'steps':>6}{'studio it/s':>12}"
          f"{'raw it/s':>10}{'ratio':>7}{'peak GB':>9}{'plan GB':>9}{'weights GB':>11}"
          "  ran as (when not the setting)")
    for r in rows:
        if "skipped" in r:
            print(f"{r['family']:<14}{r['setting']:<17}skipped: {r['skipped']}")
            continue
        print(f"{r['family']:<14}{r['setting']:<17}{r['size']:>5}{r['steps']:>6}"
              f"{r['studio_it_s']:>12.2f}{_num(r.get('raw_it_s'), '.2f'):>10}"
              f"{_num(r.get('ratio'), '.3f'):>7}{_num(r['peak_gb'], '.1f'):>9}"
              f"{r['estimate_gb']:>9.1f}{r['weights_gb']:>11.1f}"
              f"  {'' if r['ran_as'] in (r['setting'], 'full') else r['ran_as']}")
    print(f"\nLoRA training on {device}: LoraTrainer.train_step vs the bare diffusers + peft loop")
    print(f"{'family':<8}{'px':>6}{'rank':>6}{'studio steps/s':>16}{'bare steps/s':>14}"
          f"{'ratio':>7}{'peak GB':>9}{'estimate GB':>13}")
    for r in lora:
        if "skipped" in r:
            print(f"{r['family']:<8}skipped: {r['skipped']}")
            continue
        print(f"{r['family']:<8}{r['resolution']:>6}{r['rank']:>6}{r['studio_steps_s']:>16.2f}"
              f"{r['bare_steps_s']:>14.2f}{r['ratio']:>7.3f}{_num(r['peak_gb'], '.1f'):>9}"
              f"{r['estimate_gb']:>13.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny models on the CPU: checks the script, measures nothing real")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--only", default="", help="families, comma-separated (default: all)")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"memory settings (default: {','.join(SETTINGS)})")
    parser.add_argument("--skip-train", action="store_true", help="no LoRA training part")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds; what is left when it is spent is skipped with the reason")
    args = parser.parse_args(argv)

    import torch

    from studio.library.families import FAMILIES
    from studio.pipelines.train.lora_sd import SD_FAMILIES, SUPPORTED_FAMILIES

    if not args.dry_run and not torch.cuda.is_available():
        print("No CUDA GPU here: run with --dry-run to check the script on the CPU.")
        return 2
    wanted = [k for k in args.only.split(",") if k] or [s.key for s in SPECS]
    settings = tuple(s for s in args.settings.split(",") if s in SETTINGS)
    budget = Budget(args.budget)
    device = "cpu" if args.dry_run else torch.cuda.get_device_name()
    rows: list[dict[str, Any]] = []
    lora: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="studio-gpu-") as tmp:
        os.environ.setdefault("STUDIO_HOME", str(Path(tmp) / "home"))
        keys = [k for k in FAMILIES if k in wanted]
        reserve = 0.0 if args.skip_train else LORA_RESERVE_S * len(SD_FAMILIES)
        for index, key in enumerate(keys):
            spec = spec_for(key)
            budget.start_share(sum(1 for k in keys[index:] if spec_for(k) is not None), reserve)
            if spec is None:
                why = ("an instruction-editing family: Transform's path, not txt2img"
                       if FAMILIES[key].edit else "no real-size spec in bench/gpu_families.py")
                rows.append({"family": key, "model": FAMILIES[key].label, "setting": "-",
                             "skipped": why})
                continue
            print(f"… {spec.label}", flush=True)
            rows += run_family(spec, Path(tmp), args.dry_run, budget, settings)
        if not args.skip_train:
            for family in SUPPORTED_FAMILIES:
                if family in wanted or not args.only:
                    print(f"… LoRA training, {family}", flush=True)
                    lora.append(run_lora(family, Path(tmp), args.dry_run, budget))
                    _free("cpu" if args.dry_run else "cuda")
    print_tables(rows, lora, device)
    if args.out:
        args.out.write_text(json.dumps({"device": device, "dry_run": args.dry_run,
                                        "families": rows, "lora": lora}, indent=1),
                            encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
