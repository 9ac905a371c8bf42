"""LyCORIS LoHa/LoKr files: each patched layer equals the LyCORIS formula computed here
independently, weights per tag and several files at once (with a plain LoRA too) add up, unloading
puts back the very same bits, SDXL's original block names find their diffusers layers, the library
shows the type, and DoRA / wrong-model files are refused with a sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.library.classify import classify_file
from studio.pipelines.diffusion.loras import LoraChoice, LoraPlan, apply_loras, loaded_loras
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from studio.pipelines.model_cache import ModelCache
from tests.fixtures.sinks import RecordingSink
from tests.fixtures.tiny_lora import build_tiny_lora, lyco_file

# kohya layer name → (pipeline component, module path in diffusers / transformers), by hand
SD15_LAYERS = {
    "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q":
        ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"),
    "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k":
        ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"),
    "lora_unet_down_blocks_0_resnets_0_conv1": ("unet", "down_blocks.0.resnets.0.conv1"),
    "lora_unet_up_blocks_1_resnets_0_conv2": ("unet", "up_blocks.1.resnets.0.conv2"),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj":
        ("text_encoder", "encoder.layers.0.self_attn.q_proj"),
    "lora_te_text_model_encoder_layers_1_mlp_fc1": ("text_encoder", "encoder.layers.1.mlp.fc1"),
}
# SDXL's original (SGM) block names, as kohya's SDXL trainers write them (layers_per_block 1)
SDXL_LAYERS = {
    "lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q":
        ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"),
    "lora_unet_input_blocks_1_0_in_layers_2": ("unet", "down_blocks.0.resnets.0.conv1"),
    "lora_unet_input_blocks_2_0_op": ("unet", "down_blocks.0.downsamplers.0.conv"),
    "lora_unet_middle_block_1_proj_in": ("unet", "mid_block.attentions.0.proj_in"),
    "lora_unet_middle_block_2_out_layers_3": ("unet", "mid_block.resnets.1.conv2"),
    "lora_unet_output_blocks_1_1_transformer_blocks_1_ff_net_2":
        ("unet", "up_blocks.0.attentions.1.transformer_blocks.1.ff.net.2"),
    "lora_unet_output_blocks_1_2_conv": ("unet", "up_blocks.0.upsamplers.0.conv"),
    "lora_unet_output_blocks_2_0_skip_connection": ("unet", "up_blocks.1.resnets.0.conv_shortcut"),
    "lora_te1_text_model_encoder_layers_0_self_attn_v_proj":
        ("text_encoder", "encoder.layers.0.self_attn.v_proj"),
    "lora_te2_text_model_encoder_layers_0_self_attn_out_proj":
        ("text_encoder_2", "encoder.layers.0.self_attn.out_proj"),
}


def module(pipe, component: str, path: str):
    model = getattr(pipe, component)
    model = getattr(model, "text_model", model) if component.startswith("text") else model
    return model.get_submodule(path)


def shapes(pipe, layers) -> dict[str, tuple[int, ...]]:
    return {name: tuple(module(pipe, *where).weight.shape) for name, where in layers.items()}


def params(pipe) -> dict[str, torch.Tensor]:
    return {f"{c}.{n}": p.detach().clone() for c in ("unet", "text_encoder", "text_encoder_2")
            if getattr(pipe, c, None) is not None for n, p in getattr(pipe, c).named_parameters()}


# -- the LyCORIS formulas, written out here independently ---------------------------------------
def tucker(core, down, up):
    # w[p, r, k, l] = Σᵢⱼ core[i, j, k, l] · down[j, r] · up[i, p]
    return (up.T @ core.permute(2, 3, 0, 1) @ down).permute(2, 3, 0, 1)


def kron(a, b):
    blocks = [[a[i, j] * b for j in range(a.shape[1])] for i in range(a.shape[0])]
    return torch.cat([torch.cat(row, dim=1) for row in blocks], dim=0)


def expected_delta(state, name, shape):
    get = lambda k: state.get(f"{name}.{k}")  # noqa: E731
    alpha = float(get("alpha"))
    if get("hada_w1_a") is not None:
        if get("hada_t1") is not None:
            w1 = tucker(get("hada_t1"), get("hada_w1_b"), get("hada_w1_a"))
            w2 = tucker(get("hada_t2"), get("hada_w2_b"), get("hada_w2_a"))
        else:
            w1 = get("hada_w1_a") @ get("hada_w1_b")
            w2 = get("hada_w2_a") @ get("hada_w2_b")
        return (w1.reshape(shape) * w2.reshape(shape)) * (alpha / get("hada_w1_b").shape[0])
    if get("diff") is not None:
        return get("diff")
    if get("lora_up.weight") is not None:
        up, down = get("lora_up.weight").flatten(1), get("lora_down.weight").flatten(1)
        if get("lora_mid.weight") is None:
            return (up @ down).reshape(shape) * (alpha / down.shape[0])
        return tucker(get("lora_mid.weight"), down, up.T) * (alpha / down.shape[0])
    if get("lokr_w1") is not None:
        w1, rank = get("lokr_w1"), get("lokr_w2_b").shape[0]
        w2 = (get("lokr_w2_a") @ get("lokr_w2_b")).reshape(shape[0] // 2, shape[1] // 2,
                                                           *shape[2:])
    else:
        w1, rank = get("lokr_w1_a") @ get("lokr_w1_b"), get("lokr_w1_b").shape[0]
        w2 = get("lokr_w2")
    if len(shape) == 4:
        w1 = w1[:, :, None, None]
    return kron(w1, w2).reshape(shape) * (alpha / rank)


def check_patched(pipe, originals, layers, files: list[tuple[dict, float]], biases=False):
    touched = set()
    keys = {id(p): f"{c}.{n}" for c in ("unet", "text_encoder", "text_encoder_2")
            if getattr(pipe, c, None) is not None for n, p in getattr(pipe, c).named_parameters()}
    for name, (component, path) in layers.items():
        layer = module(pipe, component, path)
        key = keys[id(layer.weight)]
        original = originals[key]
        expected = original.clone()
        for state, weight in files:
            if f"{name}.alpha" in state:
                expected += weight * expected_delta(state, name, tuple(original.shape))
        torch.testing.assert_close(layer.weight.detach(), expected, atol=1e-6, rtol=1e-5)
        assert not torch.equal(layer.weight, original)
        touched.add(key)
        if biases and layer.bias is not None:  # a full file's diff_b
            bias = keys[id(layer.bias)]
            expected = originals[bias] + sum(w * s[f"{name}.diff_b"] for s, w in files
                                             if f"{name}.diff_b" in s)
            torch.testing.assert_close(layer.bias.detach(), expected, atol=1e-6, rtol=1e-5)
            touched.add(bias)
    now = params(pipe)
    for key, value in originals.items():  # nothing else moved, not one bit
        if key not in touched:
            assert torch.equal(now[key], value), key


def plan_of(*files: tuple[object, float]) -> LoraPlan:
    loras = []
    for path, weight in files:
        kind = classify_file(path)  # a pickle: format and family known once it is read
        family, fmt = (kind.family, kind.format) if kind.kind == "lora" else ("", "")
        loras.append(LoraChoice(path.stem, weight, path, "request", family, fmt))
    return LoraPlan("a fox", loras=loras)


def states(*paths):
    from safetensors.torch import load_file

    return [load_file(str(p)) for p in paths]


# -- the tests ----------------------------------------------------------------------------------
def test_loha_and_lokr_patch_each_layer_by_the_formula_and_unload_exactly(sd15_pipe,
                                                                           tiny_sd15_dir,
                                                                           tmp_path):
    pipe = sd15_pipe
    layers = shapes(pipe, SD15_LAYERS)
    conv_layers = {k: v for k, v in layers.items() if len(v) == 4}
    loha = lyco_file(tmp_path / "loha.safetensors", "loha", layers, seed=1, rank=2, alpha=1.0)
    lokr = lyco_file(tmp_path / "lokr.safetensors", "lokr", layers, seed=2, rank=3, alpha=2.0)
    tucker_loha = lyco_file(tmp_path / "tucker.safetensors", "loha", conv_layers, seed=3,
                            rank=2, alpha=2.0, tucker=True)
    ink = build_tiny_lora(tiny_sd15_dir, tmp_path / "ink.safetensors", seed=1)
    assert [classify_file(p).format for p in (loha, lokr, tucker_loha)] == ["LoHa", "LoKr",
                                                                            "LoHa"]
    originals = params(pipe)
    s_loha, s_lokr, s_tucker = states(loha, lokr, tucker_loha)

    apply_loras(pipe, plan_of((loha, 0.7), (lokr, 0.5), (tucker_loha, 1.0)), "sd1", "tiny")
    check_patched(pipe, originals, SD15_LAYERS, [(s_loha, 0.7), (s_lokr, 0.5), (s_tucker, 1.0)])
    assert len(loaded_loras(pipe)) == 3
    # Other weights only change the weights (from the originals, not on top of the last ones).
    apply_loras(pipe, plan_of((loha, -0.3), (lokr, 1.0), (tucker_loha, 0.0)), "sd1", "tiny")
    check_patched(pipe, originals, SD15_LAYERS, [(s_loha, -0.3), (s_lokr, 1.0)])
    # With a plain (PEFT) LoRA at the same time; then no LoRAs: the very same bits as before.
    apply_loras(pipe, plan_of((ink, 0.8), (loha, 0.7)), "sd1", "tiny")
    assert hasattr(pipe.unet, "peft_config")
    apply_loras(pipe, LoraPlan("a fox"), "sd1", "tiny")
    assert not hasattr(pipe.unet, "peft_config") and loaded_loras(pipe) == ()
    now = params(pipe)
    assert now.keys() == originals.keys()
    assert all(torch.equal(now[k], originals[k]) for k in originals)
    # A LoKr saved as a plain-tensor pickle (.pt, read weights_only) is the same LoKr.
    pickled = tmp_path / "lokr.pt"
    torch.save(s_lokr, pickled)
    apply_loras(pipe, plan_of((pickled, 0.5)), "sd1", "tiny")
    check_patched(pipe, originals, SD15_LAYERS, [(s_lokr, 0.5)])
    apply_loras(pipe, LoraPlan("a fox"), "sd1", "tiny")


def test_sdxl_original_block_names_reach_their_diffusers_layers(sdxl_pipe, tmp_path):
    pipe = sdxl_pipe
    layers = shapes(pipe, SDXL_LAYERS)
    loha = lyco_file(tmp_path / "xl.safetensors", "loha", layers, seed=4, rank=2, alpha=1.0)
    assert classify_file(loha).family == "sdxl"  # it has a second text encoder
    originals = params(pipe)
    apply_loras(pipe, plan_of((loha, 0.9)), "sdxl", "tiny-xl")
    try:
        check_patched(pipe, originals, SDXL_LAYERS, [(states(loha)[0], 0.9)])
    finally:
        apply_loras(pipe, LoraPlan("a fox"), "sdxl", "tiny-xl")
    now = params(pipe)
    assert all(torch.equal(now[k], originals[k]) for k in originals)


def test_bad_lycoris_files_are_refused_with_a_sentence_and_leave_no_trace(sd15_pipe, tmp_path):
    pipe = sd15_pipe
    layers = shapes(pipe, SD15_LAYERS)
    name = next(iter(layers))
    originals = params(pipe)
    dora = lyco_file(tmp_path / "dora.safetensors", "loha", layers,
                     extra={f"{name}.dora_scale": torch.ones(layers[name][0], 1)})
    with pytest.raises(UserFacingError, match="'dora' is a DoRA .* Studio cannot apply"):
        apply_loras(pipe, plan_of((dora, 1.0)), "sd1", "tiny")
    wrong = lyco_file(tmp_path / "wrong.safetensors", "loha", {name: (32, 16)})
    with pytest.raises(UserFacingError, match=r"'wrong'.*shape \(32, 16\).*\(64, 64\)"):
        apply_loras(pipe, plan_of((wrong, 1.0)), "sd1", "tiny")
    elsewhere = lyco_file(tmp_path / "elsewhere.safetensors", "lokr",
                          {**layers, "lora_unet_no_such_block_proj": (8, 8)})
    good = lyco_file(tmp_path / "good.safetensors", "loha", layers)
    with pytest.raises(UserFacingError, match="'elsewhere' does not fit 'tiny': 1 of its "
                                              "layers .*no_such_block.* another kind of model"):
        apply_loras(pipe, plan_of((good, 1.0), (elsewhere, 1.0)), "sd1", "tiny")
    assert loaded_loras(pipe) == ()
    now = params(pipe)
    assert all(torch.equal(now[k], originals[k]) for k in originals)


def test_a_lyco_tag_in_the_prompt_changes_the_image_and_the_library_shows_the_type(
        studio_home, sd15_pipe, tiny_sd15_dir):
    from studio.library.catalog import list_models

    folder = default_paths().models_dir / "loras"
    folder.mkdir(parents=True)
    lyco_file(folder / "Ink Wash.safetensors", "loha", shapes(sd15_pipe, SD15_LAYERS),
                     seed=5, rank=2, alpha=2.0)
    lyco_file(folder / "kron.safetensors", "lokr", shapes(sd15_pipe, SD15_LAYERS), seed=6)
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    entries = {e.name: e for e in list_models(settings, default_paths()) if e.kind == "lora"}
    assert entries["Ink Wash"].format == "LoRA (LoHa)"
    assert entries["kron"].format == "LoRA (LoKr)" and "Generate" in entries["kron"].workspaces
    service = Txt2ImgService(lambda: settings, default_paths, cache=ModelCache())

    def run(prompt):
        request = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt=prompt, seed=7, steps=2,
                                 width=64, height=64, cfg=6.0)
        return service.run(request, RecordingSink(), CancelToken())[0]

    plain = run("a fox")
    tagged = run("a fox <lyco:Ink Wash:0.8>")  # the LyCORIS extension's tag, as <lora:…>
    assert not np.array_equal(np.asarray(tagged.image), np.asarray(plain.image))
    assert [(u["name"], u["weight"]) for u in tagged.loras] == [("Ink Wash", 0.8)]
    assert np.array_equal(np.asarray(run("a fox <lora:ink wash:0.8>").image),
                          np.asarray(tagged.image))
    both = run("a fox <lora:Ink Wash:0.8> <lora:kron:-0.5>")
    assert not np.array_equal(np.asarray(both.image), np.asarray(tagged.image))
    assert np.array_equal(np.asarray(run("a fox").image), np.asarray(plain.image))


def test_half_precision_layers_are_patched_in_float32_and_restored_exactly(tmp_path):
    """As on a GPU in fp16: ΔW is added in float32 then rounded once; unloading gives back the
    very same half-precision bits."""
    from types import SimpleNamespace

    from safetensors.torch import load_file

    from studio.pipelines.diffusion.lycoris import LycorisPatches, resolve

    torch.manual_seed(0)
    unet = torch.nn.ModuleDict({"proj_in": torch.nn.Linear(8, 6),
                                "conv": torch.nn.Conv2d(4, 6, 3)}).half()
    pipe = SimpleNamespace(unet=unet)
    path = lyco_file(tmp_path / "half.safetensors", "loha",
                     {"lora_unet_proj_in": (6, 8), "lora_unet_conv": (6, 4, 3, 3)}, seed=9)
    state = load_file(str(path))
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    patches = LycorisPatches([resolve(pipe, state, "half", "tiny")])
    patches.set_weights([0.6])
    for name, layer in (("lora_unet_proj_in", unet["proj_in"]), ("lora_unet_conv", unet["conv"])):
        original = before[f"{'proj_in' if 'proj' in name else 'conv'}.weight"]
        delta = expected_delta(state, name, tuple(original.shape))
        assert layer.weight.dtype == torch.float16
        assert torch.equal(layer.weight, (original.float() + 0.6 * delta).half())
    patches.restore()
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in before.items())


def test_locon_with_tucker_cores_and_full_diff_files(sd15_pipe, tmp_path):
    """A LoCon whose convolutions have lora_mid cores (diffusers cannot read them) and a
    LyCORIS "full" file (ΔW itself, and the bias's) apply by their formulas too."""
    pipe = sd15_pipe
    layers = shapes(pipe, SD15_LAYERS)
    locon = lyco_file(tmp_path / "locon.safetensors", "locon", layers, seed=10, rank=3,
                      alpha=1.5)
    full = lyco_file(tmp_path / "full.safetensors", "full", layers, seed=11)
    assert [classify_file(p).format for p in (locon, full)] == ["LyCORIS", "LyCORIS full"]
    originals = params(pipe)
    s_locon, s_full = states(locon, full)
    apply_loras(pipe, plan_of((locon, 0.8), (full, 0.5)), "sd1", "tiny")
    try:
        check_patched(pipe, originals, SD15_LAYERS, [(s_locon, 0.8), (s_full, 0.5)],
                      biases=True)
    finally:
        apply_loras(pipe, LoraPlan("a fox"), "sd1", "tiny")
    now = params(pipe)
    assert all(torch.equal(now[k], originals[k]) for k in originals)


def test_layers_offloaded_one_by_one_are_patched_where_their_weights_are(tmp_path):
    """accelerate's sequential CPU offload leaves meta tensors on the layers and the weights in
    its hooks: patches go there, and so does the restore, whichever came first."""
    from types import SimpleNamespace

    from accelerate import cpu_offload
    from safetensors.torch import load_file

    from studio.pipelines.diffusion.lycoris import LycorisPatches, resolve

    torch.manual_seed(1)
    unet = torch.nn.ModuleDict({"proj_in": torch.nn.Linear(8, 6)})
    pipe = SimpleNamespace(unet=unet)
    path = lyco_file(tmp_path / "x.safetensors", "full", {"lora_unet_proj_in": (6, 8)}, seed=2)
    state = load_file(str(path))
    x = torch.randn(3, 8)
    before = unet["proj_in"](x)
    weight0, bias0 = unet["proj_in"].weight.detach().clone(), unet["proj_in"].bias.detach().clone()
    expected = torch.nn.functional.linear(x, weight0 + 0.5 * state["lora_unet_proj_in.diff"],
                                          bias0 + 0.5 * state["lora_unet_proj_in.diff_b"])
    patches = LycorisPatches([resolve(pipe, state, "x", "tiny")])
    patches.set_weights([0.5])  # patched, then offloaded
    cpu_offload(unet, execution_device=torch.device("cpu"))
    assert unet["proj_in"].weight.device.type == "meta"
    torch.testing.assert_close(unet["proj_in"](x), expected)
    patches.restore()  # while offloaded
    assert torch.equal(unet["proj_in"](x), before)
    patches.set_weights([0.5])  # patched while offloaded
    torch.testing.assert_close(unet["proj_in"](x), expected)
    patches.restore()
    stored = unet["proj_in"]._hf_hook.weights_map
    assert torch.equal(stored["weight"], weight0) and torch.equal(stored["bias"], bias0)
