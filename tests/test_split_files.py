"""ComfyUI split files (issue 15): a FLUX.1 / SD 3.5 diffusion-model file in
models/diffusion_models with its text encoders and VAE in their own folders is listed as one image
model with its parts, assembled offline into one pipeline that draws bit for bit what the diffusers
folder with the same weights draws, and a missing or mismatched part is a sentence."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.library.models import entry_for_path, find_txt2img_models
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink
from tests.fixtures.tiny_models import write_tiny_config_folder
from tests.fixtures.tiny_split import write_comfy_split


@pytest.fixture
def split_configs(tmp_path, tiny_flux_dir, tiny_sd3_dir, monkeypatch):
    """The tiny families' config folders (with FLUX's T5 tokenizer), as the shipped ones are."""
    root = tmp_path / "configs"
    write_tiny_config_folder(tiny_flux_dir, root / "flux")
    write_tiny_config_folder(tiny_sd3_dir, root / "sd3")
    monkeypatch.setenv("STUDIO_SINGLE_FILE_CONFIG_DIR", str(root))
    return root


def generate(model, **kw):
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    req = Txt2ImgRequest(model=str(model), prompt="a lighthouse at dusk", steps=2, width=64,
                         height=64, seed=5, count=1, **kw)
    (result,) = Txt2ImgService(lambda: settings, default_paths).run(req, RecordingSink(),
                                                                      CancelToken())
    return np.asarray(result.image)


@pytest.mark.parametrize("family,prefix", [("flux", "model.diffusion_model."), ("sd3", "")])
def test_split_files_draw_what_the_folder_draws(family, prefix, request, tmp_path,
                                                split_configs):
    folder = request.getfixturevalue(f"tiny_{family}_dir")
    comfy = tmp_path / "ComfyUI"
    model = write_comfy_split(folder, comfy, family, prefix=prefix)
    settings = Settings(extra_model_dirs=[str(comfy)])
    (entry,) = [m for m in find_txt2img_models(settings, default_paths()) if m.format == "split"]
    assert entry.path == model and entry.family == family and not entry.needs
    roles = {"flux": {"clip_l", "t5xxl", "vae"}, "sd3": {"clip_l", "clip_g", "vae"}}[family]
    assert set(entry.parts) == roles
    cfg = {"flux": 3.5, "sd3": 4.5}[family]
    assert np.array_equal(generate(model, cfg=cfg), generate(folder, cfg=cfg))


def test_an_fp8_transformer_stays_fp8_and_draws_what_its_upcast_weights_draw(
        tmp_path, tiny_flux_dir, split_configs):
    import torch

    from studio.library.kinds.image import describe
    from studio.pipelines.diffusion.split_loading import load_split_pipeline
    from tests.fixtures.tiny_split import round_to_fp8

    rounded = round_to_fp8(tiny_flux_dir, tmp_path / "rounded")
    model = write_comfy_split(rounded, tmp_path / "ComfyUI", "flux", fp8=True)
    entry = describe(model, "file")
    assert entry.precision.startswith("fp8")
    pipe = load_split_pipeline(entry_for_path(model, "file"), torch.float32, default_paths())
    linear = pipe.transformer.transformer_blocks[0].attn.to_q
    assert linear.weight.dtype == torch.float8_e4m3fn  # kept in fp8 between calls
    # layer-wise casting computes with the same weights, but its per-call copies change float
    # rounding at the 1e-7 level: the images agree within one level of 255
    diff = np.abs(generate(model, cfg=3.5).astype(int) - generate(rounded, cfg=3.5).astype(int))
    assert diff.max() <= 1


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_a_q8_gguf_transformer_draws_what_its_dequantized_weights_draw(
        family, request, tmp_path, split_configs):
    from studio.library.kinds.image import describe
    from tests.fixtures.tiny_split import q8_round_trip, write_gguf_transformer

    folder = request.getfixturevalue(f"tiny_{family}_dir")
    comfy = tmp_path / "ComfyUI"
    write_comfy_split(folder, comfy, family)
    model = write_gguf_transformer(folder, comfy / "models" / "unet" / f"tiny-{family}-Q8_0.gguf",
                                   family)
    entry = describe(model, "file")
    assert entry.precision == "GGUF Q8_0" and "GGUF Q8_0 quantized" in entry.detail
    reference = q8_round_trip(folder, tmp_path / "dequantized")
    # GGUF layers dequantize Q8_0 blocks in torch as they run: the same values as the
    # reference's, up to the float rounding of the scale multiply
    cfg = {"flux": 3.5, "sd3": 4.5}[family]
    diff = np.abs(generate(model, cfg=cfg).astype(int) - generate(reference, cfg=cfg).astype(int))
    assert diff.max() <= 1


def test_a_gguf_of_another_architecture_is_named(tmp_path):
    import gguf
    import numpy as np

    from studio.library.models import resolve_model

    path = tmp_path / "llama.gguf"
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    for write in (writer.write_header_to_file, writer.write_kv_data_to_file,
                  writer.write_tensors_to_file, writer.close):
        write()
    assert entry_for_path(path, "file") is None
    with pytest.raises(UserFacingError, match=r"architecture \(llama\) is not a diffusion model"):
        resolve_model(str(path), Settings(), default_paths())
    path.write_bytes(b"GGUF" + b"\xff" * 40)
    with pytest.raises(UserFacingError, match="not a readable GGUF file"):
        entry_for_path(path, "file")


def test_a_missing_part_is_listed_and_named_when_loading(tmp_path, tiny_flux_dir, split_configs):
    from studio.library.kinds.image import describe

    model = write_comfy_split(tiny_flux_dir, tmp_path / "ComfyUI", "flux")
    (tmp_path / "ComfyUI" / "models" / "text_encoders" / "t5xxl_fp16.safetensors").unlink()
    entry = describe(model, "file")
    assert "needs t5xxl in" in entry.detail and "text_encoders" in entry.detail
    from studio.ui.widgets.model_picker import secondary_text  # Generate's model picker

    picked = entry_for_path(model, "file")
    assert secondary_text(picked).startswith("FLUX.1 · split files · parts missing")
    with pytest.raises(UserFacingError, match="needs t5xxl in .*text_encoders"):
        generate(model, cfg=3.5)


def test_a_part_of_another_family_is_refused_with_its_name(tmp_path, tiny_flux_dir,
                                                           tiny_sd15_dir, split_configs):
    from safetensors.torch import load_file, save_file

    from tests.fixtures.tiny_models import _vae_to_ldm

    model = write_comfy_split(tiny_flux_dir, tmp_path / "ComfyUI", "flux")
    sd_vae = load_file(str(next((tiny_sd15_dir / "vae").glob("*.safetensors"))))
    ae = tmp_path / "ComfyUI" / "models" / "vae" / "ae.safetensors"
    save_file({k: v.contiguous() for k, v in _vae_to_ldm(sd_vae, 4).items()}, str(ae))
    entry = entry_for_path(model, "file")
    assert "vae" not in entry.parts and "needs vae in" in entry.needs
    entry.parts["vae"], entry.needs = ae, ""  # as if the user had chosen it
    from studio.pipelines.diffusion.split_loading import load_split_pipeline

    with pytest.raises(UserFacingError, match="ae.safetensors is a 4-channel VAE .* FLUX.1"):
        load_split_pipeline(entry, None, default_paths())


def test_the_t5_tokenizer_missing_offline_names_the_download(tmp_path, monkeypatch):
    from studio.pipelines.diffusion import split_loading

    monkeypatch.setattr("studio.library.hf_cache.hf_cache_repos", lambda: [])
    with pytest.raises(UserFacingError, match="hf download black-forest-labs/FLUX.1-schnell"):
        split_loading.find_t5_tokenizer(tmp_path, "tokenizer_2")


def _meta_original(cls, config: dict, to_original) -> tuple[set, dict, dict]:
    """A real-size transformer built on the meta device (no memory): its diffusers keys, its
    state in the original layout, and that state's header of shapes."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls.from_config(config)
    original = to_original(model.state_dict())
    header = {k: {"shape": list(v.shape)} for k, v in original.items()}
    return set(model.state_dict()), original, header


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_real_flux_shapes_read_from_the_file_match_the_shipped_config(variant):
    import json

    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from studio.library.single_file_configs import CONFIGS_DIR
    from studio.pipelines.diffusion.split_loading import transformer_overrides
    from tests.fixtures.tiny_split import flux_to_original

    config = json.loads((CONFIGS_DIR / "flux" / "transformer" / "config.json").read_text())
    config["guidance_embeds"] = variant == "dev"
    keys, original, header = _meta_original(FluxTransformer2DModel, config, flux_to_original)
    overrides = transformer_overrides(header, "flux", config)
    assert overrides == {k: config[k] for k in overrides}
    # at FLUX.1's width diffusers' own converter reads the file and finds every weight
    assert set(convert_flux_transformer_checkpoint_to_diffusers(original)) == keys


