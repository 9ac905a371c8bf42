"""LoRAs as people have them (issue 14): the attention-processor layout diffusers' training
scripts wrote until 2024 (``….processor.to_k_lora.down.weight``, text encoder ``….q_proj.
lora_linear_layer.down.weight``), which diffusers no longer reads, is recognised as a LoRA and
applied as the old processors did: each layer's weight plus ``up @ down``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import Txt2ImgRequest
from studio.library.classify import OLD_DIFFUSERS, classify_file
from studio.pipelines.diffusion.loras import LoraChoice, _load_one, convert_old_diffusers
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401


def _old_lora(pipe, prefix: bool) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, module in pipe.unet.named_modules():
        if name.endswith(("attn1", "attn2")):
            for proj in ("to_q", "to_k", "to_v", "to_out"):
                linear = module.to_out[0] if proj == "to_out" else getattr(module, proj)
                key = f"{'unet.' if prefix else ''}{name}.processor.{proj}_lora"
                state[f"{key}.down.weight"] = torch.randn(4, linear.in_features, generator=gen)
                state[f"{key}.up.weight"] = torch.randn(linear.out_features, 4,
                                                        generator=gen) * 0.1
    for name, module in pipe.text_encoder.named_modules():
        if name.endswith(("q_proj", "v_proj")):
            key = f"text_encoder.{name}.lora_linear_layer"
            state[f"{key}.down.weight"] = torch.randn(4, module.in_features, generator=gen)
            state[f"{key}.up.weight"] = torch.randn(module.out_features, 4, generator=gen) * 0.1
    return state


@pytest.mark.parametrize("prefix", [False, True])  # save_attn_procs wrote none, later "unet."
def test_an_old_diffusers_lora_adds_up_times_down_to_each_layer(sd15_pipe, tmp_path, prefix):
    import copy

    pipe = copy.deepcopy(sd15_pipe)
    state = _old_lora(pipe, prefix)
    path = tmp_path / "old-style.safetensors"
    save_file(state, str(path))
    kind = classify_file(path)
    assert (kind.kind, kind.format) == ("lora", OLD_DIFFUSERS)

    unet_key = next(k for k in state if k.endswith("attn2.processor.to_k_lora.down.weight"))
    layer = unet_key.removeprefix("unet.").split(".processor.")[0]
    before = pipe.unet.get_submodule(layer).to_k.weight.detach().clone()
    te_layer = next(n for n, _ in pipe.text_encoder.named_modules() if n.endswith("q_proj"))
    te_before = pipe.text_encoder.get_submodule(te_layer).weight.detach().clone()
    _load_one(pipe, LoraChoice("old-style", 1.0, path, "request", format=kind.format), "old",
              "sd1", "tiny")
    pipe.fuse_lora(adapter_names=["old"], components=["unet", "text_encoder"])
    up = state[unet_key.replace(".down.", ".up.")]
    torch.testing.assert_close(pipe.unet.get_submodule(layer).to_k.weight,
                               before + up @ state[unet_key])
    te_key = f"text_encoder.{te_layer}.lora_linear_layer.down.weight"
    torch.testing.assert_close(pipe.text_encoder.get_submodule(te_layer).weight,
                               te_before + state[te_key.replace(".down.", ".up.")]
                               @ state[te_key])


def test_the_conversion_renames_and_keeps_the_rest():
    converted = convert_old_diffusers({
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight": 1,
        "text_encoder.text_model.encoder.layers.3.self_attn.k_proj.lora_linear_layer.down.weight":
            2, "something.else": 3})
    assert converted == {
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_B.weight": 1,
        "text_encoder.text_model.encoder.layers.3.self_attn.k_proj.lora_A.weight": 2,
        "something.else": 3}


def test_generate_applies_an_old_diffusers_lora_from_the_library(sd15_pipe, tiny_sd15_dir):
    folder = default_paths().models_dir / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(_old_lora(sd15_pipe, True), str(folder / "old-style.safetensors"))
    settings = Settings(preview_mode="off", device="cpu")
    service = Txt2ImgService(lambda: settings, default_paths)

    class Sink:
        def __call__(self, *a):
            pass

        partial = message = __call__

    def image(loras):
        request = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="a cat", steps=2, width=32,
                                 height=32, seed=1, loras=loras)
        return np.asarray(service.run(request, Sink(), CancelToken())[0].image)

    with_lora = image([{"name": "old-style", "weight": 1.0}])
    assert not np.array_equal(with_lora, image([]))
