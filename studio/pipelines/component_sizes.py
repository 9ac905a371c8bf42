"""The one component-size model behind both memory estimates: the image planner's
(:mod:`studio.pipelines.diffusion.planner`, what loading a model needs) and LoRA training's
(:mod:`studio.pipelines.train.lora_estimate`, what a run needs at its peak).

- Weights: element counts × the bytes of the dtype they run in (:data:`DTYPE_BYTES`). The counts
  come from the safetensors headers (:func:`element_counts`, no tensor read) — the planner's
  components and the trainer's UNet / text encoders / VAE alike —, integer (quantized) tensors
  count as stored, fp8 stays one byte.
- Activations: inference keeps a working margin over the largest part that runs
  (:func:`working_bytes`: a share of its weights, at least half a GB — latents, attention);
  training keeps every layer's activations for the backward pass (:func:`training_activation_bytes`:
  per latent pixel, growing with the square root of the denoiser's size, about a fifth with
  gradient checkpointing), fitted to the usual figures (SDXL LoRA at 1024 px in bf16 with
  checkpointing: ~11 GB; SD 1.5 at 512 px in fp32: ~9 GB).

No torch here (tensor sizes come from headers or from counts the caller made).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from studio.library.detect import read_safetensors_header

GB = 1024**3
#: bytes per element of the dtypes a model runs in
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
#: inference: the activations' share on top of the weights, and at least this much
WORKING_SHARE = 0.15
WORKING_MIN = GB // 2
#: training: bytes of UNet activations per latent pixel in 16 bits, for an SD 1.5-sized UNet
ACTIVATIONS_PER_PIXEL = 1.0e6
REFERENCE_UNET = 860e6
CHECKPOINTING_SAVES = 5.5  # activations kept with gradient checkpointing: about 1/5.5


def dtype_bytes(dtype: object) -> int:
    """Bytes per element of a torch dtype or its name (4 when unknown)."""
    return DTYPE_BYTES.get(str(dtype).removeprefix("torch."), 4)


#: the weights of an fp8 file that layer-wise casting (split_loading.FP8_SKIP) leaves in the
#: compute precision, by their original names: FLUX's and SD 3.5's modulation and final layer,
#: SD 3.5's patch embedding, norms, T5's ``wo`` and every token / position embedding
_KEPT_IN_COMPUTE = re.compile(r"_mod\.lin\.|modulation\.|final_layer\.linear\.|pos_embed|"
                              r"x_embedder\.|\.ln_|norm|\.wo\.|shared\.|embed_tokens\.|"
                              r"relative_attention_bias\.|embedding")


def tensor_bytes(files: list[Path], run_bytes: int) -> int:
    """The bytes the floating-point tensors of ``files`` take when run with ``run_bytes`` per
    element (integer/quantized tensors keep their own size, fp8 one byte); a GGUF counts as its
    file size. ``run_bytes=1`` gives the element counts (:func:`element_counts`)."""
    total = 0
    for path in files:
        if path.suffix.lower() == ".gguf":
            total += path.stat().st_size
            continue
        total += header_bytes(read_safetensors_header(path), run_bytes)
    return total


def header_bytes(header: dict[str, Any], run_bytes: int) -> int:
    """:func:`tensor_bytes` of the tensors a safetensors header (or a part of one) names: fp8
    weights count one byte (kept fp8, upcast a layer at a time) except those layer-wise casting
    leaves in the compute precision, and all of them in ComfyUI's scaled fp8 (a scale beside
    each weight), which is multiplied out into the run precision when loaded."""
    from studio.pipelines.diffusion.split_families import is_scaled_fp8

    scaled = is_scaled_fp8(header)
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        count = math.prod(info["shape"])
        dtype = str(info["dtype"]).upper()
        if dtype.startswith("F8") and not scaled and not _KEPT_IN_COMPUTE.search(name):
            total += count
        elif dtype.startswith(("F", "BF")):
            total += count * run_bytes
        else:
            start, end = info["data_offsets"]
            total += end - start
    return total


def element_counts(folder: Path, parts: tuple[str, ...]) -> dict[str, int] | None:
    """Elements of each sub-folder ``parts`` of a diffusers folder, from the headers of its
    safetensors (the plain files, not the ``.fp16.`` variants); None when one has none."""
    counts: dict[str, int] = {}
    for part in parts:
        files = sorted((Path(folder) / part).glob("*.safetensors"))
        plain = [f for f in files if ".fp16." not in f.name] or files
        if not plain:
            return None
        counts[part] = tensor_bytes(plain, 1)
    return counts


def working_bytes(largest: int) -> int:
    """Inference: the working margin over the largest part's ``largest`` weight bytes."""
    return max(WORKING_MIN, int(largest * WORKING_SHARE))


def training_activation_bytes(denoiser_elements: int, latent_pixels: int, *, half: bool,
                              checkpointing: bool, text_encoder: bool = False) -> int:
    """Training: the denoiser's activations kept for the backward pass over ``latent_pixels``
    (latent height × width × batch), in 16 bits when ``half`` else 32."""
    scale = (denoiser_elements / REFERENCE_UNET) ** 0.5
    activations = ACTIVATIONS_PER_PIXEL * scale * latent_pixels * (1 if half else 2)
    if checkpointing:
        activations /= CHECKPOINTING_SAVES
    if text_encoder:
        activations *= 1.1
    return int(activations)
