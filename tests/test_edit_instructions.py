"""Edit with instructions (issue 15): FLUX.1 Kontext and Qwen-Image-Edit folders are detected
as editing models; an Img2ImgRequest with ``edit`` runs the edit pipeline through Studio's batch
loop bit for bit as plain diffusers, with a preview each step and the request in the metadata;
each wrong pairing (an editing model in Generate or plain image to image, an edit with a model
that cannot) and a broken torchvision get a sentence. Qwen-Image-Edit runs without torchvision
(its PIL image processor) bit for bit as diffusers given the same processor, and, where a
torchvision built for this torch loads, as diffusers with the folder's own processor."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Img2ImgRequest, Txt2ImgRequest
from studio.library.detect import detect_diffusers_folder
from studio.pipelines.diffusion.edit import edit_size
from studio.pipelines.diffusion.img2img import Img2ImgService
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink

SETTINGS = Settings(device="cpu", precision="fp32", preview_mode="fast")


def edits():
    return Img2ImgService(lambda: SETTINGS, default_paths)


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "harbour.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 60, 3), np.uint8)).save(path)
    return path


def edit_request(folder, picture, **kw):
    base = dict(model=str(folder), image=str(picture), prompt="make it winter", steps=2,
                cfg=2.5, seed=5, count=1, width=64, height=48, edit=True)
    return Img2ImgRequest(**{**base, **kw})


def test_kontext_edits_bit_equal_to_diffusers_with_previews(tiny_flux_kontext_dir, picture):
    from diffusers import FluxKontextPipeline

    assert detect_diffusers_folder(tiny_flux_kontext_dir).family == "flux-kontext"
    req = edit_request(tiny_flux_kontext_dir, picture)
    sink = RecordingSink()
    results = edits().run(req, sink, CancelToken())
    plain = FluxKontextPipeline.from_pretrained(str(tiny_flux_kontext_dir),
                                                local_files_only=True)
    plain.set_progress_bar_config(disable=True)
    for result in results:
        expected = plain(image=Image.open(picture).convert("RGB"), prompt=req.prompt,
                         num_inference_steps=2, guidance_scale=2.5, width=64, height=48,
                         max_area=64 * 48,
                         generator=torch.Generator("cpu").manual_seed(result.seed)).images[0]
        assert np.array_equal(np.asarray(result.image), np.asarray(expected))
        assert "Edit: instructions" in result.parameters and "make it winter" in result.parameters
    assert results[0].image.size == (64, 48)
    previews = [p for _, _, p in sink.steps if p is not None]
    assert len(previews) == 2 and previews[0].shape == (6, 8, 3)  # packed tokens → 16×6×8


def test_an_edit_is_a_megapixel_at_the_pictures_shape_unless_sized():
    assert edit_size(1024, 1024) == (1024, 1024)
    w, h = edit_size(600, 400)
    assert (w % 16, h % 16) == (0, 0) and abs(w / h - 1.5) < 0.02 and 0.95 < w * h / 2**20 < 1
    with pytest.raises(ValueError, match="multiples of 16"):
        Img2ImgRequest(model="m", image="x.png", prompt="a", edit=True, width=72,
                       height=64).validate()
    with pytest.raises(ValueError, match="instruction"):
        Img2ImgRequest(model="m", image="x.png", edit=True).validate()
    with pytest.raises(ValueError, match="clear the mask"):
        Img2ImgRequest(model="m", image="x.png", prompt="a", mask="m.png", edit=True).validate()
    assert Img2ImgRequest(model="m", image="x.png", prompt="a", edit=True).to_dict()["kind"] \
        == "edit"


def test_wrong_pairings_are_refused_with_a_sentence(tiny_flux_kontext_dir, tiny_flux_dir,
                                                    picture):
    with pytest.raises(UserFacingError, match="Transform → Edit with instructions"):
        Txt2ImgService(lambda: SETTINGS, default_paths).run(
            Txt2ImgRequest(model=str(tiny_flux_kontext_dir), prompt="a", steps=2),
            RecordingSink(), CancelToken())
    with pytest.raises(UserFacingError, match="choose Edit with instructions"):
        edits().run(edit_request(tiny_flux_kontext_dir, picture, edit=False), RecordingSink(),
                    CancelToken())
    with pytest.raises(UserFacingError, match="FLUX.1 Kontext or Qwen-Image-Edit"):
        edits().run(edit_request(tiny_flux_dir, picture), RecordingSink(), CancelToken())


def edit_equals_diffusers(folder, picture, plain) -> None:
    """Qwen-Image-Edit through Studio (with previews and its metadata) makes what ``plain``, a
    QwenImageEditPipeline, makes from the same picture, prompts and seed."""
    req = edit_request(folder, picture, cfg=4.0, negative_prompt="blurry")
    sink = RecordingSink()
    (result,) = edits().run(req, sink, CancelToken())
    plain.set_progress_bar_config(disable=True)
    expected = plain(image=Image.open(picture).convert("RGB"), prompt=req.prompt,
                     negative_prompt="blurry", true_cfg_scale=4.0, num_inference_steps=2,
                     width=64, height=48,
                     generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))
    assert "Edit: instructions" in result.parameters
    assert [p for _, _, p in sink.steps if p is not None]


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None,
                    reason="with torchvision installed diffusers loads the folder's processor")
def test_qwen_image_edit_runs_without_torchvision_bit_equal_to_diffusers(tiny_models_root,
                                                                          picture):
    """A CPU install has no torchvision (PyPI's is a CUDA build): the processor is built from the
    folder's PIL image processor and tokenizer, and the edit equals plain diffusers given it."""
    from diffusers import QwenImageEditPipeline

    from studio.pipelines.diffusion.vl_processor import image_only_processor, processor_kwargs
    from tests.fixtures.tiny_families import build_tiny_qwen_image_edit

    folder = build_tiny_qwen_image_edit(tiny_models_root / "tiny-qwen-image-edit")
    assert detect_diffusers_folder(folder).family == "qwen-image-edit"
    assert set(processor_kwargs(folder)) == {"processor"}
    edit_equals_diffusers(folder, picture, QwenImageEditPipeline.from_pretrained(
        str(folder), local_files_only=True, processor=image_only_processor(folder / "processor")))


def test_the_folders_own_processor_is_used_where_torchvision_is_installed(tiny_models_root,
                                                                           monkeypatch):
    from studio.pipelines.diffusion.vl_processor import processor_kwargs
    from tests.fixtures.tiny_families import build_tiny_qwen_image, build_tiny_qwen_image_edit

    folder = build_tiny_qwen_image_edit(tiny_models_root / "tiny-qwen-image-edit-own")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "torchvision" else real(name, *a))
    assert processor_kwargs(folder) == {}
    monkeypatch.undo()
    plain = build_tiny_qwen_image(tiny_models_root / "tiny-qwen-image-no-processor")
    assert processor_kwargs(plain) == {}  # Qwen-Image itself has no processor to replace


