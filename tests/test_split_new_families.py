"""ComfyUI split files of Qwen-Image, Z-Image and FLUX.2 (issue 15, "Sources" and "Bad input"):
a diffusion-model file in models/diffusion_models with its language-model text encoder and its
VAE in their own folders is listed as one image model with its parts, assembled offline through
the user's path (library scan → request) and draws bit for bit what the diffusers folder with
the same weights draws; a part that does not belong is one sentence naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.library.models import entry_for_path, find_txt2img_models
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink
from tests.fixtures.tiny_split_families import (
    VARIANTS,
    write_comfy_split_family,
    write_config_folder,
)

FIXTURES = {"qwen-image": "tiny_qwen_split_dir", "z-image": "tiny_z_image_dir",
            "flux2": "tiny_flux2_dir"}


@pytest.fixture(scope="session")
def tiny_qwen_split_dir(tiny_models_root):
    from tests.fixtures.tiny_split_families import build_tiny_qwen_image_split

    return build_tiny_qwen_image_split(tiny_models_root / "tiny-qwen-image-split")


@pytest.fixture
def family_configs(tmp_path, request, monkeypatch):
    """Each tiny family's configs and tokenizer where Studio reads its shipped ones."""
    root = tmp_path / "configs"
    for family, fixture in FIXTURES.items():
        write_config_folder(request.getfixturevalue(fixture), root / VARIANTS[family])
    monkeypatch.setenv("STUDIO_SINGLE_FILE_CONFIG_DIR", str(root))
    return root


def generate(model, **kw):
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    req = Txt2ImgRequest(model=str(model), prompt="a lighthouse at dusk", steps=2, width=64,
                         height=64, seed=5, count=1, cfg=4.0, **kw)
    (result,) = Txt2ImgService(lambda: settings, default_paths).run(req, RecordingSink(),
                                                                      CancelToken())
    return np.asarray(result.image)


@pytest.mark.parametrize("family", list(FIXTURES))
def test_split_files_draw_what_the_folder_draws(family, request, tmp_path, family_configs):
    folder = request.getfixturevalue(FIXTURES[family])
    comfy = tmp_path / "ComfyUI"
    model = write_comfy_split_family(folder, comfy, family)
    settings = Settings(extra_model_dirs=[str(comfy)])
    (entry,) = [m for m in find_txt2img_models(settings, default_paths()) if m.format == "split"]
    assert entry.path == model and entry.family == family and not entry.needs
    assert set(entry.parts) == {"text_encoder", "vae"}
    negative = {} if family == "flux2" else {"negative_prompt": "blurry fog"}
    assert np.array_equal(generate(model, **negative), generate(folder, **negative))


def test_an_fp8_qwen_image_stays_fp8_and_draws_what_its_upcast_weights_draw(
        tmp_path, tiny_qwen_split_dir, family_configs):
    import torch

    from studio.library.kinds.image import describe
    from studio.pipelines.diffusion.split_loading import load_split_pipeline
    from tests.fixtures.tiny_split import round_to_fp8

    rounded = round_to_fp8(tiny_qwen_split_dir, tmp_path / "rounded")
    model = write_comfy_split_family(rounded, tmp_path / "ComfyUI", "qwen-image", fp8=True)
    assert describe(model, "file").precision.startswith("fp8")
    pipe = load_split_pipeline(entry_for_path(model, "file"), torch.float32, default_paths())
    assert pipe.transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    # layer-wise casting computes with the same weights; its per-call copies change float
    # rounding at the 1e-7 level: the images agree within one level of 255
    diff = np.abs(generate(model).astype(int) - generate(rounded).astype(int))
    assert diff.max() <= 1


