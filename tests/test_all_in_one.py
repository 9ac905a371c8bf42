"""All-in-one FLUX.1 / SD 3.5 checkpoints and Chroma split files (issue 15, "Sources"): the one
file that carries its text encoders and VAE is listed as one ready model and draws bit for bit
what the diffusers folder with the same weights draws; a part it lacks is asked for alone;
Chroma's transformer with a T5 and FLUX's ae beside it works like FLUX's split files."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import UserFacingError
from studio.library.models import entry_for_path, find_txt2img_models
from tests.fixtures.tiny_allinone import round_t5_to_fp8, write_all_in_one, write_chroma_split
from tests.fixtures.tiny_models import write_tiny_config_folder
from tests.test_split_files import generate


@pytest.fixture
def configs(tmp_path, tiny_flux_dir, tiny_sd3_dir, tiny_chroma_dir, monkeypatch):
    """The tiny families' config folders (with their T5 tokenizers), as the shipped ones are."""
    root = tmp_path / "configs"
    write_tiny_config_folder(tiny_flux_dir, root / "flux")
    write_tiny_config_folder(tiny_sd3_dir, root / "sd3")
    write_tiny_config_folder(tiny_chroma_dir, root / "chroma")
    monkeypatch.setenv("STUDIO_SINGLE_FILE_CONFIG_DIR", str(root))
    return root


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_an_all_in_one_file_is_one_ready_model_that_draws_what_the_folder_draws(
        family, request, tmp_path, configs):
    folder = request.getfixturevalue(f"tiny_{family}_dir")
    comfy = tmp_path / "ComfyUI"
    model = write_all_in_one(folder, comfy / "models" / "checkpoints" / f"{family}-aio.safetensors",
                             family)
    settings = Settings(extra_model_dirs=[str(comfy)])
    (entry,) = find_txt2img_models(settings, default_paths())
    assert entry.path == model and entry.family == family and not entry.needs
    roles = {"flux": {"clip_l", "t5xxl", "vae"}, "sd3": {"clip_l", "clip_g", "vae"}}[family]
    assert entry.parts == {role: model for role in roles}
    cfg = {"flux": 3.5, "sd3": 4.5}[family]
    assert np.array_equal(generate(model, cfg=cfg), generate(folder, cfg=cfg))


def test_chroma_split_files_draw_what_the_folder_draws(tmp_path, tiny_chroma_dir, configs):
    comfy = tmp_path / "ComfyUI"
    model = write_chroma_split(tiny_chroma_dir, comfy)
    settings = Settings(extra_model_dirs=[str(comfy)])
    (entry,) = [m for m in find_txt2img_models(settings, default_paths()) if m.format == "split"]
    assert entry.path == model and entry.family == "chroma" and not entry.needs
    assert set(entry.parts) == {"t5xxl", "vae"}
    assert np.array_equal(generate(model, cfg=4.0), generate(tiny_chroma_dir, cfg=4.0))


def test_chroma_is_told_from_flux_by_its_keys(tmp_path, tiny_chroma_dir, tiny_flux_dir):
    from studio.library.detect import read_safetensors_header
    from studio.library.split_files import denoiser_family
    from tests.fixtures.tiny_split import write_comfy_split

    chroma = write_chroma_split(tiny_chroma_dir, tmp_path / "a")
    flux = write_comfy_split(tiny_flux_dir, tmp_path / "b", "flux")
    headers = {p: read_safetensors_header(p) for p in (chroma, flux)}
    assert not any(k.startswith("guidance_in.") for k in headers[chroma])
    assert [denoiser_family(headers[p]) for p in (chroma, flux)] == ["chroma", "flux"]


