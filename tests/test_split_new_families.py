"""ComfyUI split files of Qwen-Image, Z-Image and FLUX.2 (issue 15, "Sources" and "Bad input"):
a diffusion-model file in models/diffusion_models with its language-model text encoder and its
VAE in their own folders is listed as one image model with its parts, assembled offline through
the user's path (library scan → request) and draws bit for bit what the diffusers folder with
the same weights draws; a part that does not belong is one sentence naming it."""

from __future__ import annotations

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