def _torchvision_loads() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed, or built for another torch
        return False
    return True


@pytest.mark.skipif(not _torchvision_loads(),
                    reason="Qwen-Image-Edit's processor needs a torchvision built for this torch "
                           "(PyPI's CUDA torchvision does not load beside the CPU torch)")
def test_qwen_image_edit_is_bit_equal_to_diffusers(tiny_models_root, picture):
    from diffusers import QwenImageEditPipeline

    from tests.fixtures.tiny_families import build_tiny_qwen_image_edit

    folder = build_tiny_qwen_image_edit(tiny_models_root / "tiny-qwen-image-edit-run")
    assert detect_diffusers_folder(folder).family == "qwen-image-edit"
    edit_equals_diffusers(folder, picture,
                          QwenImageEditPipeline.from_pretrained(str(folder), local_files_only=True))


def test_a_torchvision_that_does_not_load_is_named(monkeypatch):
    """PyPI's torchvision is a CUDA build: beside the CPU torch it stops at import ("operator
    torchvision::nms does not exist"); the loader says so instead of diffusers' import error."""
    import sys

    from studio.pipelines.diffusion.loading import torchvision_problem

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "torchvision" else real(name, *a))
    monkeypatch.setitem(sys.modules, "torchvision", None)  # its import now raises
    text = torchvision_problem()
    assert text.startswith("torchvision is installed but does not load with this torch")
    assert "download.pytorch.org/whl/cpu" in text and "pip uninstall torchvision" in text