def test_a_chroma_transformer_with_an_sdxl_vae_is_refused_naming_the_part(
        tmp_path, tiny_chroma_dir, tiny_sd15_dir, configs):
    from safetensors.torch import load_file, save_file

    from studio.pipelines.diffusion.loading import load_txt2img_pipeline
    from tests.fixtures.tiny_models import _vae_to_ldm

    comfy = tmp_path / "ComfyUI"
    model = write_chroma_split(tiny_chroma_dir, comfy, vae=False)
    sd_vae = load_file(str(next((tiny_sd15_dir / "vae").glob("*.safetensors"))))
    ae = comfy / "models" / "vae" / "sdxl_vae.safetensors"
    ae.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in _vae_to_ldm(sd_vae, 4).items()}, str(ae))
    entry = entry_for_path(model, "file")
    assert "needs vae in" in entry.needs  # a 4-channel VAE is not taken for Chroma's
    entry.parts["vae"], entry.needs = ae, ""  # as if the user had chosen it
    with pytest.raises(UserFacingError,
                       match="sdxl_vae.safetensors is a 4-channel VAE .* Chroma model"):
        load_txt2img_pipeline(entry, "cpu", None)


def test_an_all_in_one_without_its_t5_asks_for_that_part_alone(tmp_path, tiny_flux_dir,
                                                               configs):
    from studio.library.kinds.image import describe
    from studio.library.models import resolve_model
    from tests.fixtures.tiny_split import write_comfy_split

    comfy = tmp_path / "ComfyUI"
    model = write_all_in_one(tiny_flux_dir, comfy / "models" / "checkpoints" / "flux.safetensors",
                             "flux", t5=False)
    entry = entry_for_path(model, "file")
    assert entry.parts == {"clip_l": model, "vae": model}
    assert entry.needs.startswith("needs t5xxl in")
    shown = describe(model, "file")
    assert "inside the file" in shown.detail and "needs t5xxl in" in shown.detail
    from studio.ui.widgets.model_picker import secondary_text  # Generate's model picker

    assert secondary_text(entry).startswith("FLUX.1 · all-in-one · parts missing")
    with pytest.raises(UserFacingError, match="carries its CLIP-L text encoder, 16-channel VAE "
                                              r".* needs t5xxl in"):
        generate(model, cfg=3.5)
    # the T5 from a split set, chosen for this file alone: the other parts stay the file's own
    write_comfy_split(tiny_flux_dir, tmp_path / "other", "flux")
    t5 = tmp_path / "other" / "models" / "text_encoders" / "t5xxl_fp16.safetensors"
    settings = Settings().with_part(model, "t5xxl", t5)
    picked = resolve_model(str(model), settings, default_paths())
    assert picked.parts == {"clip_l": model, "t5xxl": t5, "vae": model} and not picked.needs
    from studio.pipelines.diffusion.loading import load_txt2img_pipeline

    pipe = load_txt2img_pipeline(picked, "cpu", None)
    assert pipe.text_encoder_2 is not None


def test_an_sd35_file_without_clip_l_projection_uses_the_identity(tmp_path, tiny_sd3_dir,
                                                                  configs):
    import torch
    from safetensors.torch import save_file

    from studio.pipelines.diffusion.loading import load_txt2img_pipeline
    from tests.fixtures.tiny_allinone import all_in_one_state

    state = all_in_one_state(tiny_sd3_dir, "sd3")
    kept = state.pop("text_encoders.clip_l.transformer.text_projection.weight")
    assert "text_encoders.clip_g.transformer.text_projection.weight" in state
    path = tmp_path / "sd3.5_medium.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    pipe = load_txt2img_pipeline(entry_for_path(path, "file"), "cpu", None)
    projection = pipe.text_encoder.text_projection.weight
    assert torch.equal(projection, torch.eye(*kept.shape))
    assert not torch.equal(pipe.text_encoder_2.text_projection.weight, torch.eye(32))


def test_an_fp8_all_in_one_keeps_fp8_parts_fp8(tmp_path, tiny_flux_dir, configs):
    import torch

    from studio.library.kinds.image import describe
    from studio.pipelines.diffusion.loading import load_txt2img_pipeline
    from tests.fixtures.tiny_split import round_to_fp8

    rounded = round_to_fp8(tiny_flux_dir, tmp_path / "rounded")
    round_t5_to_fp8(rounded)  # what the file's transformer and T5 compute with
    model = write_all_in_one(rounded, tmp_path / "flux1-dev-fp8.safetensors", "flux", fp8=True)
    shown = describe(model, "file")
    assert shown.precision.startswith("fp8") and "all-in-one" in shown.detail
    pipe = load_txt2img_pipeline(entry_for_path(model, "file"), "cpu", torch.float32)
    assert pipe.transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    assert pipe.text_encoder_2.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == \
        torch.float8_e4m3fn  # the T5 was stored in fp8 too
    assert pipe.text_encoder.final_layer_norm.weight.dtype == torch.float32
    # layer-wise casting computes with the same weights; its per-call copies change float
    # rounding at the 1e-7 level: the images agree within one level of 255 (as for split files)
    diff = np.abs(generate(model, cfg=3.5).astype(int) - generate(rounded, cfg=3.5).astype(int))
    assert diff.max() <= 1