def test_a_qwen_image_with_the_flux_ae_names_the_vae_it_needs(
        tmp_path, tiny_qwen_split_dir, tiny_z_image_dir, family_configs):
    from studio.pipelines.diffusion.split_loading import load_split_pipeline

    comfy = tmp_path / "ComfyUI"
    model = write_comfy_split_family(tiny_qwen_split_dir, comfy, "qwen-image")
    (comfy / "models" / "vae" / "qwen_image_vae.safetensors").unlink()
    write_comfy_split_family(tiny_z_image_dir, tmp_path / "other", "z-image")
    ae = comfy / "models" / "vae" / "ae.safetensors"
    ae.write_bytes((tmp_path / "other" / "models" / "vae" / "ae.safetensors").read_bytes())
    entry = entry_for_path(model, "file")
    assert "vae" not in entry.parts  # the ae is not taken for Qwen-Image's VAE
    assert "needs vae (Qwen-Image VAE) in" in entry.needs
    with pytest.raises(UserFacingError, match=r"needs vae \(Qwen-Image VAE\) in .*models/vae"):
        generate(model)
    entry.parts["vae"], entry.needs = ae, ""  # as if the user had chosen it
    with pytest.raises(UserFacingError, match="ae.safetensors is a 16-channel VAE, which does "
                       "not belong with a Qwen-Image model: it needs the Qwen-Image VAE"):
        load_split_pipeline(entry, None, default_paths())


def test_a_z_image_without_its_text_encoder_says_which_one(tmp_path, tiny_z_image_dir,
                                                           family_configs):
    comfy = tmp_path / "ComfyUI"
    model = write_comfy_split_family(tiny_z_image_dir, comfy, "z-image")
    (comfy / "models" / "text_encoders" / "qwen_3_4b.safetensors").unlink()
    entry = entry_for_path(model, "file")
    assert set(entry.parts) == {"vae"}
    with pytest.raises(UserFacingError, match=r"Z-Image diffusion model that needs text_encoder "
                       r"\(Qwen3 text encoder\) in .*models/text_encoders"):
        generate(model)


def test_a_flux2_given_a_t5_refuses_it_naming_the_part(tmp_path, tiny_flux2_dir,
                                                       tiny_flux_dir, family_configs):
    from studio.library.split_files import check_part
    from tests.fixtures.tiny_split import write_comfy_split

    comfy = tmp_path / "ComfyUI"
    model = write_comfy_split_family(tiny_flux2_dir, comfy, "flux2")
    t5 = write_comfy_split(tiny_flux_dir, tmp_path / "flux1", "flux").parents[1] / \
        "text_encoders" / "t5xxl_fp16.safetensors"
    with pytest.raises(UserFacingError, match="t5xxl_fp16.safetensors is a T5 text encoder, "
                       "which does not belong with a FLUX.2 model: it needs a Qwen3 text "
                       "encoder as its text_encoder"):
        check_part("text_encoder", t5, "flux2", model)
    from studio.pipelines.diffusion.split_loading import load_split_pipeline

    entry = entry_for_path(model, "file")
    entry.parts["text_encoder"] = t5  # as if chosen in the Models workspace
    with pytest.raises(UserFacingError, match="t5xxl_fp16.safetensors is a T5 text encoder"):
        load_split_pipeline(entry, None, default_paths())


def _real_header(family: str, config: dict) -> dict:
    """A real-size diffusion model built on the meta device (no memory), as the header of the
    file ComfyUI's download holds."""
    import diffusers
    from accelerate import init_empty_weights

    from tests.fixtures.tiny_split_families import flux2_to_original, z_image_to_original

    cls = getattr(diffusers, config["_class_name"])
    with init_empty_weights():
        model = cls.from_config(config)
    state = model.state_dict()
    if family == "z-image":
        state = z_image_to_original(state, check=False)
    elif family == "flux2":
        state = flux2_to_original(state, check=False)
    return {k: {"shape": list(v.shape), "dtype": "BF16"} for k, v in state.items()}


@pytest.mark.parametrize("asset,family,kind,width", [
    ("qwen_image", "qwen-image", "qwen25vl", 3584), ("z_image", "z-image", "qwen3", 2560),
    ("flux2_dev", "flux2", "mistral3", 5120), ("flux2_klein", "flux2", "qwen3", 2560)])
