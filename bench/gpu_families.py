"""The image families bench/gpu.py builds, at their real architecture sizes or tiny (--dry-run).

Every pipeline starts from the test suite's tiny random-weight folder of its family
(tests/fixtures: the real pipeline, model and tokenizer classes at toy sizes; tokenizers and
schedulers are kept). At real size each model component is rebuilt from its real configuration —
the configs Studio ships in assets/configs, or the published numbers written here — directly on
the GPU in bf16 with random weights: nothing is downloaded and nothing is written but configs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "configs"

T5_XXL = "asset:flux/text_encoder_2"
QWEN3_4B = {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
            "vocab_size": 151936, "tie_word_embeddings": True}
QWEN25_VL_7B = {
    "vocab_size": 152064,
    "text_config": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                    "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                    "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default",
                                     "type": "default"}},
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "out_hidden_size": 3584, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31]}}


@dataclass(frozen=True)
class FamilySpec:
    """One family as the GPU script runs it."""

    key: str  # studio.library.families key
    label: str  # the model the real sizes are
    tiny: str  # "module:function" of the tiny builder in tests/fixtures
    #: component → its real configuration: "asset:DIR/COMPONENT" (a shipped config.json),
    #: or overrides of the tiny component's config
    real: dict[str, Any] = field(default_factory=dict)
    size: int = 1024
    steps: int = 8
    cfg: float = 3.5
    #: the text encoder that may run on the CPU (the planner's "T5 on the CPU" setting)
    big_text_encoder: str = ""


SPECS: tuple[FamilySpec, ...] = (
    FamilySpec("sd1", "SD 1.5", "tiny_models:build_tiny_sd15",
               {"unet": "asset:sd15/unet", "vae": "asset:sd15/vae",
                "text_encoder": "asset:sd15/text_encoder"}, size=512, steps=20, cfg=7.0),
    FamilySpec("sd2", "SD 2.1 (768 px)", "tiny_models:build_tiny_sd15",
               {"unet": "asset:sd2/unet", "vae": "asset:sd2/vae",
                "text_encoder": "asset:sd2/text_encoder"}, size=768, steps=20, cfg=7.0),
    FamilySpec("sdxl", "SDXL 1.0", "tiny_models:build_tiny_sdxl",
               {"unet": "asset:sdxl/unet", "vae": "asset:sdxl/vae",
                "text_encoder": "asset:sdxl/text_encoder",
                "text_encoder_2": "asset:sdxl/text_encoder_2"}, size=1024, steps=12, cfg=7.0),
    FamilySpec("sd3", "SD 3.5 medium", "tiny_models:build_tiny_sd3",
               {"transformer": {**json.loads((ASSETS / "sd35/transformer/config.json")
                                             .read_text()),
                                "num_layers": 24, "num_attention_heads": 24,
                                "caption_projection_dim": 1536, "pos_embed_max_size": 384,
                                "dual_attention_layers": list(range(13))},
                "vae": "asset:sd35/vae", "text_encoder": "asset:sd35/text_encoder",
                "text_encoder_2": "asset:sd35/text_encoder_2",
                "text_encoder_3": "asset:sd35/text_encoder_3"},
               steps=10, cfg=5.0, big_text_encoder="text_encoder_3"),
    FamilySpec("flux", "FLUX.1 dev (schnell: the same size, no guidance embedder)",
               "tiny_models:build_tiny_flux",
               {"transformer": "asset:flux/transformer", "vae": "asset:flux/vae",
                "text_encoder": "asset:flux/text_encoder", "text_encoder_2": T5_XXL},
               steps=8, big_text_encoder="text_encoder_2"),
    FamilySpec("chroma", "Chroma1-HD", "tiny_models:build_tiny_chroma",
               {"transformer": {"num_layers": 19, "num_single_layers": 38,
                                "attention_head_dim": 128, "num_attention_heads": 24,
                                "joint_attention_dim": 4096, "axes_dims_rope": (16, 56, 56),
                                "approximator_num_channels": 64,
                                "approximator_hidden_dim": 5120, "approximator_layers": 5},
                "vae": "asset:flux/vae", "text_encoder": T5_XXL},
               steps=8, cfg=4.0, big_text_encoder="text_encoder"),
    FamilySpec("flux2", "FLUX.2 klein 4B", "tiny_families:build_tiny_flux2_klein",
               {"transformer": {"num_layers": 5, "num_single_layers": 20,
                                "attention_head_dim": 128, "num_attention_heads": 24,
                                "joint_attention_dim": 7680, "timestep_guidance_channels": 256,
                                "axes_dims_rope": (32, 32, 32, 32)},
                "vae": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
                        "sample_size": 1024},
                "text_encoder": QWEN3_4B},
               steps=4, cfg=1.0, big_text_encoder="text_encoder"),
    FamilySpec("qwen-image", "Qwen-Image (20B)", "tiny_families:build_tiny_qwen_image",
               {"transformer": {"num_layers": 60, "attention_head_dim": 128,
                                "num_attention_heads": 24, "joint_attention_dim": 3584,
                                "axes_dims_rope": (16, 56, 56)},
                "vae": {"base_dim": 96, "num_res_blocks": 2}, "text_encoder": QWEN25_VL_7B},
               steps=6, cfg=4.0, big_text_encoder="text_encoder"),
    FamilySpec("z-image", "Z-Image Turbo (6B)", "tiny_families:build_tiny_z_image",
               {"transformer": {"dim": 3840, "n_layers": 30, "n_refiner_layers": 2,
                                "n_heads": 30, "n_kv_heads": 30, "cap_feat_dim": 2560,
                                "axes_dims": [32, 48, 48], "axes_lens": [1024, 512, 512]},
                "vae": "asset:flux/vae", "text_encoder": QWEN3_4B},
               steps=8, cfg=1.0, big_text_encoder="text_encoder"),
)


def spec_for(key: str) -> FamilySpec | None:
    return next((s for s in SPECS if s.key == key), None)


def _builder(dotted: str) -> Callable[[Path], Path]:
    import importlib

    module, name = dotted.split(":")
    return getattr(importlib.import_module(f"tests.fixtures.{module}"), name)


def _merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    if "num_hidden_layers" in overrides:  # derived from the depth: made again from the new one
        out.pop("layer_types", None)
    for key, value in overrides.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


@contextlib.contextmanager
def building_on(device: str, dtype: Any) -> Iterator[None]:
    """New modules are made on ``device`` in ``dtype`` (a 12B transformer in seconds, not in
    minutes of CPU initialisation and a copy)."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def real_module(tiny: Any, how: Any) -> Any:
    """A module of ``tiny``'s class at the real size ``how`` (see :class:`FamilySpec`)."""
    import torch

    cls = type(tiny)
    if hasattr(cls, "from_config") and hasattr(tiny, "save_config"):  # a diffusers model
        if isinstance(how, str):
            config = cls.load_config(str(ASSETS / how.removeprefix("asset:")))
        else:
            config = _merge(dict(tiny.config), how)
        module = cls.from_config(config)
    else:  # a transformers model
        config_cls = type(tiny.config)
        if isinstance(how, str):
            config = config_cls.from_json_file(str(ASSETS / how.removeprefix("asset:")
                                                   / "config.json"))
        else:
            config = config_cls.from_dict(_merge(tiny.config.to_dict(), how))
        module = cls(config)
    with torch.no_grad():  # parameters torch.empty leaves as they are (Z-Image's pad tokens)
        for name in ("x_pad_token", "cap_pad_token"):
            if hasattr(module, name):
                getattr(module, name).copy_(torch.ones_like(getattr(module, name)))
    return module.eval()


