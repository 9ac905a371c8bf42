"""LyCORIS networks (LoHa, LoKr, LyCORIS "full"/"diff") applied to SD 1.x/2.x and SDXL pipelines.

For SD/SDXL UNets diffusers' ``load_lora_weights`` reads LoRA and LoCon files only (PEFT
``LoraConfig`` adapters; its LoKr support is for transformer families such as Z-Image and FLUX.2,
which keep that path), so these files are applied the way A1111's and ComfyUI's own loaders
apply them: each layer's weight change ΔW is computed from the file's factors and
added to the layer's weight, ``W = W₀ + Σ weightᵢ · ΔWᵢ``. The LyCORIS formulas:

* LoHa (Hadamard product): ``ΔW = (w1_a @ w1_b) ⊙ (w2_a @ w2_b) · alpha / rank`` (rank = rows of
  ``w1_b``); with ``hada_t1``/``hada_t2`` (Tucker, convolutions) each factor is the core ``t``
  contracted with its two matrices.
* LoKr (Kronecker product): ``ΔW = kron(w1, w2) · alpha / rank`` where ``w1 = lokr_w1`` or
  ``lokr_w1_a @ lokr_w1_b`` and ``w2`` likewise (or Tucker with ``lokr_t2``); the scale applies
  only when a factor is decomposed (rank = rows of ``lokr_w2_b``, else of ``lokr_w1_b``).
* full / diff: ``ΔW = diff`` (and ``diff_b`` for the bias).
* a ``lora_up``/``lora_down`` pair inside such a file: ``up @ down · alpha / rank``; with
  ``lora_mid`` (LoCon with a Tucker core, which diffusers does not read) the core contracted
  with both.

The original weight of every layer touched is kept (on the CPU, exact copies) before the first
change, so a new weight only re-adds the changes to the originals, and unloading puts back the
very same bits. The modules of a pipeline are found by the kohya names the files use
(``lora_unet_…``, ``lora_te_…``/``lora_te1_…``, ``lora_te2_…``; the layer path with ``_`` for
``.``), including SDXL's original (SGM) block names (``input_blocks_4_1_…``), which are mapped to
diffusers' blocks. Layers offloaded one by one (accelerate's sequential CPU offload) are patched
in the copy its hook keeps. DoRA files (``dora_scale``) are refused with a sentence. torch is
imported only here, when such a file is applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from studio.core.jobs import UserFacingError

#: what a LyCORIS module's keys end with, by the kind of network they make
_SUFFIXES = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
             "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2",
             "diff", "diff_b", "lora_up.weight", "lora_down.weight", "lora_mid.weight", "alpha",
             "dora_scale")
_PREFIXES = (("lora_unet_", "unet"), ("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2"),
             ("lora_te_", "text_encoder"))
_RESNET = {"in_layers_0": "norm1", "in_layers_2": "conv1", "out_layers_0": "norm2",
           "out_layers_3": "conv2", "emb_layers_1": "time_emb_proj",
           "skip_connection": "conv_shortcut"}
_SGM_TOP = {"time_embed_0": "time_embedding_linear_1", "time_embed_2": "time_embedding_linear_2",
            "label_emb_0_0": "add_embedding_linear_1", "label_emb_0_2": "add_embedding_linear_2",
            "input_blocks_0_0": "conv_in", "out_0": "conv_norm_out", "out_2": "conv_out"}


def group_modules(state: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``({module name: {suffix: tensor}}, keys that belong to no module)`` of a LyCORIS file."""
    modules: dict[str, dict[str, Any]] = {}
    stray: list[str] = []
    for key, value in state.items():
        for suffix in _SUFFIXES:
            if key.endswith("." + suffix):
                modules.setdefault(key[:-len(suffix) - 1], {})[suffix] = value
                break
        else:
            stray.append(key)
    return modules, stray


def _sgm_to_diffusers(name: str, layers_per_block: int) -> str:
    """A UNet layer name in SDXL's original (SGM) layout in diffusers' layout (both with ``_``)."""
    for sgm, ours in _SGM_TOP.items():
        if name == sgm:
            return ours
    span = layers_per_block + 1

    def resnet(rest: str) -> str:
        return _RESNET.get(rest, rest)

    match = re.fullmatch(r"input_blocks_(\d+)_(\d+)_(.+)", name)
    if match:
        i, j, rest = int(match[1]), int(match[2]), match[3]
        block, layer = divmod(i - 1, span)
        if layer == layers_per_block:
            return f"down_blocks_{block}_downsamplers_0_conv"
        return (f"down_blocks_{block}_resnets_{layer}_{resnet(rest)}" if j == 0
                else f"down_blocks_{block}_attentions_{layer}_{rest}")
    match = re.fullmatch(r"middle_block_(\d+)_(.+)", name)
    if match:
        i, rest = int(match[1]), match[2]
        return (f"mid_block_attentions_0_{rest}" if i == 1
                else f"mid_block_resnets_{i // 2}_{resnet(rest)}")
    match = re.fullmatch(r"output_blocks_(\d+)_(\d+)_(.+)", name)
    if match:
        i, j, rest = int(match[1]), int(match[2]), match[3]
        block, layer = divmod(i, span)
        if j == 0:
            return f"up_blocks_{block}_resnets_{layer}_{resnet(rest)}"
        if j == 2 or rest == "conv":
            return f"up_blocks_{block}_upsamplers_0_conv"
        return f"up_blocks_{block}_attentions_{layer}_{rest}"
    return name


