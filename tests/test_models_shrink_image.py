"""Make smaller… on an image model / ``studio models shrink`` for an image model: a tiny random
SD 1.5 pipeline's UNet stored in int8 (torchao) or fp8 (layer-wise casting) through the engine,
loaded back by Generate's own loader and asked for an image through the txt2img job (the path
Generate, ``studio generate`` and ``studio serve`` share); the refusals; the command line.

Tolerance: the copy's image is compared with the original's at the same seed, 64×64, 2 steps.
int8 rounds each linear weight to one of 255 levels per row (relative error ≤ 1/254 of the row's
largest weight), e4m3 fp8 keeps 3 mantissa bits (≤ 1/16 relative) on every conv and linear weight;
through a random-weight UNet and two denoising steps that measured 0.01 (int8) and 0.7 (fp8) of
255 mean absolute difference here. The bounds (1 and 4 of 255) leave room for other CPUs' kernels
while still failing if the wrong weights were loaded (a different model differs by tens)."""

from __future__ import annotations

import json
import shutil

import pytest

from studio.core.jobs import JobState, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.core.shrink_requests import ImageShrinkRequest
from tests.test_models_shrink import _settings_paths, run_jobs

SMALL = dict(size=64, steps=2, seed=7, prompt="a red square")


def _run(requests):
    return run_jobs(requests, name="test-shrink-image")


@pytest.fixture
def model(tiny_sd15_dir):
    """The tiny SD 1.5 pipeline in this test's models folder (so the copy lands next to it)."""
    _settings, paths = _settings_paths()
    dest = paths.models_dir / "tiny-sd"
    shutil.copytree(tiny_sd15_dir, dest)
    return dest


def _image(folder):
    """One image through the txt2img job (Generate's path)."""
    [job] = _run([Txt2ImgRequest(model=str(folder), prompt=SMALL["prompt"], steps=2, width=64,
                                 height=64, seed=7, cfg=7.0)])
    assert job.state is JobState.DONE, job.error
    return job.result[0].image


def _plan(**kw):
    from studio.pipelines.diffusion.shrink import plan_image_shrink

    return plan_image_shrink(ImageShrinkRequest(**kw), *_settings_paths())


