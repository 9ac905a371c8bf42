"""How much memory a LoRA training run needs, said before it starts (issue #18).

A small model of the peak: the frozen weights (half precision with mixed precision; the VAE in
fp32, and not at all on the GPU when latents are cached, nor the text encoders when their outputs
are), the LoRA weights with their gradients and AdamW's two moments (8-bit AdamW: a quarter of
that), the UNet's activations — proportional to the latent pixels and the batch, growing with
the square root of the UNet's size, a fifth of that with gradient checkpointing — and the VAE's
encoder when latents are made at every step. The sizes follow the model the image planner uses
(:mod:`studio.pipelines.component_sizes`: weights as element counts × the bytes of the dtype they
run in, the counts read from the base model's safetensors headers; the training activations
fitted to the usual numbers — SDXL at 1024 px, rank 16, bf16 with checkpointing: about 11 GB;
SD 1.5 at 512 px in fp32: about 9 GB); it is an estimate, rounded, and says so. FLUX.1 and SD 3.5
(:mod:`.lora_flow`) use the same model (Qwen-Image too) with their transformer in the UNet's
place (its parameters, the LoRA on its attention and FLUX's single-block MLPs): FLUX.1-dev at
1024 px, rank 16, bf16 with checkpointing comes to about 33 GB (unquantized FLUX LoRA training is
known to want a 40 GB-class GPU), SD 3.5 Large to about 24 GB. These GPU figures are estimates,
and the sentence says so. No torch here: the counts come from
:func:`studio.pipelines.train.lora_sd.model_counts` (or ``FlowLoraTrainer._model_counts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from studio.pipelines.component_sizes import GB, dtype_bytes, training_activation_bytes

if TYPE_CHECKING:
    from studio.pipelines.train.lora_sd import LoraTrainer

__all__ = ["GB", "MemoryEstimate", "estimate_memory"]
FAMILY_NAMES = {"sd1": "SD 1.x", "sdxl": "SDXL", "flux": "FLUX.1", "sd3": "SD 3.5",
                "qwen-image": "Qwen-Image"}
#: what a CPU run of each family is told
CPU_ADVICE = {"sd1": "SD 1.x at 256–512 px is what a CPU manages",
              "sdxl": "SDXL wants a GPU; on a CPU train SD 1.x at 256–512 px instead",
              "flux": "FLUX.1 wants a GPU with 40 GB or more; on a CPU train SD 1.x at "
                      "256–512 px instead",
              "sd3": "SD 3.5 wants a GPU with 24 GB or more (Medium: less); on a CPU train "
                     "SD 1.x at 256–512 px instead",
              "qwen-image": "Qwen-Image (20 B parameters) wants a GPU with 80 GB; on a CPU "
                            "train SD 1.x at 256–512 px instead"}


@dataclass(frozen=True)
class MemoryEstimate:
    total: int  # bytes at the peak
    parts: dict[str, int]  # what makes it up, in bytes
    sentence: str


def _gb(n: float) -> str:
    value = n / GB
    return f"{value:.0f} GB" if value >= 9.5 else f"{value:.1f} GB" if value >= 0.1 else \
        f"{max(1, round(n / 1024**2))} MB"


def estimate_memory(family: str, counts: dict[str, int], resolution: int, rank: int, *,
                    batch_size: int = 1, mixed_precision: str = "no",
                    gradient_checkpointing: bool = False, cache_latents: bool = True,
                    cache_text: bool = True, train_text_encoder: bool = False,
                    optimizer: str = "adamw", device: str = "cuda",
                    device_memory: int | None = None) -> MemoryEstimate:
    """The peak memory of a run with these settings and a sentence for the page and the CLI.

    ``counts``: parameters of ``unet`` (the denoiser: FLUX.1's and SD 3.5's transformer),
    ``text`` (all text encoders), ``vae``, and the LoRA's parameters per unit of rank in the
    denoiser (``lora_unet``) and the text encoders (``lora_text``). ``device_memory``: the GPU's memory, to say whether it fits."""
    half = mixed_precision in ("fp16", "bf16")
    weight_bytes = dtype_bytes({"fp16": "float16", "bf16": "bfloat16"}.get(mixed_precision,
                                                                           "float32"))
    on_gpu = device != "cpu"
    denoiser = "unet" if family in ("sd1", "sdxl") else "transformer"
    parts: dict[str, int] = {denoiser: counts["unet"] * weight_bytes}
    text_kept = train_text_encoder or not cache_text or not on_gpu
    if text_kept:
        parts["text encoders"] = counts["text"] * weight_bytes
    if not cache_latents or not on_gpu:
        parts["vae"] = counts["vae"] * dtype_bytes("float32")  # the VAE encodes in fp32
    lora = rank * (counts["lora_unet"] + (counts["lora_text"] if train_text_encoder else 0))
    per_param = 4 + 4 + (2 if optimizer == "adamw8bit" else 8)  # weight, gradient, moments
    parts["lora + optimizer"] = lora * per_param
    latent_pixels = (resolution // 8) ** 2 * batch_size
    parts["activations"] = training_activation_bytes(
        counts["unet"], latent_pixels, half=half, checkpointing=gradient_checkpointing,
        text_encoder=train_text_encoder)
    if not cache_latents:  # the VAE's encoder at full resolution, fp32, every step
        parts["vae encode"] = int(4 * 128 * resolution * resolution * 4 * batch_size)
    total = sum(parts.values())
    name = FAMILY_NAMES.get(family, family)
    options = [label for on, label in (
        (gradient_checkpointing, "checkpointing"), (half, mixed_precision),
        (optimizer == "adamw8bit", "8-bit AdamW"), (train_text_encoder, "text encoder")) if on]
    head = (f"{name} LoRA at {resolution} px, rank {rank}: ~{_gb(total)}"
            + (f" with {', '.join(options)}" if options else ""))
    if not on_gpu:
        sensible = CPU_ADVICE.get(family, CPU_ADVICE["sdxl"])
        sentence = (f"{head} of RAM. On the CPU this is slow (seconds to minutes a step); "
                    f"{sensible}.")
    elif device_memory and total > device_memory:
        options_now = dict(batch_size=batch_size, mixed_precision=mixed_precision,
                           gradient_checkpointing=gradient_checkpointing,
                           cache_latents=cache_latents, cache_text=cache_text,
                           train_text_encoder=train_text_encoder, optimizer=optimizer)
        sentence = (f"{head} (an estimate) — more than this GPU's {_gb(device_memory)}. "
                    + _what_fits(family, counts, resolution, rank, options_now, device_memory))
    elif device_memory:
        sentence = f"{head} (an estimate); fits this GPU's {_gb(device_memory)}."
    else:
        sentence = f"{head} (an estimate)."
    return MemoryEstimate(int(total), parts, sentence)


def _what_fits(family: str, counts: dict[str, int], resolution: int, rank: int,
               options: dict[str, object], memory: int) -> str:
    """The first of the usual savings (in kohya's order) that makes the run fit, in words."""
    settings = dict(options)
    steps = [("gradient_checkpointing", True, "turn on gradient checkpointing"),
             ("mixed_precision", "bf16", "train in bf16"),
             ("cache_latents", True, "cache latents"),
             ("train_text_encoder", False, "leave the text encoder frozen"),
             ("optimizer", "adamw8bit", "use 8-bit AdamW"),
             ("batch_size", 1, "train one image a step")]
    said = []
    for key, value, words in steps:
        if settings[key] == value or (key == "mixed_precision" and settings[key] != "no"):
            continue
        settings[key] = value
        said.append(words)
        size = estimate_memory(family, counts, resolution, rank, device="cuda",
                               **settings).total  # type: ignore[arg-type]
        if size <= memory:
            return f"To fit: {', '.join(said)} (~{_gb(size)})."
    for side in (768, 512, 384, 256):
        if side < resolution and estimate_memory(
                family, counts, side, rank, device="cuda",
                **settings).total <= memory:  # type: ignore[arg-type]
            return f"To fit: {', '.join(said + [f'train at {side} px'])}."
    return "It does not fit this GPU even with every saving; use a bigger GPU."


def after_out_of_memory(trainer: LoraTrainer) -> str:
    """What to do after ``trainer`` (a LoraTrainer) ran out of memory mid-run: the usual savings,
    in kohya's order, that bring its estimate down by a fifth at least (the estimate was too low
    if it said the run fits), or the smaller resolution that does."""
    cfg = trainer.config
    estimate = trainer.estimate()
    options = dict(batch_size=cfg.batch_size, mixed_precision=cfg.mixed_precision,
                   gradient_checkpointing=cfg.gradient_checkpointing,
                   cache_latents=cfg.cache_latents, cache_text=cfg.cache_text,
                   train_text_encoder=cfg.train_text_encoder, optimizer=cfg.optimizer)
    return _what_fits(trainer.family, trainer.counts, cfg.resolution, cfg.rank, options,
                      int(estimate.total * 0.8))