def _tiny_pipeline(spec: FamilySpec, workdir: Path) -> Any:
    from diffusers import DiffusionPipeline

    from studio.library.families import FAMILIES

    tiny_dir = workdir / f"tiny-{spec.key}"
    if not (tiny_dir / "model_index.json").is_file():
        _builder(spec.tiny)(tiny_dir)
    pipe = DiffusionPipeline.from_pretrained(
        str(tiny_dir), local_files_only=True,
        **{name: None for name in FAMILIES[spec.key].optional_components})
    if "text_encoder_3" in spec.real and pipe.components.get("text_encoder_3") is None:
        width = pipe.transformer.config.joint_attention_dim  # SD 3.5 with its T5
        pipe = type(pipe)(**{**pipe.components, **_tiny_t5(width)})
    return pipe


def real_parameter_counts(spec: FamilySpec, workdir: Path) -> dict[str, int]:
    """Each rebuilt component's parameters at real size, made on the meta device (no memory, a
    second): what the GPU run will hold, known before it builds anything."""
    import torch

    pipe = _tiny_pipeline(spec, workdir)
    with building_on("meta", torch.bfloat16):
        return {name: sum(p.numel() for p in real_module(getattr(pipe, name), how).parameters())
                for name, how in spec.real.items()}


def build_pipeline(spec: FamilySpec, workdir: Path, real: bool, device: str, dtype: Any) -> Any:
    """The family's pipeline in memory: tiny (from its fixture) or at real size on ``device``."""
    import torch

    pipe = _tiny_pipeline(spec, workdir)
    if real:
        torch.manual_seed(0)
        with building_on(device, dtype):
            rebuilt = {name: real_module(getattr(pipe, name), how)
                       for name, how in spec.real.items()}
        pipe = type(pipe)(**{**pipe.components, **rebuilt})
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def _tiny_t5(width: int) -> dict[str, Any]:
    """A tiny T5 encoder and the tests' T5 tokenizer (the tiny SD 3.5 folder has none)."""
    from transformers import T5Config, T5EncoderModel

    from tests.fixtures.tiny_models import tiny_t5_tokenizer

    t5 = T5EncoderModel(T5Config(vocab_size=120, d_model=width, d_kv=8, d_ff=64, num_layers=2,
                                 num_heads=4, decoder_start_token_id=0, pad_token_id=0,
                                 eos_token_id=1))
    return {"text_encoder_3": t5.eval(), "tokenizer_3": tiny_t5_tokenizer()}


