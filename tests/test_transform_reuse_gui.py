"""Gallery → Transform: "Reuse parameters" on a Transform result opens Transform with its source
image, mask and every setting, and running it again makes the same image; missing files are said.
The real window, the real buttons and menu actions, real jobs with tiny models."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt

from studio.core.requests import Img2ImgRequest, TransformRequest
from studio.media.outputs import save_image_with_metadata, save_img2img_image
from studio.ui.widgets.image_actions import find_action
from studio.ui.widgets.mask_canvas import mask_array

pytestmark = pytest.mark.gui


def _photo(path, w=80, h=64, seed=0):
    rng = np.random.default_rng(seed)
    small = (rng.random((8, 10, 3)) * 255).astype(np.uint8)
    Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).save(path)
    return path


@pytest.fixture
def window(main_window, qtbot):
    main_window.resize(1360, 860)
    main_window.show()
    qtbot.waitExposed(main_window)
    yield main_window
    for key in ("transform", "gallery"):
        panel = main_window.panel(key, create=False)
        if panel is not None:
            panel.shutdown()


def _run(qtbot, panel):
    with qtbot.waitSignal(panel.jobFinished, timeout=120_000) as done:
        panel.run_button.click()
    job = done.args[0]
    assert job.state.value == "done", job.error
    return panel.last_result


def _gallery_select(qtbot, window, path):
    """Show the Gallery, select ``path`` and wait for its metadata."""
    gallery = window.show_workspace("gallery")
    qtbot.waitUntil(lambda: gallery.model.row_of(str(path)) >= 0, timeout=10_000)
    assert gallery.select_path(path)
    qtbot.waitUntil(lambda: gallery.details.meta is not None, timeout=10_000)
    return gallery


def test_inpaint_result_reused_from_the_gallery_repeats_exactly(window, qtbot, tmp_path,
                                                                 tiny_sd15_dir, screenshot):
    panel = window.show_workspace("transform")
    qtbot.waitUntil(lambda: not panel.sd_picker.scanning, timeout=10_000)
    panel.sd_picker.select_model(str(tiny_sd15_dir))
    source = _photo(tmp_path / "room.png")
    panel.receive(source)
    panel.set_mode("inpaint")
    panel.canvas.brush_size = 18
    panel.canvas.paint_line(QPointF(15, 30), QPointF(55, 34))
    d = panel.diffusion
    d.prompt.setPlainText("a round window")
    d.negative.setPlainText("blurry")
    d.strength.setValue(0.7)
    d.steps.setValue(3)
    d.cfg.setValue(6.0)
    d.scheduler.setCurrentIndex(d.scheduler.findData("euler_a"))
    d.seed_mode.setCurrentIndex(d.seed_mode.findData("fixed"))
    d.seed.setValue(4321)
    first = _run(qtbot, panel)
    mask_file = first.request.mask
    painted = mask_array(panel.canvas.mask()).copy()

    # Change everything, so the reuse has something to restore.
    panel.set_mode("cyclegan")
    d.prompt.setPlainText("something else")
    d.strength.setValue(0.3)
    d.steps.setValue(9)
    d.cfg.setValue(2.0)
    d.scheduler.setCurrentIndex(d.scheduler.findData("ddim"))
    d.seed_mode.setCurrentIndex(d.seed_mode.findData("random"))
    panel.receive(_photo(tmp_path / "other.png", 40, 40, seed=5))

    gallery = _gallery_select(qtbot, window, first.path)
    details = gallery.details
    qtbot.waitUntil(lambda: details.transform_reuse is not None, timeout=10_000)
    assert details.reuse_button.isEnabled()
    assert "Transform" in details.reuse_button.toolTip()
    assert details.fields["source"].text() == "Studio · inpaint, strength 0.7"
    assert details.fields["seed"].text() == "4321"
    qtbot.waitUntil(lambda: not details.image.image().isNull(), timeout=10_000)
    screenshot(window, "gallery-inpaint-result")
    qtbot.mouseClick(details.reuse_button, Qt.MouseButton.LeftButton)

    assert window.current_workspace() == "transform"
    assert panel.mode == "inpaint" and panel.image_path == source
    assert panel.view_stack.currentWidget() is panel.canvas
    assert np.array_equal(mask_array(panel.canvas.mask()), painted)
    assert panel.sd_picker.current_model() == str(tiny_sd15_dir)
    assert d.prompt.toPlainText() == "a round window" and d.negative.toPlainText() == "blurry"
    assert (d.strength.value(), d.steps.value(), d.cfg.value()) == (0.7, 3, 6.0)
    assert d.scheduler.currentData() == "euler_a"
    assert d.seed_mode.currentData() == "fixed" and d.seed.seed() == 4321
    assert "restored" in panel.status.text() and "no longer" not in panel.status.text()
    screenshot(window, "transform-reused-inpaint")

    again = _run(qtbot, panel)
    assert again.path != first.path and again.request.mask != mask_file  # a new job, new files
    assert np.array_equal(np.asarray(Image.open(again.path)), np.asarray(Image.open(first.path)))


def test_missing_source_and_mask_are_said_and_the_result_is_opened(window, qtbot, tmp_path):
    source = _photo(tmp_path / "gone.png")
    mask = tmp_path / "gone-mask.png"
    Image.new("L", (80, 64), 255).save(mask)
    request = Img2ImgRequest(model="/models/sd15", image=str(source), mask=str(mask),
                             prompt="a bridge", strength=0.5, steps=8, cfg=4.0, seed=77)
    result, _ = save_img2img_image(Image.open(source), request, 77, window.ctx.paths.outputs_dir,
                                   model_name="sd15", model_hash="", sampler="Euler",
                                   schedule_type="Automatic")
    source.unlink()
    mask.unlink()
    gallery = _gallery_select(qtbot, window, result)
    index = gallery.model.index(gallery.model.row_of(str(result)))
    find_action(gallery.context_menu_for(index), "reuseParameters").trigger()

    panel = window.panel("transform")
    assert window.current_workspace() == "transform"
    assert panel.mode == "inpaint" and panel.image_path == result
    assert not panel.canvas.has_mask()
    status = panel.status.text()
    assert "gone.png) no longer exists" in status and "opened this result" in status
    assert "gone-mask.png) no longer exists" in status
    assert panel.diffusion.prompt.toPlainText() == "a bridge"
    # Selected once the panel's first model scan ends, listed though it is not installed.
    qtbot.waitUntil(lambda: panel.sd_picker.current_model() == "/models/sd15", timeout=10_000)
    assert panel.run() == [] and "Paint over" in panel.error_label.text()


def test_dropped_transform_result_reuses_in_transform(window, qtbot, tmp_path):
    from studio.ui.reuse_dialog import ImageParametersDialog

    source = _photo(tmp_path / "street.png")
    request = Img2ImgRequest(model="/models/sd15", image=str(source), prompt="at night",
                             strength=0.45, seed=3)
    result, _ = save_img2img_image(Image.open(source), request, 3, tmp_path / "elsewhere",
                                   model_name="sd15", model_hash="", sampler="Euler",
                                   schedule_type="Automatic")
    dialog = ImageParametersDialog.for_file(result, window.ctx, window)
    qtbot.addWidget(dialog)
    assert dialog.reuse_button is not None and "Transform" in dialog.reuse_button.toolTip()
    qtbot.mouseClick(dialog.reuse_button, Qt.MouseButton.LeftButton)
    panel = window.panel("transform")
    assert window.current_workspace() == "transform"
    assert panel.mode == "img2img" and panel.image_path == source
    assert panel.diffusion.strength.value() == 0.45 and panel.diffusion.seed.seed() == 3


def test_cyclegan_result_reused_with_model_direction_and_max_side(window, qtbot, tmp_path,
                                                                  screenshot):
    import torch

    from tests.fixtures.tiny_cyclegan import tiny_generator

    pair = window.ctx.paths.models_dir / "cyclegan" / "mystyle"
    pair.mkdir(parents=True)
    torch.save(tiny_generator(6, 4, seed=2).state_dict(), pair / "latest_net_G_A.pth")
    torch.save(tiny_generator(6, 4, seed=3).state_dict(), pair / "latest_net_G_B.pth")
    single = window.ctx.paths.models_dir / "cyclegan" / "other_pretrained"
    single.mkdir(parents=True)
    torch.save(tiny_generator(6, 4, seed=4).state_dict(), single / "latest_net_G.pth")
    panel = window.show_workspace("transform")
    panel.cyclegan.refresh()
    qtbot.waitUntil(lambda: not panel.cyclegan.scanning and len(panel.cyclegan.models()) == 2,
                    timeout=10_000)
    assert panel.cyclegan.select_path(str(pair))
    options = panel.cyclegan_options
    options.direction.setCurrentIndex(options.direction.findData("BtoA"))
    options.max_side.setValue(64)
    source = _photo(tmp_path / "horse.png", 96, 72)
    panel.receive(source)
    first = _run(qtbot, panel)
    assert Image.open(first.path).size == (64, 48)

    assert panel.cyclegan.select_path(str(single / "latest_net_G.pth"))  # one-way model
    options.max_side.setValue(0)
    gallery = _gallery_select(qtbot, window, first.path)
    qtbot.waitUntil(lambda: gallery.details.transform_reuse is not None, timeout=10_000)
    assert gallery.details.fields["model"].text() == "mystyle · B → A"
    assert gallery.details.fields["source"].text() == "Studio · CycleGAN"
    qtbot.waitUntil(lambda: not gallery.details.image.image().isNull(), timeout=10_000)
    screenshot(window, "gallery-cyclegan-result")
    qtbot.mouseClick(gallery.details.reuse_button, Qt.MouseButton.LeftButton)

    assert window.current_workspace() == "transform"
    assert panel.mode == "cyclegan" and panel.image_path == source
    assert panel.cyclegan.current().name == "mystyle"
    assert options.direction.currentData() == "BtoA" and options.max_side.value() == 64
    qtbot.wait(100)  # let the layout take in the new texts before the picture
    screenshot(window, "transform-reused-cyclegan")
    again = _run(qtbot, panel)
    assert np.array_equal(np.asarray(Image.open(again.path)), np.asarray(Image.open(first.path)))

    # A model installed since the panel read its list, reused while it reads it again: chosen,
    # with its direction, when the list arrives.
    late = window.ctx.paths.models_dir / "cyclegan" / "latestyle"
    late.mkdir()
    for name in ("latest_net_G_A.pth", "latest_net_G_B.pth"):
        (late / name).write_bytes((pair / name).read_bytes())
    made = TransformRequest(model=str(late), inputs=[str(source)], direction="BtoA",
                            max_side=32)
    result = save_image_with_metadata(Image.open(source), window.ctx.paths.outputs_dir, "late",
                                      "", {"transform": made.to_dict(), "source": str(source)})
    gallery = _gallery_select(qtbot, window, result)
    index = gallery.model.index(gallery.model.row_of(str(result)))
    options.direction.setCurrentIndex(options.direction.findData("AtoB"))
    panel.cyclegan.refresh()
    assert panel.cyclegan.scanning and not panel.cyclegan.select_path(str(late))
    find_action(gallery.context_menu_for(index), "reuseParameters").trigger()
    qtbot.waitUntil(lambda: not panel.cyclegan.scanning, timeout=10_000)
    assert panel.cyclegan.current().name == "latestyle"
    assert options.direction.currentData() == "BtoA" and options.max_side.value() == 32