def _base(module: Any) -> Any:
    """The layer holding the weight: PEFT wraps a layer a LoRA adapter is loaded into."""
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module


def module_table(pipe: Any) -> dict[str, tuple[str, Any]]:
    """``{kohya name: (component.path, layer)}`` for every layer with a weight in the pipeline's
    UNet and text encoders."""
    table: dict[str, tuple[str, Any]] = {}
    for prefix, component in _PREFIXES:
        model = getattr(pipe, component, None)
        if model is None:
            continue
        for path, module in model.named_modules():
            if ".base_layer" in path or ".lora_" in path or not path:
                continue
            layer = _base(module)
            if getattr(layer, "weight", None) is None:
                continue
            flat = path.replace(".", "_")
            names = [flat] if component == "unet" or flat.startswith("text_model_") \
                else [flat, "text_model_" + flat]  # transformers 5 has no text_model level
            for name in names:
                table.setdefault(prefix + name, (f"{component}.{path}", layer))
    return table


def _find(name: str, table: dict[str, tuple[str, Any]], layers_per_block: int) -> Any:
    if name in table:
        return table[name]
    if name.startswith("lora_unet_"):
        mapped = "lora_unet_" + _sgm_to_diffusers(name[len("lora_unet_"):], layers_per_block)
        return table.get(mapped)
    return None


def _float(value: Any) -> Any:
    return value.float()


def _tucker(core: Any, down: Any, up: Any) -> Any:
    """A Tucker-decomposed factor: the core contracted with its input and output matrices."""
    import torch

    return torch.einsum("i j k l, j r, i p -> p r k l", _float(core), _float(down), _float(up))


def _scale(parts: dict[str, Any], rank: int | None) -> float:
    alpha = parts.get("alpha")
    if alpha is None or not rank:
        return 1.0
    return float(alpha) / rank


def delta_weight(parts: dict[str, Any], shape: tuple[int, ...], name: str) -> Any:
    """ΔW of one layer (float32, the layer's weight shape) from its LyCORIS factors."""
    import torch

    if "hada_w1_a" in parts:
        w1a, w1b = _float(parts["hada_w1_a"]), _float(parts["hada_w1_b"])
        w2a, w2b = _float(parts["hada_w2_a"]), _float(parts["hada_w2_b"])
        if "hada_t1" in parts and "hada_t2" in parts:
            w1 = _tucker(parts["hada_t1"], w1b, w1a)
            w2 = _tucker(parts["hada_t2"], w2b, w2a)
        else:
            w1, w2 = w1a @ w1b.flatten(1), w2a @ w2b.flatten(1)
        delta = (w1 * w2) * _scale(parts, w1b.shape[0])
    elif "lokr_w1" in parts or "lokr_w1_a" in parts:
        rank = None
        if "lokr_w1" in parts:
            w1 = _float(parts["lokr_w1"])
        else:
            w1 = _float(parts["lokr_w1_a"]) @ _float(parts["lokr_w1_b"])
            rank = parts["lokr_w1_b"].shape[0]
        if "lokr_w2" in parts:
            w2 = _float(parts["lokr_w2"])
        else:
            rank = parts["lokr_w2_b"].shape[0]
            if "lokr_t2" in parts:
                w2 = _tucker(parts["lokr_t2"], parts["lokr_w2_b"], parts["lokr_w2_a"])
            else:
                w2 = _float(parts["lokr_w2_a"]) @ _float(parts["lokr_w2_b"]).flatten(1)
        if len(shape) == 4:  # a convolution: w2 carries the kernel, (out, in·kh·kw) or 4-D
            w2 = w2.reshape(w2.shape[0], -1, *shape[2:])
            w1 = w1[:, :, None, None]
        delta = torch.kron(w1, w2) * _scale(parts, rank)
    elif "diff" in parts:
        delta = _float(parts["diff"])
    elif "lora_up.weight" in parts:
        up, down = _float(parts["lora_up.weight"]), _float(parts["lora_down.weight"])
        if "lora_mid.weight" in parts:
            delta = _tucker(parts["lora_mid.weight"], down.flatten(1), up.flatten(1).T)
        else:
            delta = up.flatten(1) @ down.flatten(1)
        delta = delta * _scale(parts, down.shape[0])
    else:
        raise UserFacingError(f"its layer {name} has no weights Studio knows how to apply "
                              f"({', '.join(sorted(parts))}).")
    if delta.numel() != _numel(shape):
        raise UserFacingError(f"its layer {name} changes a weight of shape "
                              f"{tuple(delta.shape)}, but the model's is {tuple(shape)}; it was "
                              "probably made for another kind of model.")
    return delta.reshape(shape)


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