def test_real_sizes_are_told_apart_and_match_the_shipped_configs(asset, family, kind, width):
    import json

    import transformers

    from studio.library.single_file_configs import CONFIGS_DIR
    from studio.library.split_files import denoiser_family, parts_for
    from studio.pipelines.diffusion.split_families import transformer_overrides

    folder = CONFIGS_DIR / asset
    config = json.loads((folder / "transformer" / "config.json").read_text())
    header = _real_header(family, config)
    assert denoiser_family(header) == family
    overrides = transformer_overrides(header, family, config)
    assert overrides == {k: config[k] for k in overrides}  # the file says what the config says
    encoder, vae = parts_for(family, header)
    assert (encoder.role, encoder.need, encoder.width) == ("text_encoder", kind, width)
    assert vae.need == {"qwen-image": "qwen_vae", "z-image": "vae"}.get(family, "flux2_vae")
    text = transformers.AutoConfig.from_pretrained(str(folder / "text_encoder"))
    assert getattr(text, "text_config", text).hidden_size == width
    index = json.loads((folder / "model_index.json").read_text())
    assert index["text_encoder"][1] in {"qwen3": ("Qwen3Model", "Qwen3ForCausalLM")}.get(
        kind, (type(text).__name__.replace("Config", "ForConditionalGeneration"),))


@pytest.mark.parametrize("header,kind,width", [
    ({"model.layers.0.post_attention_layernorm.weight": [3584],
      "model.layers.0.self_attn.k_proj.bias": [512], "visual.blocks.0.norm1.weight": [1280]},
     "qwen25vl", 3584),
    ({"model.layers.0.post_attention_layernorm.weight": [2560],
      "model.layers.0.self_attn.q_norm.weight": [128]}, "qwen3", 2560),
    ({"model.layers.0.post_attention_layernorm.weight": [4096],
      "model.layers.0.self_attn.q_norm.weight": [128]}, "qwen3", 4096),
    ({"model.layers.0.post_attention_layernorm.weight": [5120],
      "model.layers.39.post_attention_layernorm.weight": [5120]}, "mistral3", 5120),
    ({"model.layers.0.post_attention_layernorm.weight": [2304],
      "model.layers.0.post_feedforward_layernorm.weight": [2304],
      "model.layers.0.self_attn.q_norm.weight": [256]}, "", 2304),  # Gemma: none of these
    ({"decoder.conv1.weight": [384, 16, 3, 3, 3]}, "qwen_vae", 0),
    ({"decoder.conv_in.weight": [512, 32, 3, 3], "bn.running_mean": [128]}, "flux2_vae", 0),
    ({"decoder.conv_in.weight": [512, 16, 3, 3]}, "", 0),  # FLUX.1's ae: split_files' "vae"
])
def test_text_encoders_and_vaes_are_told_apart_by_their_headers(header, kind, width):
    from studio.library.split_families import part_kind

    assert part_kind({k: {"shape": v} for k, v in header.items()}) == (kind, width)


def test_a_missing_tokenizer_names_the_download(tmp_path, monkeypatch):
    from studio.pipelines.diffusion.split_families import find_tokenizer

    monkeypatch.setattr("studio.library.hf_cache.hf_cache_repos", lambda: [])
    with pytest.raises(UserFacingError, match='hf download Qwen/Qwen-Image --include "tokenizer/'):
        find_tokenizer(tmp_path, "qwen-image")
    with pytest.raises(UserFacingError, match="hf download Tongyi-MAI/Z-Image-Turbo"):
        find_tokenizer(tmp_path, "z-image")