def test_cli_edits_with_the_models_guidance(tiny_flux_kontext_dir, picture, tmp_path):
    import json

    from tests.fixtures.cli_run import studio_in_process

    proc = studio_in_process("img2img", "--model", str(tiny_flux_kontext_dir), "--image",
                             str(picture), "--edit", "make it winter", "--width", "64",
                             "--height", "48", "--steps", "2", "--seed", "5", "--device", "cpu",
                             "--out", str(tmp_path / "o"), "--json")
    assert proc.returncode == 0, proc.stderr
    (line,) = [json.loads(x) for x in proc.stdout.splitlines()]
    assert line["edit"] is True and (line["width"], line["height"]) == (64, 48)
    text = Image.open(line["path"]).text["parameters"]
    assert "CFG scale: 2.5" in text and "Edit: instructions" in text  # Kontext's own guidance
    both = studio_in_process("img2img", "--model", str(tiny_flux_kontext_dir), "--image",
                             str(picture), "--edit", "snow", "--prompt", "snow")
    assert both.returncode == 2 and "one of them" in both.stderr


def test_serve_edits_with_an_editing_model_and_no_mask(tiny_flux_kontext_dir, picture):
    import base64
    import io

    from studio.core.jobs import JobState
    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import Catalog, classify
    from tests.fixtures.asgi import asgi_call

    spec = classify(str(tiny_flux_kontext_dir), SETTINGS, default_paths())
    assert spec.family == "flux-kontext"
    engine = build_engine(lambda: SETTINGS, default_paths)
    server = make_server("127.0.0.1", 0, engine, Catalog([spec]))
    try:
        r = asgi_call(server, "POST", "/v1/images/edits",
                      files={"image": ("in.png", picture.read_bytes(), "image/png")},
                      data={"model": spec.id, "prompt": "make it winter", "steps": "2",
                            "seed": "5", "size": "64x48"})
        assert r.status_code == 200, r.text
        served = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
        assert "CFG scale: 2.5" in served.text["parameters"]  # Kontext's own guidance
        job = engine.submit(edit_request(tiny_flux_kontext_dir, picture), title="direct")
        assert job.wait(600) and job.state is JobState.DONE, job.error
        assert np.array_equal(np.asarray(served.convert("RGB")),
                              np.asarray(job.result[0].image.convert("RGB")))
    finally:
        server.server_close()
        engine.shutdown(timeout=120)


def test_transform_has_an_edit_tab(main_window, qtbot, tiny_sd15_dir, picture):
    from studio.ui.panels.transform.results import mode_of

    main_window.resize(1360, 860)
    main_window.show()
    panel = main_window.show_workspace("transform")
    qtbot.waitExposed(main_window)
    try:
        qtbot.waitUntil(lambda: not panel.sd_picker.scanning, timeout=10_000)
        panel.sd_picker.select_model(str(tiny_sd15_dir))
        panel.receive(picture)
        panel.set_mode("edit")
        options = panel.diffusion
        assert panel.run_button.text() == "Edit" and panel.sd_picker.isVisible()
        assert not options.strength_box.isVisible() and not options.outpaint.isVisible()
        assert options._form.labelForField(options.cfg).text() == "Guidance"
        assert options.cfg.value() == 2.5 and "make it winter" in options.prompt.placeholderText()
        assert panel.run() == [] and "instruction" in panel.error_label.text()
        options.prompt.setPlainText("make it winter")
        with qtbot.waitSignal(panel.jobFinished, timeout=30_000) as done:
            (job,) = panel.run()
        assert job.request.edit and mode_of(job.request) == "edit"
        assert "does not edit from instructions" in (done.args[0].error or "")
        panel.set_mode("img2img")
        assert options.strength_box.isVisible() and options.cfg.value() == 7.0
    finally:
        panel.shutdown()