def write_config_folder(pipe: Any, dest: Path) -> Path:
    """``pipe`` as a diffusers folder without weights (model_index.json, every component's
    config, tokenizers, scheduler): what Studio's library reads to know the model; the weights
    come from memory (bench/gpu.py hands the pipeline to Studio's model cache)."""
    import torch

    dest.mkdir(parents=True, exist_ok=True)
    pipe.save_config(str(dest))
    for name, component in pipe.components.items():
        if component is None:
            continue
        sub = dest / name
        if isinstance(component, torch.nn.Module):
            if hasattr(component, "save_config"):
                component.save_config(str(sub))
            else:
                component.config.save_pretrained(str(sub))
        elif hasattr(component, "save_pretrained"):
            component.save_pretrained(str(sub))
    return dest


def quantize_nf4(module: Any, compute_dtype: Any) -> int:
    """Every ``nn.Linear`` of ``module`` becomes bitsandbytes' NF4 ``Linear4bit`` with its
    weights quantized where they are (what diffusers' BitsAndBytesConfig(load_in_4bit,
    bnb_4bit_quant_type="nf4") does at loading); returns how many layers were replaced."""
    import bitsandbytes as bnb
    import torch

    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            device = child.weight.device
            layer = bnb.nn.Linear4bit(child.in_features, child.out_features,
                                      bias=child.bias is not None, compute_dtype=compute_dtype,
                                      quant_type="nf4", device="meta")
            layer.weight = bnb.nn.Params4bit(child.weight.data.to("cpu"), requires_grad=False,
                                             quant_type="nf4")
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, layer.to(device))
            count += 1
    return count