@dataclass
class LycorisFile:
    """One LyCORIS file resolved against a pipeline: ``{layer path: (layer, parts)}``."""

    label: str  # the LoRA's name, for messages
    layers: dict[str, tuple[Any, dict[str, Any]]] = field(default_factory=dict)


def resolve(pipe: Any, state: dict[str, Any], label: str, model_name: str) -> LycorisFile:
    """Match a LyCORIS state dict to ``pipe``'s layers; refuse DoRA, shape and name mismatches."""
    modules, _stray = group_modules(state)
    if any("dora_scale" in parts for parts in modules.values()):
        raise UserFacingError(f"LoRA '{label}' is a DoRA (weight-decomposed) LyCORIS file, which "
                              "Studio cannot apply yet; use a version trained without DoRA.")
    table = module_table(pipe)
    unet = getattr(pipe, "unet", None)
    layers_per_block = int(getattr(getattr(unet, "config", None), "layers_per_block", 2) or 2)
    found = LycorisFile(label)
    missing: list[str] = []
    for name, parts in modules.items():
        hit = _find(name, table, layers_per_block)
        if hit is None:
            missing.append(name)
            continue
        path, layer = hit
        weight_shape = tuple(layer.weight.shape)
        try:  # refuses a wrong shape now, not mid-job
            delta_weight(parts, weight_shape, name)
        except UserFacingError as exc:
            raise UserFacingError(f"LoRA '{label}' does not fit '{model_name}': {exc}") from None
        except RuntimeError as exc:  # factors whose sizes do not multiply
            raise UserFacingError(f"LoRA '{label}' cannot be applied: its layer {name} has "
                                  f"factors that do not fit together ({exc}).") from None
        found.layers[path] = (layer, parts)
    if not found.layers:
        raise UserFacingError(f"LoRA '{label}' matches no layer of '{model_name}'; it was "
                              "probably made for another kind of model.")
    if missing:
        raise UserFacingError(
            f"LoRA '{label}' does not fit '{model_name}': {len(missing)} of its layers "
            f"(such as {missing[0]}) are not in this model. It was probably made for another "
            "kind of model — SD 1.5, SD 2.x and SDXL LoRAs each work only with models of their "
            "own kind.")
    return found


class LycorisPatches:
    """The LyCORIS files applied to one pipeline, their weights, and the original weights."""

    def __init__(self, files: list[LycorisFile]) -> None:
        self.files = files
        self.weights: tuple[float, ...] | None = None  # None: nothing added yet
        self._originals: dict[str, tuple[Any, Any, Any]] = {}  # path → (layer, weight, bias)

    def set_weights(self, weights: list[float]) -> None:
        """Make each file's change count ``weights[i]`` times (restoring the originals first)."""
        import torch

        wanted = tuple(float(w) for w in weights)
        if wanted == self.weights:
            return
        self.restore()
        with torch.no_grad():
            for file in self.files:
                for path, (layer, _parts) in file.layers.items():
                    self._keep(path, layer)
            for file, weight in zip(self.files, wanted, strict=True):
                for path, (layer, parts) in file.layers.items():
                    self._add(layer, parts, weight, path)
        self.weights = wanted

    def _keep(self, path: str, layer: Any) -> None:
        if path in self._originals:
            return
        weight, bias = _stored(layer, "weight"), _stored(layer, "bias")
        self._originals[path] = (layer, weight.detach().to("cpu", copy=True),
                                 None if bias is None else bias.detach().to("cpu", copy=True))

    @staticmethod
    def _add(layer: Any, parts: dict[str, Any], weight: float, path: str) -> None:
        if weight == 0:
            return
        param = _stored(layer, "weight")
        delta = delta_weight(parts, tuple(param.shape), path).to(param.device)
        param.copy_((param.float() + weight * delta).to(param.dtype))
        bias = _stored(layer, "bias")
        if "diff_b" in parts and bias is not None:
            bias.copy_((bias.float() + weight * _float(parts["diff_b"]).to(bias.device)
                        .reshape(bias.shape)).to(bias.dtype))

    def restore(self) -> None:
        """Put every changed layer back to its original weights, bit for bit."""
        import torch

        with torch.no_grad():
            for layer, weight, bias in self._originals.values():
                _stored(layer, "weight").copy_(weight)
                if bias is not None:
                    _stored(layer, "bias").copy_(bias)
        self.weights = None


def _stored(layer: Any, name: str) -> Any:
    """Where a layer's ``weight``/``bias`` really is: the parameter, or — offloaded layer by layer
    (accelerate's sequential CPU offload leaves a meta tensor on the layer) — the CPU copy its
    hook loads before each use, so changes reach the next forward pass either way."""
    tensor = getattr(layer, name, None)
    if tensor is None or tensor.device.type != "meta":
        return tensor
    hook = getattr(layer, "_hf_hook", None)
    for one in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
        weights = getattr(one, "weights_map", None)
        if weights is not None:
            try:
                return weights[name]
            except KeyError:
                continue
    raise UserFacingError("LyCORIS (LoHa/LoKr) files cannot reach this model's weights while "
                          "it is offloaded this way; choose another memory setting (or no "
                          "offload) in Settings.")
