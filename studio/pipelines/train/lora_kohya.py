"""A trained LoRA in kohya's format (issue #18), so A1111, Forge and ComfyUI load it too:
``lora_unet_…`` keys — SDXL's named after the original UNet's ``input_blocks``/
``middle_block``/``output_blocks`` as kohya's SDXL trainer writes them —, ``lora_te…`` keys for
the text encoders, an ``alpha`` tensor per layer, and the file written whole or not at all with
its ``ss_`` metadata and a ``.preview.png`` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.jobs import UserFacingError

if TYPE_CHECKING:
    from studio.pipelines.train.lora_config import LoraTrainConfig
    from studio.pipelines.train.lora_data import Dataset

#: the pipeline's text encoders and the kohya prefix of each, per family
TEXT_ENCODERS = {"sd1": (("text_encoder", "lora_te_"),),
                 "sdxl": (("text_encoder", "lora_te1_"), ("text_encoder_2", "lora_te2_"))}


_PARTS = ("unet", "transformer", "text_encoder", "text_encoder_2")


def split_parts(peft_sd: dict) -> dict[tuple[str, str], Any]:
    """``{(part, name): tensor}``; a name with no part (a UNet-only state from before text
    encoders could train) is the UNet's."""
    out = {}
    for key, value in peft_sd.items():
        head, _, rest = key.partition(".")
        out[(head, rest) if head in _PARTS and rest else ("unet", key)] = value
    return out


def sgm_unet_module(module: str, layers_per_block: int) -> str:
    """A diffusers UNet attention module's name in the original (SGM) SDXL UNet, as kohya's
    SDXL LoRAs name them: ``down_blocks.1.attentions.0.…`` → ``input_blocks.4.1.…`` (with two
    layers per block), ``mid_block.attentions.0`` → ``middle_block.1``,
    ``up_blocks.i.attentions.j`` → ``output_blocks.{i·(layers+1)+j}.1``."""
    parts = module.split(".")
    per = layers_per_block + 1
    if parts[0] == "down_blocks" and parts[2] == "attentions":
        block = 1 + int(parts[1]) * per + int(parts[3])
        return ".".join(["input_blocks", str(block), "1", *parts[4:]])
    if parts[0] == "mid_block" and parts[1] == "attentions":
        return ".".join(["middle_block", "1", *parts[3:]])
    if parts[0] == "up_blocks" and parts[2] == "attentions":
        block = int(parts[1]) * per + int(parts[3])
        return ".".join(["output_blocks", str(block), "1", *parts[4:]])
    raise ValueError(f"{module} is not a UNet attention layer")


def kohya_from_peft(peft_sd: dict, alpha: float, family: str = "sd1",
                    layers_per_block: int | None = None) -> dict:
    """Adapters' PEFT state dict (:meth:`LoraTrainer.peft_state`) in kohya's layout: UNet
    layers ``lora_unet_…`` (SDXL's under the original UNet's names), text encoders ``lora_te_…``
    (SD 1.x) or ``lora_te1_…``/``lora_te2_…`` (SDXL); ``lora_down``/``lora_up`` and an
    ``alpha`` per layer."""
    import torch

    prefixes = dict(TEXT_ENCODERS[family])
    out = {}
    for (part, key), value in split_parts(peft_sd).items():
        module, kind = key.rsplit(".lora_", 1)  # "…to_q", "A.weight"
        if part == "unet":
            if family == "sdxl":
                module = sgm_unet_module(module, layers_per_block or 2)
            name = "lora_unet_" + module.replace(".", "_")
        else:  # transformers 5's CLIP has no text_model level; kohya's files do
            module = module if module.startswith("text_model.") else f"text_model.{module}"
            name = prefixes[part] + module.replace(".", "_")
        out[f"{name}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = (
            value.detach().cpu().float().contiguous())
        out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out


