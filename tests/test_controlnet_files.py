"""Single-file ControlNets (issue 14) as people download them — A1111 / ComfyUI's original layout
as ``.safetensors`` and ``.pth`` (with and without ``control_model.``) and the diffusers layout
in one file — are found by the library, named by their file, typed by their name, loaded offline
through the user's path and give the image of the diffusers folder bit for bit; a pickle that
needs code is refused; and "Unload all" releases the loaded ControlNets."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.library import controlnets as lib
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink as Sink
from tests.fixtures.tiny_controlnet import build_tiny_controlnet, to_original_layout, write_drawing
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401


@pytest.fixture
def files(tiny_sd15_dir, tmp_path, monkeypatch):
    """The tiny ControlNet's folder (outside the library) and its single files in the library's
    controlnet folder; the tiny architecture stands in for SD 1.x's shipped config."""
    import torch
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    folder = build_tiny_controlnet(tiny_sd15_dir / "unet", tmp_path / "tiny-cn-folder", 3)
    monkeypatch.setitem(lib.SINGLE_FILE_CONFIGS, "sd1", folder)
    state = {k: v.contiguous() for k, v in ControlNetModel.from_pretrained(str(folder))
             .state_dict().items()}
    own = lib.controlnet_folder(default_paths())
    own.mkdir(parents=True)
    out = {"folder": folder, "canny": own / "control_v11p_sd15_canny.safetensors",
           "scribble": own / "control_sd15_scribble.pth",
           "diffusers": own / "tiny_diffusers_layout.safetensors"}
    save_file(to_original_layout(state, 1), str(out["canny"]))
    torch.save(to_original_layout(state, 1, prefix="control_model."), str(out["scribble"]))
    save_file(state, str(out["diffusers"]))
    return out


@pytest.fixture
def drawing(tmp_path):
    return write_drawing(tmp_path)


def _request(model, spec, drawing):
    unit = {"model": str(spec), "image": str(drawing), "preprocess": "invert", "weight": 0.9}
    return Txt2ImgRequest(model=str(model), prompt="a cat", steps=3, cfg=6.0, width=32,
                          height=24, seed=5, controlnets=[unit])


def test_the_library_finds_single_files_names_and_types_them(files):
    from studio.library.catalog import list_models

    found = {e.name: e for e in lib.find_controlnets(Settings(), default_paths())}
    assert set(found) == {"control_v11p_sd15_canny", "control_sd15_scribble",
                          "tiny_diffusers_layout"}
    canny, scribble = found["control_v11p_sd15_canny"], found["control_sd15_scribble"]
    assert (canny.family, canny.control_type, canny.preprocessor) == ("sd1", "canny", "canny")
    assert (scribble.family, scribble.control_type, scribble.preprocessor) == \
        ("sd1", "scribble", "invert")
    assert found["tiny_diffusers_layout"].family == ""  # 32-wide: it fits the model it meets
    listed = {e.name: e for e in list_models(Settings(), default_paths())}
    assert listed["control_sd15_scribble"].kind == "controlnet"
    assert listed["control_sd15_scribble"].format == "pth"
    assert "(canny)" in listed["control_v11p_sd15_canny"].detail


@pytest.mark.parametrize("name,expected", [
    ("control_v11f1p_sd15_depth.pth", "depth"), ("diffusers_xl_canny_full.safetensors", "canny"),
    ("control_v11p_sd15_openpose", "openpose"), ("t2i-adapter_xl_sketch", "scribble"),
    ("control_v11p_sd15_softedge", "softedge"), ("control_v11f1e_sd15_tile", "tile"),
    ("control_v11p_sd15_inpaint.safetensors", "inpaint"), ("mystery", "")])
def test_the_control_type_comes_from_the_name(name, expected):
    assert lib.control_type(name) == expected


def test_single_files_equal_the_diffusers_folder_bit_for_bit(tiny_sd15_dir, files, drawing):
    service = Txt2ImgService(lambda: Settings(preview_mode="fast", device="cpu"), default_paths)
    [reference] = service.run(_request(tiny_sd15_dir, files["folder"], drawing), Sink(),
                              CancelToken())
    for key in ("canny", "scribble", "diffusers"):
        [result] = service.run(_request(tiny_sd15_dir, files[key].stem, drawing), Sink(),
                               CancelToken())
        assert np.array_equal(np.asarray(result.image), np.asarray(reference.image)), key
        assert f"Model: {files[key].stem}," in result.parameters

    # the status bar's "Unload all" releases them with every other model
    from studio.pipelines.model_cache import memory_report, unload_all_models

    assert "controlnet" in {m.kind for m in memory_report()}
    loads = service.controlnet_cache.cache.loads
    unload_all_models()
    assert service.controlnet_cache.cache.loaded_keys() == []
    assert "controlnet" not in {m.kind for m in memory_report()}
    service.run(_request(tiny_sd15_dir, "control_sd15_scribble", drawing), Sink(), CancelToken())
    assert service.controlnet_cache.cache.loads == loads + 1  # read again from disk


