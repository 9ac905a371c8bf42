"""The denoising timeline: a bounded, evenly thinned film of each image's step previews, kept by
txt2img (every family's previews; the image itself unchanged), saved as GIF/APNG, walked by the
Generate scrubber and written by ``studio generate --timeline``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import Txt2ImgRequest
from studio.media.timeline import (
    FILM_SIDE,
    STEP_SIDE,
    Timeline,
    default_film_path,
    film_path_problem,
    save_film,
)
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink
from tests.test_gui_panels_generate import ctx  # noqa: F401 - the Generate panel's fixture


def _frame(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value % 256, dtype=np.uint8)


def _run(timeline: Timeline, steps: int, start: int = 1) -> None:
    for step in range(start, steps + 1):
        timeline.offer(step, steps, _frame(step), timestep=1000 - step, sigma=1.0 / step)


# -- bounding and thinning ------------------------------------------------------------------
def test_short_runs_keep_every_step_and_the_finished_image():
    timeline = Timeline(limit=60)
    _run(timeline, 20)
    timeline.finish(Image.new("RGB", (40, 30), "red"))
    frames = timeline.frames
    assert [f.step for f in frames[:-1]] == list(range(1, 21))
    assert frames[-1].final and frames[-1].image.shape == (30, 40, 3)
    assert frames[4].describe() == "Step 5 of 20 · timestep 995 · σ 0.2"
    assert frames[-1].describe() == "The finished image"


@pytest.mark.parametrize("steps", [61, 150, 1000])
def test_long_runs_are_thinned_evenly_within_the_limit(steps):
    timeline = Timeline(limit=60)
    _run(timeline, steps)
    timeline.finish(_frame(0, 16))
    frames = timeline.frames
    assert len(frames) <= 60
    assert len(frames) >= 60 // 2 - 2
    steps_kept = [f.step for f in frames[:-1]]
    assert steps_kept[0] == 1 and steps_kept[-1] == steps  # first and last step always
    gaps = {b - a for a, b in zip(steps_kept[:-1], steps_kept[1:], strict=True)}
    assert len(gaps - {max(gaps)}) <= 1  # one stride, the last step's gap may be shorter
    assert max(gaps) == timeline.stride


def test_a_picture_is_only_made_for_a_kept_step():
    timeline = Timeline(limit=4)
    made = []

    def picture(step):
        def make():
            made.append(step)
            return _frame(step)
        return make

    for step in range(1, 17):
        timeline.offer(step, 16, picture(step))
    assert len(made) < 16 and made[-1] == 16
    assert [f.step for f in timeline.frames] == sorted({f.step for f in timeline.frames})
    assert len(timeline) <= 4


def test_frames_are_small_copies():
    timeline = Timeline()
    big = np.zeros((1024, 768, 3), dtype=np.uint8)
    timeline.offer(1, 2, big)
    big[:] = 255  # the caller's buffer may be reused
    timeline.finish(np.zeros((2048, 2048, 3), dtype=np.uint8))
    step, final = timeline.frames
    assert max(step.image.shape[:2]) == STEP_SIDE and step.image.max() == 0
    assert final.image.shape == (FILM_SIDE, FILM_SIDE, 3)


def test_a_second_pass_is_labelled_and_steps_without_a_picture_do_not_count():
    timeline = Timeline()
    for step in range(1, 5):  # TAESD every 2nd step
        timeline.offer(step, 4, _frame(step) if step % 2 == 0 else None)
    _run(timeline, 3)  # the hires pass starts again at step 1
    stages = [(f.stage, f.step) for f in timeline.frames]
    assert stages == [(1, 2), (1, 4), (2, 1), (2, 2), (2, 3)]
    assert timeline.frames[-1].describe().startswith("Hires pass · step 3 of 3")


# -- the film --------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".gif", ".png"])
def test_film_has_every_frame_at_one_size(tmp_path, suffix):
    timeline = Timeline()
    _run(timeline, 5)
    timeline.finish(Image.new("RGB", (24, 16), "blue"))
    path = save_film(timeline.frames, tmp_path / f"film{suffix}")
    with Image.open(path) as film:
        assert getattr(film, "n_frames", 1) == 6
        assert film.size == (24, 16)
        if suffix == ".png":
            assert film.format == "PNG" and film.is_animated


def test_mp4_film_decodes_back_to_every_frame_at_its_size_and_times(tmp_path):
    import av

    timeline = Timeline()
    _run(timeline, 5)
    timeline.finish(Image.new("RGB", (24, 16), "blue"))
    path = save_film(timeline.frames, tmp_path / "film.mp4", frame_ms=80, last_ms=1500)
    with av.open(str(path)) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = list(video.decode(stream))
        duration = float(stream.duration * stream.time_base)
    assert len(frames) == 6 and {(f.width, f.height) for f in frames} == {(24, 16)}
    assert [round(float(f.pts * f.time_base) * 1000) for f in frames] == [0, 80, 160, 240, 320,
                                                                          400]
    assert duration == pytest.approx(1.9)  # the finished image is held 1.5 s
    last = frames[-1].to_ndarray(format="rgb24").astype(int)
    assert abs(last[..., 2].mean() - 255) < 8 and last[..., :2].mean() < 8  # blue, as given
    # An odd size is made even (H.264 4:2:0 needs it); still every frame.
    odd = Timeline()
    _run(odd, 2)
    odd.finish(Image.new("RGB", (25, 15), "red"))
    with av.open(str(save_film(odd.frames, tmp_path / "odd.mp4"))) as video:
        assert [(f.width, f.height) for f in video.decode(video=0)] == [(24, 14)] * 3


def test_film_path_must_be_gif_mp4_or_png(tmp_path, monkeypatch):
    assert film_path_problem(tmp_path / "a.gif") == ""
    assert film_path_problem(tmp_path / "a.mp4") == ""
    assert ".gif, .mp4 (video) or .png" in film_path_problem(tmp_path / "a.webm")
    monkeypatch.setitem(sys.modules, "av", None)  # an installation without PyAV
    assert "PyAV (the 'av' package), which is missing" in film_path_problem(tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="gif, .mp4"):
        save_film([], tmp_path / "a.jpg")
    assert default_film_path(tmp_path / "00012-5.png") == tmp_path / "00012-5.timeline.gif"


# -- from a tiny SD run ---------------------------------------------------------------------
def _generate(model, preview_mode="off", frames=60, **fields):
    settings = Settings(device="cpu", precision="fp32", preview_mode=preview_mode,
                        timeline_frames=frames)
    service = Txt2ImgService(lambda: settings, default_paths)
    request = Txt2ImgRequest(model=str(model), prompt="a red barn", seed=3,
                             **{"steps": 4, "width": 32, "height": 32, **fields})
    return service.run(request, RecordingSink(), CancelToken())


def test_txt2img_keeps_a_timeline_per_image_and_the_same_image(tiny_sd15_dir):
    with_film = _generate(tiny_sd15_dir, scheduler="euler", count=2)
    without = _generate(tiny_sd15_dir, frames=0, scheduler="euler", count=2)
    for kept, plain in zip(with_film, without, strict=True):
        assert np.array_equal(np.asarray(kept.image), np.asarray(plain.image))
        assert plain.timeline is None
        frames = kept.timeline.frames
        assert [f.step for f in frames] == [1, 2, 3, 4, 4] and frames[-1].final
        assert frames[0].image.shape == (4, 4, 3)  # the fast latent→RGB picture, previews off
        sigmas = [f.sigma for f in frames[:-1]]
        assert sigmas == sorted(sigmas, reverse=True) and sigmas[-1] == 0.0
        assert all(f.timestep is not None for f in frames[:-1])
    assert not np.array_equal(with_film[0].timeline.frames[0].image,
                              with_film[1].timeline.frames[0].image)


@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_every_family_films_its_steps(request, family):
    model = request.getfixturevalue(f"tiny_{family}_dir")
    (result,) = _generate(model, steps=2, width=64, height=64, cfg=1.0)
    frames = result.timeline.frames
    assert [f.step for f in frames] == [1, 2, 2] and frames[-1].final
    assert frames[0].image.shape == (8, 8, 3)  # FLUX's packed latents unpacked first
    assert frames[-1].image.shape == (64, 64, 3)
    sigmas = [f.sigma for f in frames[:-1]]
    assert sigmas[0] > sigmas[1] == 0.0


def test_ddim_noise_levels_come_from_the_alphas(tiny_sd15_dir):
    (result,) = _generate(tiny_sd15_dir, scheduler="ddim", steps=3)
    sigmas = [f.sigma for f in result.timeline.frames[:-1]]
    assert all(s is not None for s in sigmas) and sigmas[-1] == 0.0
    assert sigmas == sorted(sigmas, reverse=True)


def test_hires_fix_films_both_passes(tiny_sd15_dir):
    (result,) = _generate(tiny_sd15_dir, preview_mode="fast", steps=2, scheduler="euler", hires=True,
                          hires_scale=2.0, hires_steps=2, hires_denoise=1.0,
                          hires_upscaler="Lanczos")
    frames = result.timeline.frames
    assert [f.stage for f in frames] == [1, 1, 2, 2, 0]
    assert frames[-1].image.shape == (64, 64, 3)


# -- studio generate --timeline ---------------------------------------------------------------
def _cli(model, tmp_path, *extra):
    from tests.fixtures.cli_run import studio_in_process

    return studio_in_process("generate", "--model", str(model), "--prompt", "a red barn",
                             "--steps", "3", "--width", "32", "--height", "32", "--seed", "1",
                             "--scheduler", "euler", "--out", str(tmp_path / "pics"), "--json",
                             *extra)


def test_cli_timeline_beside_each_image_and_into_a_file(tiny_sd15_dir, tmp_path):
    import json

    out = _cli(tiny_sd15_dir, tmp_path, "--count", "2", "--timeline")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    for row in rows:
        film = Path(row["timeline"])
        assert film == default_film_path(Path(row["path"]))
        with Image.open(film) as gif:
            assert gif.format == "GIF" and gif.n_frames == 4  # 3 steps and the image

    named = _cli(tiny_sd15_dir, tmp_path, "--timeline", str(tmp_path / "film.png"))
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["timeline"] == str(tmp_path / "film.png")
    with Image.open(tmp_path / "film.png") as apng:
        assert apng.is_animated and apng.n_frames == 4


def test_cli_timeline_bad_file_is_a_usage_error(tiny_sd15_dir, tmp_path):
    out = _cli(tiny_sd15_dir, tmp_path, "--timeline", str(tmp_path / "film.webm"))
    assert out.returncode == 2 and "film.webm: a timeline is saved as .gif, .mp4" in out.stderr
    out = _cli(tiny_sd15_dir, tmp_path, "--timeline", str(tmp_path / "nowhere" / "film.gif"))
    assert out.returncode == 2 and "does not exist" in out.stderr
    assert not (tmp_path / "pics").exists() or not any((tmp_path / "pics").iterdir())


def test_cli_img2img_timeline_as_mp4(tiny_sd15_dir, tmp_path):
    """img2img films its steps too (strength 0.5 of 6 steps: 3 denoised), here as a video."""
    import json

    import av

    from tests.fixtures.cli_run import studio_in_process

    source = tmp_path / "in.png"
    Image.new("RGB", (40, 32), (200, 60, 30)).save(source)
    common = ("img2img", "--model", str(tiny_sd15_dir), "--image", str(source), "--prompt",
              "a barn", "--steps", "6", "--strength", "0.5", "--seed", "1", "--scheduler",
              "euler", "--out", str(tmp_path / "pics"), "--json")
    out = studio_in_process(*common, "--timeline", str(tmp_path / "film.mp4"))
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["timeline"] == str(tmp_path / "film.mp4")
    with av.open(row["timeline"]) as video:
        frames = [(f.width, f.height) for f in video.decode(video=0)]
    assert frames == [(40, 32)] * 4  # 3 steps and the image, at the image's size
    refused = studio_in_process(*common, "--timeline", "--sd-upscale", "2")
    assert refused.returncode == 2 and "--sd-upscale denoises tile by tile" in refused.stderr


# -- the Generate scrubber ------------------------------------------------------------------
class _Filming:
    """A progress sink that gives each finished image a timeline of its steps (frame k is
    shade 40·k), as txt2img does."""

    def __init__(self, progress):
        self._progress = progress

    def __call__(self, step, total, preview=None):
        self._progress(step, total, preview)

    def message(self, text):
        self._progress.message(text)

    def partial(self, result):
        steps = result.request.steps
        timeline = Timeline()
        for step in range(1, steps + 1):
            timeline.offer(step, steps, _frame(40 * step), 1000 - 100 * step, 10.0 / step)
        timeline.finish(result.image)
        result.timeline = timeline
        self._progress.partial(result)


@pytest.fixture
def filming_panel(qtbot, ctx):  # noqa: F811 - ctx is the Generate panel tests' fixture
    from tests.test_gui_panels_generate import FakeTxt2Img, fill, make_panel

    fake = FakeTxt2Img(ctx.paths.outputs_dir)
    ctx.bridge.engine.register("txt2img", lambda r, p, c: fake(r, _Filming(p), c))
    panel = make_panel(qtbot, ctx)
    fill(panel, steps=4, size=(64, 64))
    return panel


def _shown_colour(panel):
    view = panel.preview.view
    image = view._item.pixmap().toImage()
    return image.size().toTuple(), image.pixelColor(32, 32).getRgb()[:3]


@pytest.mark.gui
def test_scrubber_walks_the_frames_of_the_shown_image(qtbot, filming_panel, tmp_path):
    panel = filming_panel
    assert panel.timeline.isHidden()
    with qtbot.waitSignal(panel.jobFinished, timeout=10_000):
        job = panel.generate()
    scrubber = panel.timeline
    assert scrubber.isVisible() and len(scrubber.frames) == 5
    assert scrubber.caption_text() == "Frame 5 of 5 · The finished image"
    result = job.snapshot.partials[0]
    assert result.timeline is None  # the panel holds it, not the job or the strip
    finished = _shown_colour(panel)

    caption = panel.preview.status.text()
    assert caption.startswith("Seed ")
    scrubber.show_frame(1)
    assert scrubber.caption_text() == "Frame 2 of 5 · Step 2 of 4 · timestep 800 · σ 5"
    assert panel.preview.status.text() == scrubber.caption_text()  # the status line says it
    assert scrubber.counter.text() == "2/5"
    assert _shown_colour(panel) == ((64, 64), (80, 80, 80))  # frame 2, at the image's size
    qtbot.mouseClick(scrubber.back, Qt.MouseButton.LeftButton)
    assert scrubber.index == 0 and not scrubber.back.isEnabled()
    assert _shown_colour(panel)[1] == (40, 40, 40)
    scrubber.show_frame(4)
    assert _shown_colour(panel) == finished and panel.preview.status.text() == caption

    with qtbot.waitSignal(scrubber.saved, timeout=10_000) as saved:
        scrubber.save_to(tmp_path / "film.gif")
    assert saved.args[0] == tmp_path / "film.gif"
    assert "Timeline saved" in panel.preview.status.text()
    with Image.open(tmp_path / "film.gif") as gif:
        assert gif.n_frames == 5
    with qtbot.waitSignal(scrubber.saved, timeout=10_000):
        scrubber.save_to(tmp_path / "film.mp4")
    import av

    with av.open(str(tmp_path / "film.mp4")) as video:
        assert [(f.width, f.height) for f in video.decode(video=0)] == [(64, 64)] * 5
    with qtbot.waitSignal(scrubber.failed, timeout=2000) as failed:
        scrubber.save_to(tmp_path / "film.webm")
    assert "gif, .mp4 (video) or .png" in failed.args[0] and panel.preview.error_card.isVisible()


@pytest.mark.gui
def test_scrubber_follows_the_image_chosen_in_the_strip(qtbot, filming_panel):
    from studio.ui.panels.generate.timeline import TimelineStore

    panel = filming_panel
    for steps in (4, 2):
        panel.controls.steps.setValue(steps)
        with qtbot.waitSignal(panel.jobFinished, timeout=10_000):
            panel.generate()
    assert len(panel.timeline.frames) == 3  # the newest image: 2 steps and the image
    older = panel.strip.item(0)
    rect = panel.strip.visualItemRect(older)
    qtbot.mouseClick(panel.strip.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.timeline.isVisible() and len(panel.timeline.frames) == 5

    store = TimelineStore(limit=3)  # only the last few images keep theirs
    for n in range(5):
        store.add(f"/img/{n}.png", n)
    assert len(store) == 3 and store.get("/img/1.png") is None and store.get("/img/4.png") == 4


def test_the_setting_is_bounded_and_zero_keeps_none():
    assert Settings(timeline_frames=999).validated().timeline_frames == 60
    assert Settings(timeline_frames=-1).validated().timeline_frames == 60
    assert Settings(timeline_frames=0).validated().timeline_frames == 0


def test_a_pass_retried_after_running_out_of_memory_films_once():
    import torch

    from studio.pipelines.diffusion.previews import Previewer

    previewer = Previewer("off", "sd1")
    previewer.keep_timelines(60)
    latents = torch.zeros((1, 4, 2, 2))

    def attempt(steps, upto):
        for step in range(1, upto + 1):
            previewer.keep(0, step, steps, latents, None)

    back = previewer.timeline_mark(0)  # as render_image marks before its call
    attempt(3, 2)  # out of memory at step 2 …
    back()  # … so the retry starts the film again
    attempt(3, 3)
    back = previewer.timeline_mark(0)  # the hires pass, retried the same way
    attempt(2, 1)
    back()
    attempt(2, 2)
    timeline = previewer.take_timeline(0)
    assert [(f.stage, f.step) for f in timeline.frames] == [(1, 1), (1, 2), (1, 3), (2, 1),
                                                            (2, 2)]
    assert previewer.take_timeline(0) is None  # handed over once