@pytest.mark.parametrize("variant", ["large", "medium"])
def test_real_sd3_shapes_read_from_the_file_match_the_shipped_config(variant, monkeypatch):
    import json

    import torch
    from diffusers import SD3Transformer2DModel

    from studio.library.single_file_configs import CONFIGS_DIR
    from studio.pipelines.diffusion.split_loading import transformer_overrides
    from tests.fixtures.tiny_split import sd3_to_original

    # the sine position table of a real size is computed (seconds); its shape is all we need
    monkeypatch.setattr("diffusers.models.embeddings.get_2d_sincos_pos_embed",
                        lambda dim, grid, **kw: torch.empty(grid * grid, dim, device="meta"))
    config = json.loads((CONFIGS_DIR / "sd35" / "transformer" / "config.json").read_text())
    if variant == "medium":
        config.update(num_layers=24, num_attention_heads=24, caption_projection_dim=1536,
                      pos_embed_max_size=384, dual_attention_layers=tuple(range(13)))
    _, _, header = _meta_original(SD3Transformer2DModel, config, sd3_to_original)
    overrides = transformer_overrides(header, "sd3", config)
    assert overrides == {k: (tuple(v) if isinstance(v, list) else v)
                         for k, v in config.items() if k in overrides}


def test_a_part_chosen_on_the_command_line_is_the_one_used(tmp_path, tiny_flux_dir):
    import json
    import shutil

    from studio.core.config import load_settings
    from studio.library.models import resolve_model
    from tests.fixtures.cli_run import studio_in_process

    model = write_comfy_split(tiny_flux_dir, tmp_path / "ComfyUI", "flux")
    encoders = tmp_path / "ComfyUI" / "models" / "text_encoders"
    other = shutil.copyfile(encoders / "t5xxl_fp16.safetensors", tmp_path / "my-t5.safetensors")
    done = studio_in_process("models", "parts", str(model), "--set", f"t5xxl={other}", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["role"]: r for r in json.loads(done.stdout)["parts"]}
    assert rows["t5xxl"]["file"] == str(other) and rows["t5xxl"]["chosen_by"] == "you"
    assert rows["vae"]["file"].endswith("ae.safetensors") and rows["vae"]["chosen_by"] == "Studio"
    settings = load_settings().settings
    assert resolve_model(str(model), settings, default_paths()).parts["t5xxl"] == other
    # a file that is not that part is refused with the reason, and nothing is saved
    refused = studio_in_process("models", "parts", str(model), "--set",
                                f"vae={encoders / 't5xxl_fp16.safetensors'}")
    assert refused.returncode == 2 and "is a T5 text encoder" in refused.stderr
    done = studio_in_process("models", "parts", str(model), "--guess", "t5xxl")
    assert done.returncode == 0 and "my-t5" not in done.stdout
    assert not load_settings().settings.split_parts
