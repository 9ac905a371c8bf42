"""Image lesson 3 (``ddpm``): a diffusers UNet2DModel learning to denoise images — determinism
(the film strip changes nothing), resume, the per-noise-level error, class-conditional training,
bad inputs, the view (scrubber, film strip), and "train, then use": the exported DDPMPipeline
folder (export.py, as every lesson's model) loads with plain diffusers, Generate and ``studio generate`` draw the same pixels as diffusers'
own DDPMPipeline, and a class-conditional model takes a class instead of a prompt."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from studio.core.jobs import UserFacingError
from studio.pipelines.train.base import InvalidParameter
from studio.pipelines.train.ddpm import BUCKETS, DDPMImageTrainer
from studio.pipelines.train.export import export_run, export_trainer
from tests.fixtures.resume import assert_resumes_exactly
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401
from tests.test_train_e_cnn import write_images

FAST = {"batch_size": 8, "width": 4, "preview_steps": 2}


def make(seed: int = 0, **overrides) -> DDPMImageTrainer:
    return DDPMImageTrainer(config={**FAST, **overrides}, seed=seed)


def run(trainer, n: int) -> list[dict]:
    return [trainer.step() for _ in range(n)]


def test_same_seed_same_metrics_and_pictures_change_nothing():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    global_torch = torch.get_rng_state()
    ma, mb = [], []
    for _ in range(3):
        ma.append(a.step())
        a.prepare_snapshot(finish=True)  # the film strip runs between steps
        a.snapshot()
        mb.append(b.step())
    assert ma == mb and ma != run(c, 3)
    assert torch.equal(global_torch, torch.get_rng_state())
    assert torch.is_grad_enabled()  # sampling the strip never leaves gradients off
    assert {"loss", "lr"} | {f"mse_t{i}" for i in range(BUCKETS)} <= set(ma[0])


def test_paused_saved_loaded_resumed_equals_uninterrupted(tmp_path):
    paused, expected = assert_resumes_exactly(make, run)
    paused.save_accelerate_state(tmp_path / "acc")
    again = make(seed=1)
    again.load_accelerate_state(tmp_path / "acc")
    assert again.step_count == 2 and run(again, 2) == expected


def test_snapshot_scrubber_strip_and_error_per_level():
    trainer = make()
    run(trainer, 2)
    trainer.prepare_snapshot(finish=True)
    snap = trainer.snapshot()
    assert snap["strip"].shape[:2] == (8, 3)  # 8 rows: noise + each of 2 DDIM steps
    assert snap["strip"].shape[2:] == (16, 16, 1) and snap["strip_step"] == 2
    assert 0.0 <= snap["strip"].min() and snap["strip"].max() <= 1.0
    assert snap["scrub_x0"].shape == snap["scrub_eps"].shape == (8, 16, 16, 1)
    assert len(snap["alphas_cumprod"]) == 1000 and snap["alphas_cumprod"][0] > 0.99
    assert len(snap["bucket_mse"]) == BUCKETS and not np.isnan(snap["bucket_mse"]).all()
    assert [h["name"] for h in snap["histograms"]] == ["in", "down", "middle", "up", "out"]


def test_bad_settings_and_bad_folders(tmp_path):
    for bad in ({"image_size": "20"}, {"batch_size": 1}, {"no_such": 1}, {"lr": -1}):
        with pytest.raises(InvalidParameter):
            DDPMImageTrainer(config=bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidParameter, match="(?i)image"):
        make(dataset="folder", data_folder=str(empty))
    one_class = tmp_path / "one"
    write_images(one_class, 6)
    with pytest.raises(InvalidParameter, match="at least two classes"):
        make(dataset="folder", data_folder=str(one_class), class_conditional=True)


def test_export_loads_in_plain_diffusers_and_generate_draws_the_same_pixels(tmp_path):
    from diffusers import DDIMScheduler, DDPMPipeline

    from studio.core.config import Paths, Settings
    from studio.core.jobs import CancelToken
    from studio.core.requests import Txt2ImgRequest
    from studio.media.metadata import read_image_metadata
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    trainer = make()
    run(trainer, 2)
    paths = Paths(config_dir=tmp_path / "c", data_dir=tmp_path / "d",
                  models_dir=tmp_path / "models", outputs_dir=tmp_path / "out",
                  runs_dir=tmp_path / "runs")
    done = export_trainer(trainer, paths.models_dir, "digits")
    folder = done.path
    assert folder == paths.models_dir / "ddpm" / "digits" and "class picker" in done.message
    assert {p.name for p in folder.iterdir()} >= {"model_index.json", "unet", "scheduler"}
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    with pytest.raises(UserFacingError, match="exists already"):
        export_trainer(trainer, paths.models_dir, "digits")
    pipe = DDPMPipeline.from_pretrained(str(folder))
    assert isinstance(pipe.scheduler, DDIMScheduler)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(batch_size=1, generator=torch.Generator().manual_seed(7),
                    num_inference_steps=3, output_type="np").images

    settings = Settings(precision="fp32", preview_mode="off", device="cpu")
    service = Txt2ImgService(lambda: settings, lambda: paths)
    seen: list = []

    class Progress:
        def __call__(self, step, total, preview=None):
            seen.append((step, total))

        def message(self, text):
            pass

        def partial(self, result):
            pass

    request = Txt2ImgRequest(model=str(folder), prompt="", steps=3, seed=7, count=2)
    images = service.run(request, Progress(), CancelToken())
    plain = np.asarray(pipe.numpy_to_pil(expected)[0])
    assert np.array_equal(np.asarray(images[0].image), plain)  # bit for bit
    assert seen[-1] == (6, 6)  # the steps of the whole batch, as any model reports them
    params = read_image_metadata(images[1].path).params
    assert params["seed"] == 8 and str(params["model"]).endswith("digits")
    assert images[1].image.size == (16, 16)
    with pytest.raises(UserFacingError, match="without classes"):
        service.run(Txt2ImgRequest(model=str(folder), prompt="a cat", steps=2), Progress(),
                    CancelToken())
    for refused, words in (({"hires": True, "hires_scale": 2.0}, "no hires fix"),
                           ({"variation_strength": 0.5}, "seed alone")):
        with pytest.raises(UserFacingError, match=words):  # as a GAN's are, before loading
            service.run(Txt2ImgRequest(model=str(folder), steps=2, **refused), Progress(),
                        CancelToken())
    from studio.core.requests import Img2ImgRequest
    from studio.pipelines.diffusion.img2img import Img2ImgService

    with pytest.raises(UserFacingError, match="use it in Generate"):
        Img2ImgService(lambda: settings, lambda: paths).run(
            Img2ImgRequest(model=str(folder), image=str(images[0].path)), Progress(),
            CancelToken())


def test_class_conditional_run_is_saved_and_draws_the_class_asked_for(tmp_path):
    from studio.core.config import Paths, Settings
    from studio.core.jobs import CancelToken
    from studio.core.requests import Txt2ImgRequest
    from studio.library.catalog import describe_path
    from studio.library.models import ddpm_class_names as class_names
    from studio.pipelines.diffusion.txt2img import Txt2ImgService
    from studio.pipelines.train.runs import Run

    trainer = make(class_conditional=True)
    run(trainer, 1)
    rundir = Run.create(tmp_path / "runs", "ddpm", 0, trainer.config, path=tmp_path / "run")
    rundir.save_checkpoint(trainer)
    folder = export_run(rundir.path, tmp_path / "models").path
    assert folder.name == "run" and class_names(folder) == [str(d) for d in range(10)]
    entry = describe_path(folder, "studio", None)
    assert entry.kind == "ddpm" and "Generate" in entry.workspaces and "10 classes" in entry.detail

    paths = Paths(config_dir=tmp_path / "c", data_dir=tmp_path / "d",
                  models_dir=tmp_path / "models", outputs_dir=tmp_path / "out",
                  runs_dir=tmp_path / "runs")
    settings = Settings(precision="fp32", preview_mode="off", device="cpu")
    service = Txt2ImgService(lambda: settings, lambda: paths)

    class Quiet:
        def __call__(self, *a):
            pass

        def message(self, text):
            pass

        def partial(self, result):
            pass

    three = service.run(Txt2ImgRequest(model=str(folder), prompt="3", steps=2, seed=1),
                        Quiet(), CancelToken())
    seven = service.run(Txt2ImgRequest(model=str(folder), prompt="7", steps=2, seed=1),
                        Quiet(), CancelToken())
    assert not np.array_equal(np.asarray(three[0].image), np.asarray(seven[0].image))
    with pytest.raises(UserFacingError, match="draws the classes 0, 1"):
        service.run(Txt2ImgRequest(model=str(folder), prompt="cat", steps=2), Quiet(),
                    CancelToken())
    with pytest.raises(UserFacingError, match="exists already"):
        export_run(rundir.path, tmp_path / "models")


def test_cli_trains_saves_the_model_and_generates_with_it(tmp_path, monkeypatch, capsys):
    from studio.cli import main

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))  # in process: no torch re-import
    assert main(["train", "ddpm", "--steps", "2", "--out", str(tmp_path / "run"), "--export",
                 "tiny", "--set", "batch_size=4", "--set", "width=4"]) == 0
    saved = tmp_path / "home" / "data" / "models" / "ddpm" / "tiny"
    assert (saved / "model_index.json").is_file()
    assert main(["train", "ddpm", "--steps", "1", "--export", "tiny"]) == 2  # before training
    assert "exists already" in capsys.readouterr().err
    assert main(["generate", "--model", "tiny", "--steps", "2", "--seed", "3", "--json",
                 "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["seed"] == 3 and result["prompt"] == ""
    assert main(["generate", "--model", "tiny", "--prompt", "a fox", "--steps", "2",
                 "--device", "cpu"]) != 0
    assert "without classes" in capsys.readouterr().err
    assert main(["generate", "--model", "tiny", "--hires-scale", "2", "--steps", "2"]) == 2
    assert "no hires fix" in capsys.readouterr().err


def test_view_scrubs_noise_and_shows_the_strip(qtbot, qapp):
    from studio.ui.panels.train.views import view_class

    trainer = make()
    run(trainer, 1)
    view = view_class("ddpm")("ddpm")
    qtbot.addWidget(view)
    view.resize(1100, 560)
    view.show()
    view.show_snapshot(trainer.snapshot())
    assert view.strip_image.image.shape == (8 * 17 - 1, 3 * 17 - 1)
    view.scrubber.setValue(0)
    clean = view.scrub_image.image.copy()
    view.scrubber.setValue(999)
    assert not np.array_equal(clean, view.scrub_image.image, equal_nan=True)
    assert view.level_label.text().startswith("t = 999")
    assert set(view.export_items()) >= {"Noise level", "Reverse chain"}


def test_generate_offers_a_class_picker_instead_of_the_prompt(qtbot, qapp):
    from studio.ui.panels.generate.controls import GenerateControls

    controls = GenerateControls()
    qtbot.addWidget(controls)
    controls.show()
    controls.prompt.setPlainText("a lighthouse")
    controls.set_pixel_model([str(d) for d in range(10)], 16)
    assert controls.class_box.isVisible() and not controls.prompt_box.isVisible()
    assert not controls.size_box.isVisible() and not controls.cfg.isEnabled()
    assert "16×16" in controls.class_note.text()
    controls.class_picker.setCurrentIndex(7)
    request = controls.request("digits")
    assert request.prompt == "7" and request.loras == [] and request.negative_prompt == ""
    controls.set_request(request.__class__(model="digits", prompt="3"))
    assert controls.class_picker.currentText() == "3"
    controls.set_pixel_model([], 16)
    assert controls.class_picker.currentText() == "Unconditional"
    assert controls.request("m").prompt == ""
    controls.set_pixel_model(None)  # a Stable Diffusion model again: the prompt is back
    assert controls.prompt_box.isVisible() and controls.request("sd").prompt == "a lighthouse"


@pytest.mark.slow
def test_the_window_exports_the_model_and_generate_lists_it(main_window, qtbot):
    """Train → Runs → Export model to Generate… in the real window (the lesson trains in its
    child process; pausing writes the checkpoint the export reads)."""
    from tests.test_train_a_gui import play_for, wait_for_lesson

    main_window.resize(1480, 920)
    main_window.show()
    panel = main_window.show_workspace("train")
    qtbot.waitUntil(lambda: panel.frames_drawn >= 1, timeout=60000)
    panel.open_lesson("ddpm")
    wait_for_lesson(qtbot, panel, "ddpm")
    assert panel.runs.model_button.text() == "Export model to Generate…"
    panel.set_param("preview_steps", 2)
    play_for(qtbot, panel, 2)
    qtbot.waitUntil(lambda: panel.session.state == "paused", timeout=60000)
    message = panel.export_model(panel.last_frame.run_path, "digits")
    assert message.startswith("Exported digits: Generate lists it with a class picker")
    saved = main_window.ctx.paths.models_dir / "ddpm" / "digits"
    assert (saved / "model_index.json").is_file()
    generate = main_window.show_workspace("generate")
    qtbot.waitUntil(lambda: "digits" in [e.name for e in generate.picker.entries()],
                    timeout=30000)