def write_lora_file(target: Path, kohya: dict, metadata: dict[str, str],
                    preview: Path | None = None) -> Path:
    """``target`` (``<name>.safetensors``) written whole or not at all, with the image
    ``preview`` beside it as ``<name>.preview.png`` (where A1111 and Forge look for one)."""
    from safetensors.torch import save_file

    from studio.core.wording import write_failure

    target = Path(target)
    partial = target.with_suffix(".safetensors.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(kohya, str(partial), metadata=metadata)
        partial.replace(target)
        if preview is not None and Path(preview).is_file():
            from PIL import Image

            with Image.open(preview) as img:
                img.save(target.with_suffix(".preview.png"))
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserFacingError(write_failure(exc, f"the LoRA {target.name}", target.parent)) from exc
    return target


#: families whose LoRA file is diffusers' PEFT layout (``transformer.<module>.lora_A.weight``):
#: what FluxPipeline / StableDiffusion3Pipeline ``load_lora_weights``, ComfyUI and Forge read
DIFFUSERS_LAYOUT = ("flux", "sd3", "qwen-image")


def diffusers_from_peft(peft_sd: dict, alpha: float, rank: int) -> dict:
    """The transformer's PEFT state (:meth:`LoraTrainer.peft_state`) in diffusers' layout,
    ``transformer.<module>.lora_A.weight`` / ``lora_B``, as ``FluxPipeline.save_lora_weights``
    and ai-toolkit write it. That layout has no alpha (loaders take alpha = rank), so the
    scale alpha / rank is multiplied into ``lora_B``: every loader applies what was trained."""
    scale = float(alpha) / float(rank)
    out = {}
    for (part, key), value in split_parts(peft_sd).items():
        tensor = value.detach().cpu().float()
        if ".lora_B." in key:
            tensor = tensor * scale
        out[f"{'transformer' if part in ('unet', 'transformer') else part}.{key}"] = (
            tensor.contiguous())
    return out


def lora_file_state(peft_sd: dict, alpha: float, family: str, rank: int,
                    layers_per_block: int | None = None) -> dict:
    """The LoRA file's tensors for ``family``: kohya's layout for SD 1.x and SDXL, diffusers'
    for FLUX.1 and SD 3.5 (:data:`DIFFUSERS_LAYOUT`)."""
    if family in DIFFUSERS_LAYOUT:
        return diffusers_from_peft(peft_sd, alpha, rank)
    return kohya_from_peft(peft_sd, alpha, family, layers_per_block)


def ss_metadata(cfg: LoraTrainConfig, dataset: Dataset, *, version: str, base_name: str, step: int,
                te_lr: float, architecture: str) -> dict[str, str]:
    """The ``ss_`` keys kohya's trainer writes (base model, rank, alpha, steps, resolution,
    tags…) and the modelspec ones, for a run of ``cfg`` (a LoraTrainConfig) on ``dataset``."""
    folder = Path(cfg.data_dir).name
    return {
        "ss_base_model_version": version,
        "ss_sd_model_name": base_name,
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(cfg.rank),
        "ss_network_alpha": str(cfg.alpha),
        "ss_learning_rate": str(cfg.lr),
        "ss_unet_lr": str(cfg.lr),
        "ss_text_encoder_lr": str(te_lr) if cfg.train_text_encoder else "0",
        "ss_network_train_unet_only": str(not cfg.train_text_encoder),
        "ss_max_train_steps": str(cfg.steps),
        "ss_steps": str(step),
        "ss_seed": str(cfg.seed),
        "ss_resolution": f"({cfg.resolution}, {cfg.resolution})",
        "ss_enable_bucket": "True",
        "ss_num_train_images": str(len(dataset.examples) * cfg.repeats),
        "ss_mixed_precision": cfg.mixed_precision,
        "ss_gradient_checkpointing": str(cfg.gradient_checkpointing),
        "ss_output_name": cfg.name,
        "ss_training_comment": f"trigger: {cfg.trigger}" if cfg.trigger else "",
        "ss_tag_frequency": json.dumps({folder: dataset.tag_frequency()}),
        "ss_dataset_dirs": json.dumps({folder: {"n_repeats": cfg.repeats,
                                                "img_count": len(dataset.examples)}}),
        "modelspec.architecture": architecture,
        "modelspec.title": cfg.name,
    }