def test_the_planner_knows_each_parts_size(tmp_path, tiny_qwen_split_dir):
    from studio.library.detect import read_safetensors_header as read_header
    from studio.pipelines.diffusion.planner import GB, components_of, plan

    model = write_comfy_split_family(tiny_qwen_split_dir, tmp_path / "ComfyUI", "qwen-image",
                                     fp8=True)
    entry = entry_for_path(model, "file")
    sizes = {c.key: c.bytes for c in components_of(entry, 2)}
    assert set(sizes) == {"transformer", "text_encoder", "vae"}
    from safetensors import safe_open

    def count(path):
        with safe_open(str(path), "pt") as f:
            return sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())

    # fp8: kept in fp8, one byte a weight — but for the norms and embeddings layer-wise casting
    # leaves in the compute precision (planner's _KEPT_IN_COMPUTE, split_loading.FP8_SKIP)
    kept = sum(int(np.prod(info["shape"])) for name, info in read_header(model).items()
               if name != "__metadata__" and "norm" in name)
    assert kept and sizes["transformer"] == count(model) + kept
    assert sizes["text_encoder"] == 2 * count(entry.parts["text_encoder"])  # bf16 from fp32
    # at real sizes (Qwen-Image fp8 ~20 GB, its text encoder ~16 GB in bf16, the VAE ~0.25 GB)
    # on a 24 GB card the text encoder is the part left on the CPU
    comps = [type(c)(c.key, c.label, {"transformer": 20, "text_encoder": 16}.get(c.key, 0.25)
                     * GB) for c in components_of(entry, 2)]
    chosen = plan("Qwen-Image", comps, "cuda", 24 * GB, 64 * GB)
    assert chosen.mode == "text_encoder_cpu" and "the text encoder runs on the CPU" in \
        chosen.sentence


def test_comfys_scaled_fp8_is_multiplied_out(tmp_path, tiny_z_image_dir):
    import torch
    from safetensors.torch import load_file, save_file

    from studio.pipelines.diffusion.planner import tensor_bytes
    from studio.pipelines.diffusion.split_families import load_text_encoder

    state = {"model." + k: v for k, v in
             load_file(str(tiny_z_image_dir / "text_encoder" / "model.safetensors")).items()}
    scaled, expected = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}, {}
    for key, value in state.items():
        if value.ndim == 2 and "embed" not in key:
            scale = value.abs().max() / 448
            q = (value / scale).to(torch.float8_e4m3fn)
            scaled[key], scaled[key[:-len("weight")] + "scale_weight"] = q, scale.reshape(1)
            scaled[key[:-len("weight")] + "scale_input"] = torch.ones(1)
            expected[key] = q.to(torch.float32) * scale
        else:
            scaled[key] = expected[key] = value
    path = tmp_path / "qwen_3_4b_fp8_scaled.safetensors"
    save_file(scaled, str(path))
    model = load_text_encoder("qwen3", path, tiny_z_image_dir, "Qwen3Model", torch.float32)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k.removeprefix("model.")], v) for k, v in expected.items())
    # the planner counts every weight (fp8 ones too: multiplied out) in the run precision
    assert tensor_bytes([path], 2) == 2 * sum(v.numel() for v in scaled.values())


