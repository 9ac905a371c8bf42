"""Upscaler models: tiny random-weight ESRGAN (RRDBNet) and Real-ESRGAN Compact files, saved as a
user has them and loaded through the user's path (library name, job, CLI), equal to running the
network directly; tiles blended without seams; pickles never run code; the hires fix with a
model equals plain diffusers around the same upscale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, JobCancelled, UserFacingError
from studio.core.requests import Txt2ImgRequest, UpscaleRequest
from studio.library.upscalers import find_upscalers, looks_like_upscaler, resolve_upscaler
from studio.pipelines.upscale.model import (
    UpscalerSpec,
    build_network,
    unwrap,
    upscale_tensor,
)
from studio.pipelines.upscale.service import UpscaleService
from tests.fixtures.sinks import RecordingSink
from tests.test_library_pickle_safety import write_exploit

TINY_RRDB = UpscalerSpec("RRDBNet", 4, features=8, blocks=1, growth=4)
TINY_COMPACT = UpscalerSpec("SRVGGNetCompact", 2, features=8, blocks=2)
#: Tiled against untiled (values in 0..1): the tiles' own borders change a few pixels near a seam.
TILE_MAX_DIFF, TILE_MEAN_DIFF = 0.03, 0.002


def _network(spec: UpscalerSpec, seed: int = 0):
    torch.manual_seed(seed)
    return build_network(spec).eval()


def _save(net, path: Path, wrap: str = "params_ema") -> Path:
    """The state dict as Real-ESRGAN releases wrap it (``params_ema``), or bare safetensors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({wrap: state} if wrap else state, path)
    return path