def test_the_planner_counts_each_part_of_the_one_file_once(tmp_path, tiny_flux_dir):
    from studio.pipelines.diffusion.planner import components_of, tensor_bytes
    from tests.fixtures.tiny_split import write_comfy_split

    model = write_all_in_one(tiny_flux_dir, tmp_path / "flux.safetensors", "flux")
    split = write_comfy_split(tiny_flux_dir, tmp_path / "ComfyUI", "flux")
    one = {c.key: c for c in components_of(entry_for_path(model, "file"), 2)}
    parts = {c.key: c for c in components_of(entry_for_path(split, "file"), 2)}
    assert {k: c.bytes for k, c in one.items()} == {k: c.bytes for k, c in parts.items()}
    assert one["text_encoder_2"].label == "the T5 encoder"
    assert sum(c.bytes for c in one.values()) == tensor_bytes([model], 2)


def test_the_parts_command_says_which_parts_are_inside_the_file(tmp_path, tiny_flux_dir):
    import json

    from tests.fixtures.cli_run import studio_in_process

    model = write_all_in_one(tiny_flux_dir, tmp_path / "flux.safetensors", "flux", t5=False)
    done = studio_in_process("models", "parts", str(model), "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["role"]: r for r in json.loads(done.stdout)["parts"]}
    assert rows["clip_l"]["inside"] and rows["vae"]["inside"]
    assert not rows["t5xxl"]["inside"] and rows["t5xxl"]["file"] == ""
    done = studio_in_process("models", "parts", str(model))
    assert "inside the file" in done.stdout and "missing" in done.stdout


def test_real_chroma_shapes_read_from_the_file_match_the_shipped_config():
    import json

    from accelerate import init_empty_weights
    from diffusers import ChromaTransformer2DModel
    from diffusers.loaders.single_file_utils import (
        convert_chroma_transformer_checkpoint_to_diffusers,
    )

    from studio.library.single_file_configs import CONFIGS_DIR
    from studio.pipelines.diffusion.all_in_one_loading import chroma_overrides
    from tests.fixtures.tiny_allinone import chroma_to_original

    config = json.loads((CONFIGS_DIR / "chroma" / "transformer" / "config.json").read_text())
    with init_empty_weights():
        model = ChromaTransformer2DModel.from_config(config)
    original = chroma_to_original(model.state_dict())
    header = {k: {"shape": list(v.shape)} for k, v in original.items()}
    overrides = chroma_overrides(header)
    assert overrides == {k: config[k] for k in overrides}
    # at Chroma's real width diffusers' own converter reads the file and finds every weight
    assert set(convert_chroma_transformer_checkpoint_to_diffusers(original)) == \
        set(model.state_dict())


def test_an_sd35_file_with_its_t5_inside_draws_what_the_folder_draws(tmp_path, tiny_sd3_dir,
                                                                     monkeypatch):
    from tests.fixtures.tiny_allinone import build_tiny_sd3_with_t5

    folder = build_tiny_sd3_with_t5(tiny_sd3_dir, tmp_path / "sd3-t5")
    write_tiny_config_folder(folder, tmp_path / "configs" / "sd3")
    monkeypatch.setenv("STUDIO_SINGLE_FILE_CONFIG_DIR", str(tmp_path / "configs"))
    model = write_all_in_one(folder, tmp_path / "sd3.5_large.safetensors", "sd3")
    entry = entry_for_path(model, "file")
    assert set(entry.parts) == {"clip_l", "clip_g", "t5xxl", "vae"} and not entry.needs
    assert np.array_equal(generate(model, cfg=4.5), generate(folder, cfg=4.5))


def test_a_q8_gguf_chroma_draws_what_its_dequantized_weights_draw(tmp_path, tiny_chroma_dir,
                                                                 configs):
    from studio.library.kinds.image import describe
    from tests.fixtures.tiny_allinone import write_chroma_gguf
    from tests.fixtures.tiny_split import q8_round_trip

    comfy = tmp_path / "ComfyUI"
    write_chroma_split(tiny_chroma_dir, comfy)
    model = write_chroma_gguf(tiny_chroma_dir, comfy / "models" / "unet" / "chroma-Q8_0.gguf")
    entry = describe(model, "file")
    assert entry.family == "chroma" and entry.precision == "GGUF Q8_0"
    reference = q8_round_trip(tiny_chroma_dir, tmp_path / "dequantized")
    diff = np.abs(generate(model, cfg=4.0).astype(int) - generate(reference, cfg=4.0).astype(int))
    assert diff.max() <= 1  # Q8_0 blocks dequantized in torch as they run (as for FLUX's)


def test_the_models_parts_box_shows_the_parts_inside_and_offers_only_the_missing_one(
        qtbot, tmp_path, tiny_flux_dir):
    from studio.library.split_files import find_parts
    from studio.ui.panels.models.parts import SplitPartsBox

    model = write_all_in_one(tiny_flux_dir, tmp_path / "flux.safetensors", "flux", t5=False)
    box = SplitPartsBox()
    qtbot.addWidget(box)
    box.show_parts(model, find_parts(model, "flux"), {})
    assert box.boxes["clip_l"].itemText(0) == "Automatic (inside this file)"
    assert box.boxes["clip_l"].count() == 1  # nothing else to pick: the file carries it
    assert box.boxes["t5xxl"].itemText(0) == "Missing"
    assert box.note.text().startswith("Missing: T5-XXL.")


def test_a_split_fp8_t5_stays_fp8_and_runs(tmp_path, tiny_flux_dir, configs):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from studio.pipelines.diffusion.loading import load_txt2img_pipeline
    from tests.fixtures.tiny_split import write_comfy_split

    reference = round_t5_to_fp8(shutil.copytree(tiny_flux_dir, tmp_path / "rounded"))
    model = write_comfy_split(reference, tmp_path / "ComfyUI", "flux")
    t5 = tmp_path / "ComfyUI" / "models" / "text_encoders" / "t5xxl_fp16.safetensors"
    fp8 = t5.with_name("t5xxl_fp8_e4m3fn.safetensors")
    save_file({k: v.to(torch.float8_e4m3fn) for k, v in load_file(str(t5)).items()}, str(fp8))
    t5.unlink()
    pipe = load_txt2img_pipeline(entry_for_path(model, "file"), "cpu", torch.float32)
    assert pipe.text_encoder_2.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == \
        torch.float8_e4m3fn
    diff = np.abs(generate(model, cfg=3.5).astype(int) - generate(reference, cfg=3.5).astype(int))
    assert diff.max() <= 1


@pytest.mark.parametrize("family,parts", [("flux", ("transformer", "text_encoder_2")),
                                          ("sd3", ("transformer",))])
def test_the_planner_estimate_of_an_fp8_file_is_the_memory_its_loaded_parts_take(
        family, parts, request, tmp_path, configs):
    """Layer-wise casting keeps fp8 weights in fp8, but leaves modulation, norms, embeddings
    and T5's wo in the compute precision: the estimate counts them so, byte for byte."""
    import torch

    from studio.pipelines.diffusion.loading import load_txt2img_pipeline
    from studio.pipelines.diffusion.planner import components_of

    folder = request.getfixturevalue(f"tiny_{family}_dir")
    model = write_all_in_one(folder, tmp_path / f"{family}-fp8.safetensors", family, fp8=True)
    entry = entry_for_path(model, "file")
    estimate = {c.key: c.bytes for c in components_of(entry, 4)}
    pipe = load_txt2img_pipeline(entry, "cpu", torch.float32)
    for key in parts:
        module = getattr(pipe, key)
        held = [*module.parameters(), *module.buffers()]
        assert any(t.dtype == torch.float8_e4m3fn for t in held)
        assert estimate[key] == sum(t.numel() * t.element_size() for t in held), key