@pytest.mark.parametrize("method,tolerance", [("int8", 1.0), ("fp8", 4.0)])
def test_copy_is_a_library_entry_generate_loads(model, method, tolerance):
    import torch

    from studio.library.catalog import list_models
    from studio.library.models import entry_for_path
    from studio.pipelines.diffusion.loading import load_txt2img_pipeline
    from studio.pipelines.diffusion.shrink import pixel_difference

    [job] = _run([ImageShrinkRequest(model=str(model), method=method, **SMALL)])
    assert job.state is JobState.DONE, job.error
    report = job.result
    out = model.parent / f"tiny-sd-{method}"
    assert report.path == out and report.name == f"tiny-sd-{method}"
    assert report.after.size_bytes < report.before.size_bytes
    assert report.after.denoiser_bytes < report.before.denoiser_bytes
    assert report.before.seconds_per_step > 0 and report.after.seconds_per_step > 0
    assert report.before.image.size == report.after.image.size == (64, 64)
    assert 0 <= report.pixel_difference < tolerance
    assert all(p.is_file() for p in report.samples)
    assert len(report.rows()) == 4
    # safetensors only, the other components as they were, a note saying how to make it again
    assert not [p for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".ckpt", ".pkl")]
    note = json.loads((out / "studio_shrink.json").read_text())
    assert note["method"] == method and note["source"] == "tiny-sd"
    assert note["recreate"].startswith("studio models shrink ")
    assert (out / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == \
        (model / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    unet_config = json.loads((out / "unet" / "config.json").read_text())
    assert ("quantization_config" in unet_config) == (method == "int8")
    # Models lists it with its size and what it is
    entries = {e.name: e for e in list_models(*_settings_paths())}
    assert entries[out.name].kind == "image" and entries[out.name].size_bytes > 0
    assert method in entries[out.name].precision
    # Generate's loader gives the stored weights back
    pipe = load_txt2img_pipeline(entry_for_path(out, "studio"), "cpu", torch.float32)
    weight = pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q.weight
    if method == "fp8":
        assert weight.dtype == torch.float8_e4m3fn
    else:
        assert "Int8" in type(weight).__name__
    del pipe
    # the txt2img job draws with it, close to the original
    assert pixel_difference(_image(model), _image(out)) < tolerance
    if method == "int8":
        _served_image(out)
    else:  # peft cannot add a LoRA's layers to float8 weights: a sentence, not a traceback
        from tests.fixtures.tiny_lora import build_tiny_lora

        lora = build_tiny_lora(model, model.parent / "style.safetensors")
        [job] = _run([Txt2ImgRequest(model=str(out), prompt="x", steps=2, width=64, height=64,
                                     loras=[{"name": str(lora), "weight": 0.8}])])
        assert job.state is JobState.FAILED and "keeps its denoiser in fp8" in job.error


def _served_image(folder) -> None:
    """``studio serve`` lists the copy as an image model and draws with it."""
    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import build_catalog
    from tests.fixtures.asgi import asgi_call

    settings, paths = _settings_paths()
    engine = build_engine(lambda: settings, lambda: paths, name="test-shrink-image-serve")
    server = make_server("127.0.0.1", 0, engine, build_catalog([str(folder)], settings, paths))
    try:
        models = asgi_call(server, "GET", "/v1/models").json()["data"]
        assert [m["id"] for m in models] == [folder.name]
        r = asgi_call(server, "POST", "/v1/images/generations", json={
            "model": folder.name, "prompt": "a red square", "size": "64x64", "steps": 2,
            "seed": 7})
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["b64_json"]
    finally:
        server.server_close()
        engine.shutdown(timeout=60)


def test_refusals_say_what_to_do(model, tmp_path, monkeypatch):
    from studio.pipelines.chat import shrink as chat_shrink

    with pytest.raises(UserFacingError, match="int8 or fp8, not 'int4'"):
        _plan(model=str(model), method="int4")
    (model.parent / "taken").mkdir()
    with pytest.raises(UserFacingError, match="already exists"):
        _plan(model=str(model), method="int8", out_name="taken")
    # already made smaller: a denoiser whose config says it is quantized
    quantized = tmp_path / "q"
    shutil.copytree(model, quantized)
    config = json.loads((model / "unet" / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "torchao"}
    (quantized / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserFacingError, match=r"already made smaller: its unet is quantized"):
        _plan(model=str(quantized), method="fp8")
    # too little disk: checked before anything is loaded or written
    real = shutil.disk_usage
    monkeypatch.setattr(chat_shrink.shutil, "disk_usage",
                        lambda _p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(UserFacingError, match="Not enough disk space"):
        _plan(model=str(model), method="int8")
    monkeypatch.setattr(chat_shrink.shutil, "disk_usage", real)
    plan = _plan(model=str(model), method="fp8")
    assert plan.size_estimate < plan.size_before and plan.denoiser == "unet"


def test_cli_shrinks_an_image_model_and_refuses_bad_input(model):
    from tests.fixtures.cli_run import studio_in_process

    done = studio_in_process("models", "shrink", "tiny-sd", "--method", "fp8", "--json",
                             "--steps", "2", "--size", "64")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["name"] == "tiny-sd-fp8" and data["method"] == "fp8"
    assert data["denoiser"] == "unet" and data["pixel_difference"] < 4.0
    assert data["after"]["size_bytes"] < data["before"]["size_bytes"]
    assert [p.split("/")[-1] for p in data["samples"]] == ["shrink-sample-before.png",
                                                          "shrink-sample-after.png"]
    again = studio_in_process("models", "shrink", "tiny-sd", "--method", "fp8")
    assert again.returncode == 2 and "tiny-sd-fp8 already exists" in again.stderr
    shrunk = studio_in_process("models", "shrink", "tiny-sd-fp8", "--out", "x")
    assert shrunk.returncode == 2 and "already made smaller: fp8, made from tiny-sd" \
        in shrunk.stderr
    int4 = studio_in_process("models", "shrink", "tiny-sd", "--method", "int4")
    assert int4.returncode == 2 and "int4 is for chat models" in int4.stderr
    listed = studio_in_process("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    row = next(m for m in json.loads(listed.stdout) if m["name"] == "tiny-sd-fp8")
    assert row["precision"] == "fp8 e4m3 (denoiser)" and row["size_bytes"] > 0
    drawn = studio_in_process("generate", "--model", "tiny-sd-fp8", "--prompt", "a red square",
                              "--steps", "2", "--width", "64", "--height", "64")
    assert drawn.returncode == 0, drawn.stderr


@pytest.mark.gui
def test_make_smaller_dialog_shows_both_samples_and_lists_the_copy(qtbot, main_window,
                                                                   tiny_sd15_dir):
    import dataclasses

    models = main_window.ctx.paths.models_dir
    shutil.copytree(tiny_sd15_dir, models / "tiny-sd")
    main_window.ctx.update_settings(dataclasses.replace(main_window.ctx.settings, device="cpu"))
    main_window.resize(1366, 768)
    main_window.show()
    panel = main_window.show_workspace("models")
    qtbot.waitUntil(lambda: panel.scans >= 1, timeout=20000)
    assert panel.tree.select_path(models / "tiny-sd")
    assert panel.details.shrink_button.isVisible() and panel.details.shrink_button.isEnabled()
    dialog = panel.open_shrink()
    qtbot.waitUntil(lambda: dialog.plans >= 1, timeout=20000)
    assert [b.property("method") for b in dialog.methods.buttons()] == ["int8", "fp8"]
    assert dialog.name.text() == "tiny-sd-int8"
    assert "the UNet with its linear layers in int8" in dialog.plan_label.text()
    dialog.set_method("fp8")
    qtbot.waitUntil(lambda: dialog.plan is not None and dialog.plan.method == "fp8",
                    timeout=20000)
    assert dialog.name.text() == "tiny-sd-fp8"
    # the sample is small so the test is quick; the dialog's own default is the family's size
    dialog.request = lambda: ImageShrinkRequest(model=str(models / "tiny-sd"), method="fp8",
                                                out_name="tiny-sd-fp8", **SMALL)
    assert dialog.start() is not None
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=120000)
    assert dialog.table.rowCount() == 4 and dialog.table.item(2, 0).text() == "Seconds per step"
    assert all(label.isVisible() and not label.pixmap().isNull()
               for label in dialog.sample_labels)
    assert [c.text() for c in dialog.sample_captions] == ["Before: tiny-sd", "After: tiny-sd-fp8"]
    assert "Saved tiny-sd-fp8" in dialog.status.text() and "Generate" in dialog.status.text()
    qtbot.waitUntil(lambda: "tiny-sd-fp8" in [e.name for e in panel.entries], timeout=20000)
    assert panel.tree.select_path(models / "tiny-sd-fp8")
    assert panel.details.values["Precision"].text() == "fp8 e4m3 (denoiser)"
    # the copy cannot be made smaller again: the dialog says so and keeps Make smaller off
    copy = next(e for e in panel.entries if e.name == "tiny-sd-fp8")
    again = panel.open_shrink(copy)
    qtbot.waitUntil(lambda: again.plans >= 1, timeout=20000)
    assert "already made smaller" in again.plan_label.text()
    assert not again.start_button.isEnabled()
    again.close()


def test_a_flux_transformer_and_a_single_file_are_shrunk_too(tiny_flux_dir, tiny_sd15_file,
                                                             tiny_single_file_env):
    """FLUX's denoiser is a transformer; a single .safetensors checkpoint becomes a diffusers
    folder whose UNet is stored small and the rest as the checkpoint had it."""
    from studio.library.detect import read_safetensors_header

    _settings, paths = _settings_paths()
    flux = paths.models_dir / "tiny-flux"
    shutil.copytree(tiny_flux_dir, flux)
    single = paths.models_dir / "tiny-one.safetensors"
    shutil.copy2(tiny_sd15_file, single)
    flux_job, file_job = _run([ImageShrinkRequest(model=str(flux), method="int8", **SMALL),
                               ImageShrinkRequest(model=str(single), method="fp8", **SMALL)])
    assert flux_job.state is JobState.DONE, flux_job.error
    assert flux_job.result.denoiser == "transformer"
    config = json.loads((flux.parent / "tiny-flux-int8" / "transformer" / "config.json")
                        .read_text())
    assert config["quantization_config"]["quant_method"] == "torchao"
    assert file_job.state is JobState.DONE, file_job.error
    out = paths.models_dir / "tiny-one-fp8"
    assert (out / "model_index.json").is_file() and (out / "text_encoder").is_dir()
    header = read_safetensors_header(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert {info["dtype"] for key, info in header.items()
            if key.endswith("to_q.weight")} == {"F8_E4M3"}
    assert file_job.result.pixel_difference < 4.0
    drawn = _run([Txt2ImgRequest(model=str(flux.parent / "tiny-flux-int8"), prompt="x", steps=2,
                                 width=64, height=64, cfg=3.5)])
    assert drawn[0].state is JobState.DONE, drawn[0].error


def test_cancel_while_drawing_with_the_copy_keeps_nothing(model, monkeypatch):
    from studio.core.jobs import CancelToken, JobCancelled
    from studio.pipelines.diffusion import shrink

    seen = []

    def measure(pipe, plan, path, request, cancel):
        seen.append(path)
        if len(seen) == 2:  # the copy is saved and loaded: Cancel now
            raise JobCancelled()
        return shrink.ImageMeasure(1, 2, 0.1, None)

    class Progress:
        def __call__(self, *a):
            pass

        def message(self, text):
            pass

    monkeypatch.setattr(shrink, "measure", measure)
    with pytest.raises(JobCancelled):
        shrink.ImageShrinkService(*_settings_paths()).run(
            ImageShrinkRequest(model=str(model), method="fp8", **SMALL), Progress(),
            CancelToken())
    assert seen[1].name == "tiny-sd-fp8"
    assert sorted(p.name for p in model.parent.iterdir()) == ["tiny-sd"]