def _old_esrgan_names(state: dict) -> dict:
    """The same weights under the original ESRGAN repository's names."""
    main = {"conv_first": "model.0", "conv_body": "model.1.sub.1", "conv_up1": "model.3",
            "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    out = {}
    for key, value in state.items():
        head, _, what = key.rpartition(".")
        if head in main:
            out[f"{main[head]}.{what}"] = value
        else:  # body.N.rdbK.convJ.what
            _, n, rdb, conv, what = key.split(".")
            out[f"model.1.sub.{n}.RDB{rdb[3]}.{conv}.0.{what}"] = value
    return out


def _picture(path: Path, size=(28, 20), alpha: bool = False) -> Path:
    rng = np.random.default_rng(1)
    pixels = (rng.random((size[1], size[0], 4 if alpha else 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels, "RGBA" if alpha else "RGB").save(path)
    return path


def _direct(net, image: Image.Image) -> np.ndarray:
    """The network run by hand on the image: what a user of the raw model would get."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    with torch.inference_mode():
        y = net(x.permute(2, 0, 1)[None])
    return (y[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def _service():
    settings = Settings(device="cpu")
    return UpscaleService(lambda: settings, default_paths)


@pytest.mark.parametrize("spec, name", [(TINY_RRDB, "4x-Tiny.pth"),
                                        (TINY_COMPACT, "2x-compact.safetensors")])
def test_library_name_job_equals_the_network_run_directly(spec, name, tmp_path):
    net = _network(spec)
    file = _save(net, default_paths().models_dir / "upscalers" / name)
    assert [u.name for u in find_upscalers(Settings(), default_paths())] == [file.stem]
    source = _picture(tmp_path / "in.png")
    sink = RecordingSink()
    [result] = _service().run(UpscaleRequest(model=file.stem, inputs=[str(source)]), sink,
                              CancelToken())
    assert result.image.size == (28 * spec.scale, 20 * spec.scale)
    assert np.array_equal(np.asarray(result.image), _direct(net, Image.open(source)))
    saved = Image.open(result.path)
    assert f"Upscaler: {file.stem}, Upscale: {spec.scale}" in saved.text["parameters"]
    assert json.loads(saved.text["studio"])["upscale"]["inputs"] == [str(source)]


def test_original_esrgan_layout_loads_to_the_same_network(tmp_path):
    net = _network(TINY_RRDB)
    old = _old_esrgan_names(net.state_dict())
    path = tmp_path / "old.pth"
    torch.save(old, path)
    assert looks_like_upscaler(path)
    from studio.pipelines.upscale.service import load_upscaler

    loaded = load_upscaler(resolve_upscaler(str(path), Settings(), default_paths()), "cpu")
    assert loaded.spec == TINY_RRDB
    picture = Image.open(_picture(tmp_path / "p.png", (20, 16)))
    assert np.array_equal(np.asarray(loaded.upscale(picture)), _direct(net, picture))
    assert set(unwrap({"params": net.state_dict()})) == set(net.state_dict())


def test_tiles_blend_without_seams_and_report_progress():
    net = _network(TINY_RRDB)
    x = torch.rand(1, 3, 44, 40, generator=torch.Generator().manual_seed(2))
    whole = upscale_tensor(net, x, 4, tile=0)
    steps = []
    tiled = upscale_tensor(net, x, 4, tile=24, overlap=8, progress=lambda d, t: steps.append((d, t)))
    assert tiled.shape == whole.shape == (1, 3, 176, 160)
    diff = (tiled - whole).abs()
    assert diff.max() < TILE_MAX_DIFF and diff.mean() < TILE_MEAN_DIFF
    assert steps[0] == (0, 6) and steps[-1] == (6, 6)  # 3 rows (0, 16, 20) × 2 columns


def test_cancel_stops_between_tiles_and_the_job_keeps_alpha(tmp_path):
    file = _save(_network(TINY_COMPACT), default_paths().models_dir / "upscalers" / "c.pth")
    source = _picture(tmp_path / "a.png", (40, 36), alpha=True)
    cancel = CancelToken()

    class Cancelling(RecordingSink):
        def __call__(self, step, total, preview=None):
            super().__call__(step, total, preview)
            if step == 1:
                cancel.cancel()

    request = UpscaleRequest(model=str(file), inputs=[str(source)], tile=32, overlap=8)
    with pytest.raises(JobCancelled):
        _service().run(request, Cancelling(), cancel)
    [result] = _service().run(UpscaleRequest(model=str(file), inputs=[str(source)], scale=1.5),
                              RecordingSink(), CancelToken())
    assert result.image.size == (60, 54) and result.image.mode == "RGBA"


@pytest.mark.parametrize("style", ["pickle", "torch-zip"])
def test_a_pickle_that_runs_code_is_refused_and_runs_none(style, tmp_path):
    marker = tmp_path / "pwned"
    weights = _network(TINY_RRDB).state_dict()
    evil = write_exploit(default_paths().models_dir / "upscalers" / "evil.pth", style, marker,
                         weights)
    request = UpscaleRequest(model=str(evil), inputs=[str(_picture(tmp_path / "x.png"))])
    with pytest.raises(UserFacingError, match="refused for safety"):
        _service().run(request, RecordingSink(), CancelToken())
    find_upscalers(Settings(), default_paths())  # scanning reads names only
    assert not marker.exists()


def test_names_wrong_files_and_bad_fields_get_a_sentence(tmp_path):
    with pytest.raises(UserFacingError, match="No upscaler model called 'nope'.*upscalers"):
        resolve_upscaler("nope", Settings(), default_paths())
    other = tmp_path / "not-an-upscaler.safetensors"
    from safetensors.torch import save_file

    save_file({"unet.weight": torch.zeros(2)}, str(other))
    assert not looks_like_upscaler(other)
    with pytest.raises(UserFacingError, match="Not an upscaler Studio can run"):
        _service().run(UpscaleRequest(model=str(other), inputs=[str(_picture(tmp_path / "p.png"))]),
                       RecordingSink(), CancelToken())
    for fields, words in (({"scale": 0.5}, "Scale must be 0"), ({"inputs": []}, "No input"),
                          ({"tile": 8}, "Tile size"), ({"overlap": 400}, "Overlap")):
        with pytest.raises(ValueError, match=words):
            UpscaleRequest(model="m", **{"inputs": ["a.png"], **fields}).validate()


def test_hires_fix_with_an_upscaler_model_equals_plain_diffusers(tiny_sd15_dir):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    net = _network(TINY_COMPACT)
    _save(net, default_paths().models_dir / "upscalers" / "2x-compact.safetensors")
    settings = Settings(preview_mode="fast", device="cpu")
    service = Txt2ImgService(lambda: settings, default_paths)
    request = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="a boat", steps=2, width=32,
                             height=24, seed=9, hires=True, hires_scale=1.5,
                             hires_upscaler="2x-compact", hires_steps=2, hires_denoise=0.5)
    [result] = service.run(request, RecordingSink(), CancelToken())
    assert "Hires upscaler: 2x-compact" in result.parameters
    components = service.cache.current.components
    first, second = StableDiffusionPipeline(**components), \
        StableDiffusionImg2ImgPipeline(**components)
    base = first(prompt="a boat", num_inference_steps=2, width=32, height=24, guidance_scale=7.0,
                 generator=torch.Generator("cpu").manual_seed(9)).images[0]
    upscaled = Image.fromarray(_direct(net, base)).resize((48, 32), Image.Resampling.LANCZOS)
    expected = second(prompt="a boat", image=upscaled, strength=0.5, num_inference_steps=2,
                      guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(9)).images[0]
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))


def test_cli_upscale_writes_json_rows_and_refuses_a_missing_model(tmp_path):
    from tests.test_cli_basics import run_studio

    file = _save(_network(TINY_COMPACT), tmp_path / "models" / "2x.pth")
    folder = tmp_path / "pics"
    folder.mkdir()
    _picture(folder / "a.png", (16, 12))
    _picture(folder / "b.png", (12, 8))
    out = run_studio("upscale", str(folder), "--model", str(file), "--out",
                     str(tmp_path / "out"), "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["width"], r["height"]) for r in rows] == [(32, 24), (24, 16)]
    missing = run_studio("upscale", str(folder), "--model", "4x-nothing")
    assert missing.returncode == 2 and "No upscaler model called '4x-nothing'" in missing.stderr


def test_the_library_lists_upscalers_as_their_own_kind(tmp_path):
    from studio.library.catalog import describe_path, list_models, wrong_kind_message

    paths = default_paths()
    file = _save(_network(TINY_COMPACT), paths.models_dir / "upscalers" / "2x-compact.pth")
    [entry] = [e for e in list_models(Settings(), paths) if e.kind == "upscaler"]
    assert (entry.name, entry.path, entry.kind_title) == \
        ("2x-compact", file, "Upscaler (ESRGAN / Real-ESRGAN)")
    assert describe_path(file, "file", paths).kind == "upscaler"
    assert "studio upscale IMAGE --model" in wrong_kind_message(file, "transform", paths,
                                                                "studio transform")


@pytest.mark.gui
def test_transform_upscale_tab_runs_the_model_and_shows_the_result(main_window, qtbot, tmp_path):
    main_window.resize(1366, 768)
    main_window.show()
    panel = main_window.show_workspace("transform")
    qtbot.waitExposed(main_window)
    try:
        panel.set_mode("upscale")
        qtbot.waitUntil(lambda: panel.upscale.scans >= 1, timeout=10_000)
        assert panel.upscale.model.count() == 0 and "upscalers" in panel.upscale.hint.text()
        assert panel.run_button.text() == "Upscale"
        net = _network(TINY_COMPACT)
        _save(net, panel.ctx.paths.models_dir / "upscalers" / "2x-compact.safetensors")
        panel.upscale.rescan.click()
        qtbot.waitUntil(lambda: panel.upscale.model.count() == 1, timeout=10_000)
        assert panel.upscale.hint.isHidden()
        panel.receive(_picture(tmp_path / "p.png", (24, 16)))
        with qtbot.waitSignal(panel.jobFinished, timeout=60_000) as done:
            assert panel.run(), panel.error_label.text()
        assert done.args[0].state.value == "done", done.args[0].error
        result = panel.last_result
        assert result.image.size == (48, 32)
        assert np.array_equal(np.asarray(result.image), _direct(net, Image.open(tmp_path / "p.png")))
        assert panel._book.shown["upscale"].result is result
        # "Reuse parameters" of the result (Gallery, drop): the Upscale tab with its settings.
        from studio.media.transform_reuse import read_transform_reuse

        reuse = read_transform_reuse(result.path)
        assert (reuse.mode, reuse.model_name, reuse.image) == \
            ("upscale", "2x-compact", tmp_path / "p.png")
        panel.set_mode("cyclegan")
        panel.upscale.tile.setValue(64)
        panel.receive(reuse)
        qtbot.waitUntil(lambda: panel.upscale.scans >= 3, timeout=10_000)
        assert panel.mode == "upscale" and panel.upscale.tile.value() == 512
        assert panel.upscale.request([str(tmp_path / "p.png")]) == reuse.request
        # "Upscale…" from Generate's or Gallery's menu: Transform on its Upscale tab with it
        from studio.ui.widgets.image_actions import OpenInMode

        panel.set_mode("img2img")
        main_window.ctx.openInWorkspace.emit("transform", OpenInMode(result.path, "upscale"))
        assert panel.mode == "upscale" and panel.image_path == result.path
    finally:
        panel.shutdown()

