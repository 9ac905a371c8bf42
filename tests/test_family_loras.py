"""LoRAs for the transformer families (issue 15): a LoRA file's family and format from its keys
and shapes in the layouts kohya, ai-toolkit/diffusers, BFL/ComfyUI and XLabs write; tiny random
FLUX.1 / SD 3.5 / Qwen-Image / Z-Image / FLUX.2 LoRAs applied through Studio's path bit for bit as
plain diffusers' ``load_lora_weights`` + ``set_adapters`` apply them, at the weight asked for,
unloaded and switched between generations; a LoRA of another family is refused with a sentence
naming both."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.library.classify import classify_file
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink
from tests.fixtures.tiny_family_loras import header_lora, random_pairs, write

R = 4  # rank of the header-only files

# -- classification at the real models' widths (header-only files) ----------------------------
CLASSIFY = {
    "flux-kohya": ({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (R, 3072),
                    "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": (9216, R),
                    "lora_unet_single_blocks_37_linear1.lora_down.weight": (R, 3072),
                    "lora_unet_single_blocks_37_linear1.lora_up.weight": (21504, R),
                    "lora_unet_single_blocks_37_linear1.alpha": ()}, None, "flux", "kohya"),
    "flux-ai-toolkit": ({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": (R, 3072),
                         "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": (3072, R),
                         "transformer.single_transformer_blocks.3.attn.to_k.lora_A.weight":
                             (R, 3072),
                         "transformer.single_transformer_blocks.3.attn.to_k.lora_B.weight":
                             (3072, R)}, None, "flux", "diffusers"),
    "flux-bfl": ({"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": (R, 3072),
                  "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": (9216, R),
                  "diffusion_model.double_blocks.0.img_mlp.0.lora_A.weight": (R, 3072),
                  "diffusion_model.double_blocks.0.img_mlp.0.lora_B.weight": (12288, R)},
                 None, "flux", "BFL"),
    "flux-xlabs": ({"double_blocks.0.processor.qkv_lora1.down.weight": (R, 3072),
                    "double_blocks.0.processor.qkv_lora1.up.weight": (9216, R),
                    "double_blocks.0.processor.proj_lora1.down.weight": (R, 3072),
                    "double_blocks.0.processor.proj_lora1.up.weight": (3072, R)},
                   None, "flux", "XLabs"),
    "chroma-kohya": ({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (R, 3072),
                      "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": (9216, R),
                      "lora_unet_distilled_guidance_layer_layers_0_in_layer.lora_down.weight":
                          (R, 5120),
                      "lora_unet_distilled_guidance_layer_layers_0_in_layer.lora_up.weight":
                          (5120, R)}, None, "chroma", "kohya"),
    "sd35-large-diffusers": ({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight":
                                  (R, 2432),
                              "transformer.transformer_blocks.0.attn.to_q.lora_B.weight":
                                  (2432, R)}, None, "sd3", "diffusers"),
    "sd35-medium-diffusers": ({"transformer.transformer_blocks.4.attn2.to_k.lora_A.weight":
                                   (R, 1536),
                               "transformer.transformer_blocks.4.attn2.to_k.lora_B.weight":
                                   (1536, R)}, None, "sd3", "diffusers"),
    "sd35-kohya": ({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": (R, 2432),
                    "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight": (7296, R),
                    "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight":
                        (R, 1280),
                    "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight":
                        (1280, R)}, None, "sd3", "kohya"),
    "qwen-diffusers": ({"transformer.transformer_blocks.0.img_mlp.net.0.proj.lora_A.weight":
                            (R, 3072),
                        "transformer.transformer_blocks.0.img_mlp.net.0.proj.lora_B.weight":
                            (12288, R)}, None, "qwen-image", "diffusers"),
    "qwen-attention-only": ({"transformer_blocks.59.attn.to_q.lora_A.weight": (R, 3072),
                             "transformer_blocks.59.attn.to_q.lora_B.weight": (3072, R)},
                            None, "qwen-image", "diffusers"),
    "qwen-kohya": ({"lora_unet_transformer_blocks_0_attn_to_q.lora_down.weight": (R, 3072),
                    "lora_unet_transformer_blocks_0_attn_to_q.lora_up.weight": (3072, R),
                    "lora_unet_transformer_blocks_0_txt_mod_1.lora_down.weight": (R, 3072),
                    "lora_unet_transformer_blocks_0_txt_mod_1.lora_up.weight": (18432, R)},
                   None, "qwen-image", "kohya"),
    "qwen-comfyui": ({"diffusion_model.transformer_blocks.0.img_mod.1.lora_A.weight": (R, 3072),
                      "diffusion_model.transformer_blocks.0.img_mod.1.lora_B.weight":
                          (18432, R)}, None, "qwen-image", "ComfyUI"),
    "z-image-diffusers": ({"transformer.layers.0.attention.to_q.lora_A.weight": (R, 3840),
                           "transformer.layers.0.attention.to_q.lora_B.weight": (3840, R)},
                          None, "z-image", "diffusers"),
    "z-image-kohya": ({"lora_unet_layers_0_attention_to_q.lora_down.weight": (R, 3840),
                       "lora_unet_layers_0_attention_to_q.lora_up.weight": (3840, R)},
                      None, "z-image", "kohya"),
    "flux2-diffusers": ({"transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj."
                         "lora_A.weight": (R, 3072),
                         "transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj."
                         "lora_B.weight": (27648, R)}, None, "flux2", "diffusers"),
    "flux2-ai-toolkit": ({"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight":
                              (R, 6144),
                          "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight":
                              (18432, R)}, None, "flux2", "BFL"),
    "flux2-klein-kohya": ({"lora_unet_single_blocks_0_linear1.lora_down.weight": (R, 3072),
                           "lora_unet_single_blocks_0_linear1.lora_up.weight": (27648, R)},
                          None, "flux2", "kohya"),
    "unclear": ({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": (R, 3072),
                 "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": (3072, R)},
                None, "", "diffusers"),
    "unclear-with-metadata": ({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight":
                                   (R, 3072),
                               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight":
                                   (3072, R)},
                              {"modelspec.architecture": "flux-1-dev/lora"}, "flux",
                              "diffusers"),
}


@pytest.mark.parametrize("case", list(CLASSIFY))
def test_a_lora_file_names_its_family_and_format(case, tmp_path):
    keys, metadata, family, fmt = CLASSIFY[case]
    kind = classify_file(header_lora(tmp_path / f"{case}.safetensors", keys, metadata))
    assert (kind.kind, kind.family, kind.format) == ("lora", family, fmt), kind.reason
    assert kind.reason


def test_the_models_library_lists_them_with_family_and_format(tmp_path):
    from studio.library.catalog import list_models

    folder = default_paths().models_dir / "loras"
    for case in ("flux-kohya", "qwen-kohya", "sd35-large-diffusers"):
        keys, metadata, _, _ = CLASSIFY[case]
        header_lora(folder / f"{case}.safetensors", keys, metadata)
    settings = Settings(device="cpu")
    listed = {e.name: e for e in list_models(settings, default_paths()) if e.kind == "lora"}
    assert (listed["flux-kohya"].family, listed["flux-kohya"].format) == ("flux", "LoRA (kohya)")
    assert listed["qwen-kohya"].family == "qwen-image"
    assert (listed["sd35-large-diffusers"].family,
            listed["sd35-large-diffusers"].format) == ("sd3", "LoRA (diffusers)")


def test_the_lora_list_offers_a_family_its_own_loras_and_kontext_flux_ones():
    from studio.library.families import lora_fits

    assert lora_fits("flux", "flux") and not lora_fits("flux", "sd3")
    assert lora_fits("flux", "flux-kontext") and lora_fits("flux", "chroma")
    assert lora_fits("qwen-image", "qwen-image-edit") and not lora_fits("qwen-image", "flux")
    assert not lora_fits("flux2", "flux") and lora_fits("", "flux") and lora_fits("flux", "")


# -- applying through Studio's path -----------------------------------------------------------
def service():
    settings = Settings(device="cpu", precision="fp32", preview_mode="fast")
    return Txt2ImgService(lambda: settings, default_paths)


_SERVICES: dict[str, Txt2ImgService] = {}


@pytest.fixture(autouse=True)
def one_service_a_test():
    """Every generation of a test goes through one service, so one cached pipeline: LoRAs are
    loaded into it, switched and unloaded between generations as in the window."""
    _SERVICES["svc"] = service()
    yield
    _SERVICES.clear()


def studio_image(folder, loras=(), prompt="a lighthouse at dusk", cfg=3.5):
    req = Txt2ImgRequest(model=str(folder), prompt=prompt, steps=2, cfg=cfg, width=64,
                         height=64, seed=5, count=1, loras=list(loras))
    (result,) = _SERVICES["svc"].run(req, RecordingSink(), CancelToken())
    return np.asarray(result.image), result


def plain_image(cls_name, folder, lora=None, weight=1.0, cfg=3.5, cfg_argument="guidance_scale",
                negative=False):
    import diffusers

    extra = {"text_encoder_3": None, "tokenizer_3": None} if "3" in cls_name else {}
    pipe = getattr(diffusers, cls_name).from_pretrained(str(folder), local_files_only=True,
                                                        **extra)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="x")
        pipe.set_adapters(["x"], [weight])
    kwargs = {cfg_argument: cfg}
    if negative:
        kwargs["negative_prompt"] = ""
    return np.asarray(pipe(prompt="a lighthouse at dusk", num_inference_steps=2, width=64, height=64,
                           generator=torch.Generator("cpu").manual_seed(5), **kwargs).images[0])


#: the tiny FLUX.1's modules in its original (BFL) names: (out, in)
FLUX_ORIGINAL = {"double_blocks.0.img_attn.qkv": (96, 32), "double_blocks.0.img_attn.proj": (32, 32),
                 "double_blocks.0.txt_attn.qkv": (96, 32), "double_blocks.0.img_mlp.0": (128, 32),
                 "single_blocks.0.linear2": (32, 160)}
FLUX_DIFFUSERS = {"transformer_blocks.0.attn.to_q": (32, 32),
                  "transformer_blocks.0.attn.add_k_proj": (32, 32),
                  "transformer_blocks.0.ff.net.0.proj": (128, 32),
                  "single_transformer_blocks.0.attn.to_v": (32, 32),
                  "single_transformer_blocks.0.proj_mlp": (128, 32)}


def test_flux_loras_in_kohya_ai_toolkit_and_bfl_layouts_apply_as_diffusers_applies_them(
        tiny_flux_dir, tmp_path):
    pairs = random_pairs(FLUX_ORIGINAL, seed=1)
    kohya = write(pairs, "kohya", tmp_path / "ink-kohya.safetensors")
    bfl = write(pairs, "bfl", tmp_path / "ink-bfl.safetensors")
    toolkit = write(random_pairs(FLUX_DIFFUSERS, seed=2), "diffusers",
                    tmp_path / "glow.safetensors")
    for file, fmt in ((kohya, "kohya"), (bfl, "BFL"), (toolkit, "diffusers")):
        kind = classify_file(file)
        assert (kind.family, kind.format) == ("flux", fmt), kind.reason
    base, _ = studio_image(tiny_flux_dir)
    with_kohya, result = studio_image(tiny_flux_dir, [{"name": str(kohya), "weight": 0.7}])
    assert np.array_equal(with_kohya, plain_image("FluxPipeline", tiny_flux_dir, kohya, 0.7))
    assert not np.array_equal(with_kohya, base)
    assert "Lora hashes" in result.parameters and "<lora:ink-kohya:0.7>" in result.parameters
    # the same matrices in BFL's names: the same image (diffusers reads it once renamed)
    with_bfl, _ = studio_image(tiny_flux_dir, [{"name": str(bfl), "weight": 0.7}])
    assert np.array_equal(with_bfl, with_kohya)
    # the weight matters, in a prompt tag as in the list
    half, _ = studio_image(tiny_flux_dir, prompt=f"a lighthouse at dusk <lora:{bfl}:0.3>")
    assert np.array_equal(half, plain_image("FluxPipeline", tiny_flux_dir, kohya, 0.3))
    assert not np.array_equal(half, with_bfl)
    styled, _ = studio_image(tiny_flux_dir, [{"name": str(toolkit), "weight": 0.8}])
    assert np.array_equal(styled, plain_image("FluxPipeline", tiny_flux_dir, toolkit, 0.8))
    # switching back to none unloads them: plain FLUX again, bit for bit
    again, _ = studio_image(tiny_flux_dir)
    assert np.array_equal(again, base)
    assert np.array_equal(again, plain_image("FluxPipeline", tiny_flux_dir))


#: the tiny SD 3's modules in the original (SAI / kohya) names and their diffusers targets
SD3_ORIGINAL = {"joint_blocks.0.x_block.attn.qkv": (96, 32),
                "joint_blocks.0.x_block.attn.proj": (32, 32),
                "joint_blocks.0.context_block.attn.qkv": (96, 32),
                "joint_blocks.0.x_block.mlp.fc1": (128, 32),
                "lora_te1_text_model_encoder_layers_0_self_attn_q_proj": (32, 32),
                "lora_te1_text_model_encoder_layers_1_mlp_fc1": (64, 32),
                "lora_te2_text_model_encoder_layers_1_self_attn_out_proj": (32, 32)}
SD3_CLIP = {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj":
                "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
            "lora_te1_text_model_encoder_layers_1_mlp_fc1":
                "text_encoder.text_model.encoder.layers.1.mlp.fc1",
            "lora_te2_text_model_encoder_layers_1_self_attn_out_proj":
                "text_encoder_2.text_model.encoder.layers.1.self_attn.out_proj"}


def _sd3_as_diffusers(pairs):
    out = {}
    for name, (down, up) in pairs.items():
        if name in SD3_CLIP:
            out[SD3_CLIP[name]] = (down, up)
            continue
        block = name.split(".")[1]
        dst = f"transformer_blocks.{block}"
        if name.endswith("x_block.attn.qkv"):
            targets = [f"{dst}.attn.to_q", f"{dst}.attn.to_k", f"{dst}.attn.to_v"]
        elif name.endswith("context_block.attn.qkv"):
            targets = [f"{dst}.attn.add_q_proj", f"{dst}.attn.add_k_proj",
                       f"{dst}.attn.add_v_proj"]
        elif name.endswith("attn.proj"):
            targets = [f"{dst}.attn.to_out.0"]
        else:
            targets = [f"{dst}.ff.net.0.proj"]
        for target, rows in zip(targets, up.chunk(len(targets)), strict=True):
            out[target] = (down, rows)
    return out


def test_sd35_kohya_loras_apply_as_their_diffusers_form_and_flux_ones_are_refused(
        tiny_sd3_dir, tiny_flux_dir, tmp_path):
    pairs = random_pairs(SD3_ORIGINAL, seed=3)
    same = write(_sd3_as_diffusers(pairs), "diffusers", tmp_path / "sai-diffusers.safetensors")
    # kohya's file may hold T5 layers too, which diffusers cannot apply: left out, and said
    pairs["lora_te3_encoder_block_0_layer_0_SelfAttention_q"] = random_pairs(
        {"t5": (32, 32)}, seed=9)["t5"]
    kohya = write(pairs, "kohya", tmp_path / "sai-kohya.safetensors")
    assert (classify_file(kohya).family, classify_file(kohya).format) == ("sd3", "kohya")
    image, result = studio_image(tiny_sd3_dir, [{"name": str(kohya), "weight": 0.9}], cfg=4.5)
    assert any("T5 text-encoder layers" in w for w in result.warnings)
    expected = plain_image("StableDiffusion3Pipeline", tiny_sd3_dir, same, 0.9, cfg=4.5,
                           negative=True)
    assert np.array_equal(image, expected)
    assert not np.array_equal(image, studio_image(tiny_sd3_dir, cfg=4.5)[0])
    flux = write(random_pairs(FLUX_ORIGINAL, seed=1), "kohya", tmp_path / "ink.safetensors")
    with pytest.raises(UserFacingError) as err:
        studio_image(tiny_sd3_dir, [{"name": str(flux), "weight": 1.0}], cfg=4.5)
    assert "made for FLUX.1 models" in str(err.value) and "an SD 3.5 model" in str(err.value)


QWEN = {"transformer_blocks.0.attn.to_q": (32, 32), "transformer_blocks.0.attn.add_v_proj": (32, 32),
        "transformer_blocks.0.img_mlp.net.0.proj": (128, 32),
        "transformer_blocks.1.txt_mlp.net.2": (32, 128), "transformer_blocks.1.img_mod.1": (192, 32)}


@pytest.mark.parametrize("layout", ["kohya", "diffusers"])
def test_qwen_image_loras_apply_as_diffusers_applies_them(layout, tiny_qwen_image_dir, tmp_path):
    lora = write(random_pairs(QWEN, seed=4), layout, tmp_path / f"qwen-{layout}.safetensors")
    assert (classify_file(lora).family, classify_file(lora).format) == ("qwen-image", layout)
    image, _ = studio_image(tiny_qwen_image_dir, [{"name": str(lora), "weight": 0.6}], cfg=4.0)
    expected = plain_image("QwenImagePipeline", tiny_qwen_image_dir, lora, 0.6, cfg=4.0,
                           cfg_argument="true_cfg_scale", negative=True)
    assert np.array_equal(image, expected)
    assert not np.array_equal(image, studio_image(tiny_qwen_image_dir, cfg=4.0)[0])


Z_IMAGE = {"layers.0.attention.to_q": (32, 32), "layers.0.feed_forward.w1": (85, 32),
           "noise_refiner.0.attention.to_v": (32, 32)}
FLUX2 = {"transformer_blocks.0.attn.to_q": (32, 32), "transformer_blocks.0.ff.linear_in": (192, 32),
         "single_transformer_blocks.0.attn.to_qkv_mlp_proj": (288, 32)}


@pytest.mark.parametrize("case", ["z-image", "flux2", "chroma"])
def test_z_image_flux2_and_chroma_loras_apply_as_diffusers_applies_them(case, tmp_path,
                                                                 request):
    if case == "z-image":
        folder, modules, cls, layout = (request.getfixturevalue("tiny_z_image_dir"), Z_IMAGE,
                                        "ZImagePipeline", "kohya")
    elif case == "flux2":
        folder, modules, cls, layout = (request.getfixturevalue("tiny_flux2_dir"), FLUX2,
                                        "Flux2KleinPipeline", "diffusers")
    else:  # Chroma takes FLUX.1 LoRAs (its blocks are FLUX.1's)
        folder, modules, cls, layout = (request.getfixturevalue("tiny_chroma_dir"),
                                        FLUX_DIFFUSERS, "ChromaPipeline", "diffusers")
    lora = write(random_pairs(modules, seed=5), layout, tmp_path / f"{case}.safetensors")
    assert classify_file(lora).family == ("flux" if case == "chroma" else case)
    image, _ = studio_image(folder, [{"name": str(lora), "weight": 0.8}], cfg=4.0)
    expected = plain_image(cls, folder, lora, 0.8, cfg=4.0, negative=case != "flux2")
    assert np.array_equal(image, expected)
    assert not np.array_equal(image, studio_image(folder, cfg=4.0)[0])


def test_generates_lora_menu_offers_a_flux_model_flux_loras_only(qtbot, qapp, tmp_path):
    from types import SimpleNamespace

    from studio.ui.panels.generate.loras import LoraSection

    def entry(name, family):
        return SimpleNamespace(name=name, family=family, kind="lora", format="LoRA (kohya)",
                               path=tmp_path / f"{name}.safetensors")

    section = LoraSection()
    qtbot.addWidget(section)
    section.set_library([entry("ink", "flux"), entry("glow", "sd3"), entry("odd", "")])
    for family, offered in (("flux", {"ink", "odd"}), ("flux-kontext", {"ink", "odd"}),
                            ("sd3", {"glow", "odd"}), ("qwen-image", {"odd"})):
        section.set_family(family)
        choices = {e.name: (enabled, note) for e, enabled, note in section.choices()}
        assert {n for n, (enabled, _) in choices.items() if enabled} == offered, family
    assert choices["ink"] == (False, "for FLUX.1")


def test_an_xlabs_flux_lora_applies_as_diffusers_applies_it(tiny_flux_dir, tmp_path):
    pairs = random_pairs({"qkv_lora1": (96, 32), "proj_lora1": (32, 32), "qkv_lora2": (96, 32)},
                         seed=6)
    from safetensors.torch import save_file

    state = {}
    for name, (down, up) in pairs.items():
        state[f"double_blocks.0.processor.{name}.down.weight"] = down
        state[f"double_blocks.0.processor.{name}.up.weight"] = up
    lora = tmp_path / "xlabs.safetensors"
    save_file(state, str(lora))
    assert (classify_file(lora).family, classify_file(lora).format) == ("flux", "XLabs")
    image, _ = studio_image(tiny_flux_dir, prompt=f"a lighthouse at dusk <lora:{lora}:0.9>")
    assert np.array_equal(image, plain_image("FluxPipeline", tiny_flux_dir, lora, 0.9))
    assert not np.array_equal(image, studio_image(tiny_flux_dir)[0])