def test_a_pickle_that_needs_code_is_refused_with_a_sentence(tiny_sd15_dir, files, drawing):
    import torch

    bad = files["scribble"].with_name("control_sd15_lineart.pth")
    torch.save({"input_hint_block.0.weight": torch.zeros(1), "args": argparse.Namespace()},
               str(bad))
    service = Txt2ImgService(lambda: Settings(preview_mode="fast", device="cpu"), default_paths)
    with pytest.raises(UserFacingError, match="refused for safety"):
        service.run(_request(tiny_sd15_dir, bad, drawing), Sink(), CancelToken())


def test_the_shipped_configs_build_the_real_architectures():
    """Parameter counts of lllyasviel/control_v11p_sd15_canny, thibaud/controlnet-sd21 and
    diffusers/controlnet-canny-sdxl-1.0 (nothing is allocated)."""
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel

    counts = {}
    for family, folder in lib.SINGLE_FILE_CONFIGS.items():
        with init_empty_weights():
            model = ControlNetModel.from_config(ControlNetModel.load_config(str(folder)))
        counts[family] = sum(p.numel() for p in model.parameters())
    assert counts == {"sd1": 361_279_120, "sd2": 364_228_240, "sdxl": 1_251_014_160}


def test_picking_a_controlnet_preselects_the_preprocessor_its_name_asks_for(qtbot):
    from studio.ui.panels.generate.controlnet import ControlNetSection

    group = ControlNetSection()
    qtbot.addWidget(group)
    group.set_models([("control_v11p_sd15_canny", "sd1", "canny"),
                      ("control_v11f1p_sd15_depth", "sd1", "none"),
                      ("control_sd15_scribble", "", "invert"),
                      ("t2iadapter_sketch_sd15v2", "sd1", "invert", "T2I-Adapter")])
    assert "control_v11p_sd15_canny.pth" in group.empty.text() or not group.empty.isVisible()
    group.enabled.setChecked(True)  # the new unit takes the first ControlNet and its map
    row = group.rows[0]
    assert row.preprocess.currentData() == "canny"
    row.model.setCurrentIndex(2)
    row.model.activated.emit(2)  # the user picks the scribble ControlNet
    assert row.preprocess.currentData() == "invert"
    assert row.model.itemText(3) == "t2iadapter_sketch_sd15v2 (SD 1.x, T2I-Adapter)"
    assert row.model.itemText(2) == "control_sd15_scribble"
    row.preprocess.setCurrentIndex(row.preprocess.findData("none"))  # the user's choice stays
    group.set_models(group._models)
    assert row.preprocess.currentData() == "none"


def test_an_sdxl_file_is_known_by_its_width_and_a_misfit_gets_a_sentence(tiny_sd15_dir,
                                                                         drawing):
    import torch
    from safetensors.torch import save_file

    own = lib.controlnet_folder(default_paths())
    own.mkdir(parents=True)
    xl = own / "diffusers_xl_depth_full.safetensors"
    save_file({"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 3, 3, 3),
               "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight":
                   torch.zeros(4, 2048)}, str(xl))
    entry = lib.resolve_controlnet("diffusers_xl_depth_full", Settings(), default_paths())
    # depth: the depth preprocessor (greyed out and not preselected while its model is missing)
    assert (entry.family, entry.control_type, entry.preprocessor) == ("sdxl", "depth", "depth")
    # an SD 1.x file that does not fit the shipped SD 1.x layout: refused, not a traceback
    odd = own / "control_odd_sd15.safetensors"
    save_file({"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 3, 3, 3)}, str(odd))
    service = Txt2ImgService(lambda: Settings(preview_mode="fast", device="cpu"), default_paths)
    with pytest.raises(UserFacingError, match="control_odd_sd15"):
        service.run(_request(tiny_sd15_dir, "control_odd_sd15", drawing), Sink(), CancelToken())


def test_single_files_downloaded_into_the_hf_cache_are_found(files, tmp_path, monkeypatch):
    from tests.fixtures.hub_cache import add_to_hub_cache

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    loose = tmp_path / "download"
    loose.mkdir()
    files["canny"].rename(loose / "control_v11p_sd15_canny.safetensors")
    (loose / "README.md").write_text("ControlNet 1.1", encoding="utf-8")
    snap = add_to_hub_cache(tmp_path / "hf", "lllyasviel/ControlNet-v1-1", loose)
    found = {e.name: e for e in lib.find_controlnets(Settings(), default_paths())}
    canny = found["control_v11p_sd15_canny"]
    assert (canny.source, canny.path, canny.family) == (
        "hf-cache", snap / "control_v11p_sd15_canny.safetensors", "sd1")
    assert lib.resolve_controlnet("control_v11p_sd15_canny", Settings(),
                                  default_paths()).path == canny.path
