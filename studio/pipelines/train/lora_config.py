"""What a LoRA training run is set to (:class:`LoraTrainConfig`, checked with a sentence for
each mistake) and which of its options this device can use (issue #18): fp16 needs a CUDA GPU,
bf16 on a CPU only where PyTorch's CPU autocast runs it, 8-bit AdamW needs bitsandbytes — on a
CPU its CPU backend, which has the 8-bit optimizers from 0.50 on (checked: bitsandbytes 0.50.2's
``AdamW8bit`` keeps uint8 moments on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from studio.core.jobs import UserFacingError


@dataclass
class LoraTrainConfig:
    data_dir: Path
    base: str
    name: str
    trigger: str = ""
    rank: int = 8
    alpha: float = 8.0
    lr: float = 1e-4
    steps: int = 500
    resolution: int = 512
    repeats: int = 1
    batch_size: int = 1
    seed: int = 0
    save_every: int = 0
    sample_every: int = 0
    sample_prompts: list[str] = field(default_factory=list)
    sample_steps: int = 20
    sample_seed: int | None = None  # the samples' fixed seed (None: ``seed``)
    mixed_precision: str = "no"  # "no", "fp16", "bf16"
    gradient_checkpointing: bool = False
    train_text_encoder: bool = False
    text_encoder_lr: float | None = None  # None: ``lr``
    cache_latents: bool = True  # VAE latents made once (the VAE leaves the GPU), else each step
    cache_text: bool = True  # prompt embeddings made once, unless the text encoder trains
    optimizer: str = "adamw"  # "adamw", "adamw8bit" (bitsandbytes; on a CPU 0.50 or newer)
    sdpa: bool = True  # PyTorch's scaled-dot-product attention in the UNet, else the plain one
    out_dir: Path | None = None  # default: the library's models/loras

    def validate(self) -> None:
        if not self.name.strip() or any(c in self.name for c in '/\\:*?"<>|'):
            raise UserFacingError(f"'{self.name}' cannot be a LoRA file name; use letters, "
                                  "digits, '-' or '_'.")
        for label, value in (("rank", self.rank), ("steps", self.steps),
                             ("repeats", self.repeats), ("batch size", self.batch_size)):
            if value < 1:
                raise UserFacingError(f"The {label} must be at least 1 (it is {value}).")
        if self.resolution < 64 or self.resolution % 64:
            raise UserFacingError(f"The resolution must be a multiple of 64 of at least 64 "
                                  f"(it is {self.resolution}).")
        if self.lr <= 0 or self.alpha <= 0 or (self.text_encoder_lr is not None
                                               and self.text_encoder_lr <= 0):
            raise UserFacingError("The learning rates and alpha must be above 0.")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UserFacingError(f"Mixed precision is 'no', 'fp16' or 'bf16', not "
                                  f"'{self.mixed_precision}'.")
        if self.optimizer not in OPTIMIZERS:
            raise UserFacingError(f"The optimizer is one of {', '.join(OPTIMIZERS)}, not "
                                  f"'{self.optimizer}'.")

    @property
    def text_cached(self) -> bool:
        return self.cache_text and not self.train_text_encoder


OPTIMIZERS = ("adamw", "adamw8bit")


def device_memory(device: str) -> int | None:
    """The GPU's memory in bytes (None on a CPU), for the estimate's "fits" or "does not"."""
    import torch

    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)


#: the first bitsandbytes whose CPU backend runs the 8-bit optimizers (0.50.2 checked)
BNB_CPU_OPTIMIZERS = (0, 50)


def _bnb_version() -> tuple[int, ...] | None:
    """bitsandbytes' version as numbers (None when it is not installed); read from its metadata,
    not by importing it (an import takes seconds, and this runs when the page opens)."""
    import re
    from importlib import metadata

    try:
        text = metadata.version("bitsandbytes")
    except metadata.PackageNotFoundError:
        return None
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def device_problems(device: str) -> dict[str, dict[str, str]]:
    """Per option, the choices this device cannot use and why: fp16 needs a CUDA GPU, bf16 on
    a CPU only where PyTorch's CPU autocast runs it, 8-bit AdamW needs bitsandbytes (on a CPU,
    one with the CPU backend's 8-bit optimizers)."""
    import torch

    out: dict[str, dict[str, str]] = {"mixed_precision": {}, "optimizer": {}}
    cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    bnb = _bnb_version()
    if not cuda:
        out["mixed_precision"]["fp16"] = ("fp16 needs a CUDA GPU; on the CPU choose bf16 (works "
                                          "where the CPU supports it, often slower) or no.")
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                torch.nn.functional.linear(torch.ones(2, 2), torch.ones(2, 2))
        except (RuntimeError, TypeError) as exc:
            out["mixed_precision"]["bf16"] = f"bf16 does not run on this CPU ({exc})."
    if bnb is None:
        out["optimizer"]["adamw8bit"] = ("8-bit AdamW needs the bitsandbytes package: "
                                         "pip install bitsandbytes")
    elif not cuda and bnb < BNB_CPU_OPTIMIZERS:
        have = ".".join(str(n) for n in bnb)
        out["optimizer"]["adamw8bit"] = (
            f"8-bit AdamW on the CPU needs bitsandbytes 0.50 or newer (this is {have}): "
            "pip install -U bitsandbytes — or use AdamW.")
    return {k: v for k, v in out.items() if v}