def test_the_command_line_lists_and_checks_a_z_image_models_parts(tmp_path, tiny_z_image_dir,
                                                                    tiny_flux_dir):
    import json

    from tests.fixtures.cli_run import studio_in_process
    from tests.fixtures.tiny_split import write_comfy_split

    model = write_comfy_split_family(tiny_z_image_dir, tmp_path / "ComfyUI", "z-image")
    done = studio_in_process("models", "parts", str(model), "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["role"]: r for r in json.loads(done.stdout)["parts"]}
    assert rows["text_encoder"]["file"].endswith("qwen_3_4b.safetensors")
    assert rows["vae"]["file"].endswith("ae.safetensors")
    flux = write_comfy_split(tiny_flux_dir, tmp_path / "flux1", "flux")
    clip = flux.parents[1] / "text_encoders" / "clip_l_flux.safetensors"
    refused = studio_in_process("models", "parts", str(model), "--set", f"text_encoder={clip}")
    assert refused.returncode == 2
    assert "is a CLIP-L text encoder, which does not belong with a Z-Image model: it needs a " \
           "Qwen3 text encoder as its text_encoder" in refused.stderr


def test_flux2_devs_mistral_file_computes_the_hidden_states_flux2_reads(tmp_path):
    """ComfyUI's Mistral Small 3 file is its language model alone: loaded without the vision
    tower, it gives the hidden states the whole Mistral3 model gives for a prompt (FLUX.2 dev
    reads three of them); a file with the tower loads into the whole model."""
    import torch
    import transformers
    from safetensors.torch import load_file, save_file

    from studio.library.split_families import part_kind
    from studio.library.split_files import read_safetensors_header
    from studio.pipelines.diffusion.split_families import load_text_encoder

    config = transformers.Mistral3Config(
        text_config=dict(model_type="mistral", vocab_size=300, hidden_size=16,
                         intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                         num_key_value_heads=2, head_dim=8, max_position_embeddings=256),
        vision_config=dict(model_type="pixtral", hidden_size=16, intermediate_size=32,
                           num_hidden_layers=1, num_attention_heads=2, patch_size=14,
                           image_size=56, head_dim=8),
        image_token_index=10, spatial_merge_size=2, projector_hidden_act="gelu",
        multimodal_projector_bias=False)
    torch.manual_seed(0)
    whole = transformers.Mistral3ForConditionalGeneration(config).eval()
    whole.save_pretrained(tmp_path / "whole")
    config.save_pretrained(tmp_path / "configs" / "text_encoder")
    saved = load_file(str(tmp_path / "whole" / "model.safetensors"))
    text_only = tmp_path / "mistral_3_small_flux2_bf16.safetensors"
    save_file({k.removeprefix("language_model."): v for k, v in saved.items()
               if k.startswith("language_model.")}, str(text_only))
    assert part_kind(read_safetensors_header(text_only), text_only.name) == ("mistral3", 16)
    ids = torch.tensor([[1, 5, 7, 9, 11, 2]])
    with torch.no_grad():
        expected = whole(input_ids=ids, output_hidden_states=True).hidden_states
        for path in (text_only, tmp_path / "whole" / "model.safetensors"):
            model = load_text_encoder("mistral3", path, tmp_path / "configs",
                                      "Mistral3ForConditionalGeneration", torch.float32)
            got = model(input_ids=ids, output_hidden_states=True).hidden_states
            assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    assert type(model).__name__ == "Mistral3ForConditionalGeneration"


def test_a_text_encoder_of_another_size_takes_its_sizes_from_its_file(tmp_path, tiny_flux2_dir):
    """FLUX.2 klein 9B's Qwen3 8B is read with the 4B's shipped config: its widths, layer count
    and untied head come from the file (here: a wider, shallower Qwen3 than the tiny config)."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from studio.pipelines.diffusion.split_families import load_text_encoder

    torch.manual_seed(3)
    wider = Qwen3ForCausalLM(Qwen3Config(
        hidden_size=24, intermediate_size=40, num_hidden_layers=3, num_attention_heads=3,
        num_key_value_heads=1, head_dim=8, vocab_size=300, tie_word_embeddings=False)).eval()
    path = tmp_path / "qwen_3_8b.safetensors"
    save_file({k: v.contiguous() for k, v in wider.state_dict().items()}, str(path))
    model = load_text_encoder("qwen3", path, tiny_flux2_dir, "Qwen3ForCausalLM", torch.float32)
    assert model.config.hidden_size == 24 and model.config.num_hidden_layers == 3
    ids = torch.tensor([[1, 4, 9, 2]])
    with torch.no_grad():
        expected = wider(input_ids=ids, output_hidden_states=True).hidden_states
        got = model(input_ids=ids, output_hidden_states=True).hidden_states
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))


@pytest.mark.parametrize("family", list(FIXTURES))
def test_a_q8_gguf_diffusion_model_draws_what_its_dequantized_weights_draw(
        family, request, tmp_path, family_configs):
    from safetensors.torch import load_file, save_file

    from studio.library.kinds.image import describe
    from tests.fixtures.tiny_split import write_q8_gguf
    from tests.fixtures.tiny_split_families import flux2_to_original, z_image_to_original

    folder = request.getfixturevalue(FIXTURES[family])
    comfy = tmp_path / "ComfyUI"
    write_comfy_split_family(folder, comfy, family)
    state = load_file(str(next((folder / "transformer").glob("*.safetensors"))))
    state = {"z-image": z_image_to_original, "flux2": flux2_to_original}.get(
        family, lambda s: s)(state)
    # (klein's undistilled base says so in its name, as the tiny folder is)
    model = write_q8_gguf(state, comfy / "models" / "unet" / f"tiny-{family}-base-Q8_0.gguf",
                          family, weights_only=True)
    assert describe(model, "file").precision == "GGUF Q8_0"
    # the reference: the folder with the weights diffusers' GGUF layers dequantize to (its
    # torch dequantization rounds the block scales differently from gguf's numpy one, at 1e-4)
    import shutil

    import torch
    from diffusers.quantizers.gguf.utils import dequantize_gguf_tensor

    from studio.pipelines.diffusion.split_loading import load_split_pipeline

    pipe = load_split_pipeline(entry_for_path(model, "file"), torch.float32, default_paths())
    reference = Path(shutil.copytree(folder, tmp_path / "dequantized"))
    save_file({k: (dequantize_gguf_tensor(v) if hasattr(v, "quant_type") else v)
               .float().contiguous() for k, v in pipe.transformer.state_dict().items()},
              str(next((reference / "transformer").glob("*.safetensors"))))
    negative = {} if family == "flux2" else {"negative_prompt": "blurry fog"}
    diff = np.abs(generate(model, **negative).astype(int)
                  - generate(reference, **negative).astype(int))
    assert diff.max() <= 1


def test_a_qwen3_of_another_width_is_not_taken_for_z_images(tmp_path, tiny_z_image_dir):
    from safetensors.torch import save_file
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from studio.library.split_files import check_part

    comfy = tmp_path / "ComfyUI"
    model = write_comfy_split_family(tiny_z_image_dir, comfy, "z-image")
    wider = Qwen3ForCausalLM(Qwen3Config(
        hidden_size=24, intermediate_size=40, num_hidden_layers=1, num_attention_heads=3,
        num_key_value_heads=1, head_dim=8, vocab_size=300))
    other = comfy / "models" / "text_encoders" / "qwen_3_8b.safetensors"
    save_file({k: v.contiguous() for k, v in wider.state_dict().items()}, str(other))
    assert entry_for_path(model, "file").parts["text_encoder"].name == "qwen_3_4b.safetensors"
    with pytest.raises(UserFacingError, match="qwen_3_8b.safetensors is a Qwen3 text encoder 24 "
                       "wide, where this model's is 16 wide"):
        check_part("text_encoder", other, "z-image", model)


def test_a_flux2_dev_takes_the_mistral_file_not_the_qwen3_beside_it(tmp_path, tiny_flux2_dir):
    """FLUX.2 dev (guidance distilled into it: a guidance embedder) needs Mistral Small 3; klein
    (no guidance embedder) a Qwen3 — both files may sit in one text_encoders folder."""
    import torch
    from diffusers import Flux2Transformer2DModel
    from safetensors.torch import save_file
    from transformers import MistralConfig, MistralForCausalLM

    from tests.fixtures.tiny_split_families import flux2_to_original

    comfy = tmp_path / "ComfyUI"
    write_comfy_split_family(tiny_flux2_dir, comfy, "flux2")  # klein, its Qwen3 and the VAE
    torch.manual_seed(0)
    dev = Flux2Transformer2DModel(
        patch_size=1, in_channels=128, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4), guidance_embeds=True)
    models = comfy / "models"
    dev_file = models / "diffusion_models" / "flux2_dev_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in flux2_to_original(dev.state_dict()).items()},
              str(dev_file))
    mistral = MistralForCausalLM(MistralConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, vocab_size=300))
    save_file({k: v.contiguous() for k, v in mistral.state_dict().items()},
              str(models / "text_encoders" / "mistral_3_small_flux2_bf16.safetensors"))
    dev_entry = entry_for_path(dev_file, "file")
    klein_entry = entry_for_path(models / "diffusion_models" / "flux-2-klein-base-4b.safetensors",
                                 "file")
    assert dev_entry.family == klein_entry.family == "flux2" and not dev_entry.needs
    assert dev_entry.parts["text_encoder"].name == "mistral_3_small_flux2_bf16.safetensors"
    assert klein_entry.parts["text_encoder"].name == "qwen_3_4b.safetensors"
    assert dev_entry.parts["vae"] == klein_entry.parts["vae"]
