"""The dcgan lesson's generator used from Generate: exported into the library as a "gan" model,
drawn by the one engine's text-to-image job (seed → the lesson's own pixels; batches, variation
seeds, PNG metadata), refused by img2img with a sentence, and from the command line:
``studio generate --model NAME --seed S`` and a latent walk written as PNGs and a GIF."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import GanWalkRequest, Txt2ImgRequest
from tests.fixtures.sinks import RecordingSink
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401
from tests.test_cli_basics import run_studio

FAST = {"batch_size": 8, "width": 4, "latent_dim": 4}


@pytest.fixture
def gan():
    """A dcgan trained three steps and exported as "digits-gan"; (trainer, exported)."""
    from studio.pipelines.train.dcgan import DCGANTrainer
    from studio.pipelines.train.export import export_trainer

    trainer = DCGANTrainer(config=FAST, seed=0)
    for _ in range(3):
        trainer.step()
    return trainer, export_trainer(trainer, default_paths().models_dir, "digits-gan")


def lesson_pixels(trainer, seed: int) -> np.ndarray:
    """What the lesson's own generator draws for ``seed``'s noise, as uint8 (16, 16)."""
    z = torch.randn((1, 4), generator=torch.Generator().manual_seed(seed))
    gen = trainer.generator.eval()
    with torch.no_grad():
        x = gen(z).clamp(-1, 1)
    return ((x[0, 0] + 1) * 127.5).round().byte().numpy()


def test_library_lists_a_gan_for_generate(gan):
    from studio.library.catalog import list_models
    from studio.library.models import find_txt2img_models

    _, exported = gan
    settings, paths = Settings(device="cpu"), default_paths()
    (entry,) = [e for e in list_models(settings, paths) if e.name == "digits-gan"]
    assert (entry.kind, entry.kind_title, entry.workspaces) == (
        "gan", "GAN (trained in Studio)", ("Generate",))
    assert entry.detail == "DCGAN, 16×16 grey, 3 steps on digits"
    assert not [e for e in list_models(settings, paths) if e.kind == "unknown"]  # no stray file
    assert [m.format for m in find_txt2img_models(settings, paths)] == ["gan"]  # Generate's list


def test_a_saved_run_exports_the_same_generator(gan, tmp_path):
    from studio.library.gan_models import WEIGHTS_FILE
    from studio.library.safe_load import load_state_dict
    from studio.pipelines.train.export import export_run
    from studio.pipelines.train.runs import Run

    trainer, exported = gan
    run = Run.create(tmp_path / "runs", "dcgan", 0, trainer.config)
    run.save_checkpoint(trainer)
    again = export_run(run.path, default_paths().models_dir)  # named after the run
    assert again.name == run.run_id
    assert (again.path / "gan.json").read_text() == (exported.path / "gan.json").read_text()
    ours, theirs = (load_state_dict(p / WEIGHTS_FILE) for p in (again.path, exported.path))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    fresh = Run.create(tmp_path / "runs", "dcgan", 0, trainer.config)
    with pytest.raises(UserFacingError, match="no checkpoint yet"):
        export_run(fresh.path, default_paths().models_dir)


def test_generate_draws_the_lessons_pixels_with_metadata(gan):
    from studio.media.infotext import parse_infotext
    from studio.pipelines.diffusion.txt2img import Txt2ImgService
    from studio.pipelines.gan.service import PROMPT_UNUSED

    trainer, exported = gan
    settings = Settings(device="cpu")
    service = Txt2ImgService(lambda: settings, default_paths)
    request = Txt2ImgRequest(model=str(exported.path), prompt="a cat", seed=5, count=2,
                             width=64, height=72)
    sink = RecordingSink()
    results = service.run(request, sink, CancelToken())
    assert [r.seed for r in results] == [5, 6] and len(sink.partials) == 2
    for result in results:
        image = Image.open(result.path)
        assert image.size == (64, 64)  # 16 px enlarged 4× (the largest whole factor that fits)
        small = np.asarray(image.convert("L"))[::4, ::4]
        assert np.array_equal(small, lesson_pixels(trainer, result.seed))
        params = parse_infotext(image.text["parameters"])
        assert params["GAN"] == "digits-gan" and params["Seed"] == str(result.seed)
        assert json.loads(image.text["studio"])["request"]["model"] == str(exported.path)
        assert result.warnings == [PROMPT_UNUSED]
    varied = service.run(Txt2ImgRequest(model=str(exported.path), seed=5, width=16, height=16,
                                        variation_seed=9, variation_strength=1.0),
                         RecordingSink(), CancelToken())
    assert np.array_equal(np.asarray(Image.open(varied[0].path).convert("L")),
                          lesson_pixels(trainer, 9))  # strength 1: the variation seed's noise


def test_img2img_and_a_walk_of_a_non_gan_are_refused(gan, tmp_path):
    from studio.core.requests import Img2ImgRequest
    from studio.pipelines.diffusion.img2img import Img2ImgService
    from studio.pipelines.gan.service import GanWalkService

    _, exported = gan
    settings = Settings(device="cpu")
    picture = tmp_path / "p.png"
    Image.new("RGB", (16, 16)).save(picture)
    service = Img2ImgService(lambda: settings, default_paths)
    with pytest.raises(UserFacingError, match="draws from a seed alone and cannot change"):
        service.run(Img2ImgRequest(model=str(exported.path), image=str(picture), prompt="x",
                                   width=16, height=16), RecordingSink(), CancelToken())
    walk = GanWalkService(lambda: settings, default_paths)
    with pytest.raises(UserFacingError):
        walk.run(GanWalkRequest(model=str(tmp_path)), RecordingSink(), CancelToken())
    with pytest.raises(ValueError, match="2 to 240 frames"):
        GanWalkRequest(model="x", frames=1).validate()


def test_cli_generates_by_name_and_writes_a_latent_walk(gan, tmp_path, capsys):
    from studio.cli import main

    trainer, _ = gan
    # in this process (the subprocess below shows the command as a user runs it)
    assert main(["generate", "--model", "digits-gan", "--seed", "3", "--width", "32",
                 "--height", "32", "--out", str(tmp_path / "one")]) == 0
    (path,) = capsys.readouterr().out.split()
    assert np.array_equal(np.asarray(Image.open(path).convert("L"))[::2, ::2],
                          lesson_pixels(trainer, 3))
    out = run_studio("generate", "--model", "digits-gan", "--seed", "3", "--walk-to", "8",
                     "--frames", "4", "--gif", "--width", "16", "--height", "16", "--json",
                     "--out", str(tmp_path / "walk"))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["kind"] for r in rows] == ["frame"] * 4 + ["gif"]
    frames = [np.asarray(Image.open(r["path"]).convert("L")) for r in rows[:4]]
    assert np.array_equal(frames[0], lesson_pixels(trainer, 3))  # the walk starts at seed 3
    assert np.array_equal(frames[-1], lesson_pixels(trainer, 8))  # and ends at seed 8
    with Image.open(rows[-1]["path"]) as gif:
        assert gif.n_frames == 4


def test_generate_greys_out_the_prompt_for_a_gan(qtbot):
    from studio.ui.panels.generate.controls import GAN_PROMPT_HINT, GenerateControls

    controls = GenerateControls()
    qtbot.addWidget(controls)
    controls.prompt.setPlainText("a lighthouse")
    controls.set_family("gan")
    assert not controls.prompt.isEnabled() and not controls.steps.isEnabled()
    assert controls.prompt.placeholderText() == controls.prompt.toolTip() == GAN_PROMPT_HINT
    request = controls.request("/models/gan/digits", seed=4)
    assert (request.prompt, request.loras, request.seed) == ("", [], 4)
    controls.set_family("sd1")  # the prompt comes back as it was
    assert controls.prompt.isEnabled() and controls.request("m").prompt == "a lighthouse"


def test_the_generate_panel_draws_with_a_gan(gan, qtbot):
    from PySide6.QtCore import Qt

    from studio.core.jobs import JobState
    from studio.ui.panels.generate import GeneratePanel
    from tests.gui_fixtures import app_context

    trainer, exported = gan
    ctx = app_context(Settings(device="cpu"))
    panel = GeneratePanel(ctx)  # the real scanner finds the exported GAN in the models folder
    qtbot.addWidget(panel)
    try:
        panel.show()
        qtbot.waitUntil(lambda: not panel.picker.scanning, timeout=30_000)
        assert panel.picker.current_model() == str(exported.path)
        assert not panel.controls.prompt.isEnabled()  # the prompt says it is not used
        panel.controls.width_box.setValue(96)
        panel.controls.height_box.setValue(64)
        panel.controls.seed_mode.setCurrentIndex(1)  # fixed
        panel.controls.seed.setValue(7)
        with qtbot.waitSignal(panel.jobFinished, timeout=60_000) as sig:
            qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
        assert sig.args[0].state is JobState.DONE, sig.args[0].error
        qtbot.waitUntil(lambda: panel.strip.count() == 1, timeout=5000)
        assert panel.preview.status.text() == "Seed 7 · 64×64 · GAN"
        # the latent walk, as the CLI's --walk-to 9 --frames 3 --gif: the same gan-walk job
        assert panel.controls.walk_box.isVisible()
        panel.controls.walk_to.setValue(9)
        panel.controls.walk_frames.setValue(3)
        written: list = []
        ctx.outputWritten.connect(written.append)
        with qtbot.waitSignal(panel.jobFinished, timeout=60_000) as sig:
            qtbot.mouseClick(panel.controls.walk_button, Qt.MouseButton.LeftButton)
        assert sig.args[0].state is JobState.DONE, sig.args[0].error
        qtbot.waitUntil(lambda: panel.strip.count() == 5, timeout=5000)  # 3 frames + the GIF
        assert [p.suffix for p in written] == [".png"] * 3 + [".gif"]
        assert np.array_equal(np.asarray(Image.open(written[0]).convert("L"))[::4, ::4],
                              lesson_pixels(trainer, 7))  # from the seed (64 px: 4×)
        assert np.array_equal(np.asarray(Image.open(written[2]).convert("L"))[::4, ::4],
                              lesson_pixels(trainer, 9))  # to "Walk to seed"
        with Image.open(written[3]) as gif:
            assert gif.n_frames == 3
    finally:
        ctx.bridge.shutdown()
        panel.shutdown()
