"""Model pickers grey out the models that cannot do the job at hand, with the reason: Transform's
Edit tab offers only instruction editors, image to image everything but them, Generate everything
but them (issue 15's "features that do not apply are greyed out with the reason")."""

from __future__ import annotations

import pytest

from studio.ui.widgets.model_picker import LooseModel, ModelPicker
from studio.ui.widgets.model_uses import for_edit, for_generate, for_img2img

pytestmark = pytest.mark.gui

ENTRIES = [LooseModel("sd", "/m/sd", "studio", "diffusers", "sd1"),
           LooseModel("kontext", "/m/kontext", "studio", "diffusers", "flux-kontext"),
           LooseModel("qwen-edit", "/m/qwen-edit", "studio", "diffusers", "qwen-image-edit"),
           LooseModel("mystery", "/m/mystery.safetensors", "file", "single-file", "unknown")]


def _enabled(picker: ModelPicker) -> dict[str, bool]:
    model = picker.combo.model()
    return {picker.combo.itemText(i): model.item(i).isEnabled()
            for i in range(picker.combo.count())}


def test_reasons_name_the_right_place():
    sd, kontext, _, mystery = ENTRIES
    assert for_generate(sd) == "" and for_img2img(sd) == ""
    assert "Transform → Edit with instructions" in for_generate(kontext)
    assert for_img2img(kontext) == "FLUX.1 Kontext edits pictures from instructions: use the " \
                                   "Edit tab."
    assert for_edit(sd) == ("SD 1.x does not edit from instructions: choose FLUX.1 Kontext or "
                            "Qwen-Image-Edit.")
    assert for_edit(kontext) == ""
    # a model whose family the library could not tell is never greyed: the job decides
    assert for_generate(mystery) == for_img2img(mystery) == for_edit(mystery) == ""
    gan = LooseModel("gan", "/m/gan", "studio", "gan", "gan")
    assert "GAN" in for_img2img(gan) and "choose FLUX.1 Kontext" in for_edit(gan)


def test_transform_tabs_grey_out_and_move_off_models_that_cannot(main_window, qtbot):
    main_window.resize(1366, 768)
    main_window.show()
    panel = main_window.show_workspace("transform")
    picker = panel.sd_picker
    qtbot.waitUntil(lambda: not picker.scanning, timeout=10_000)
    picker._scanner = lambda _settings, _paths: list(ENTRIES)
    picker.refresh()
    qtbot.waitUntil(lambda: not picker.scanning and picker.combo.count() == 4, timeout=10_000)
    panel.set_mode("img2img")
    picker.select_model("/m/sd")
    assert _enabled(picker) == {"sd": True, "kontext": False, "qwen-edit": False,
                                "mystery": True}
    tip = picker.combo.itemData(1, 3)  # Qt.ToolTipRole: the reason, then the path
    assert tip.startswith("FLUX.1 Kontext edits pictures from instructions") and "/m/kontext" in tip
    # Edit: the plain model is greyed and the choice moves to the first editor
    panel.set_mode("edit")
    assert _enabled(picker) == {"sd": False, "kontext": True, "qwen-edit": True, "mystery": True}
    assert picker.current().name == "kontext"
    assert picker.detail.text().startswith("FLUX.1 Kontext")  # its family, not a complaint
    # back to image to image: off the editor again
    panel.set_mode("img2img")
    assert picker.current().name == "sd"
    # no usable model at all: the choice stays and the line under the combo says why
    picker.set_usability(lambda entry: "Nothing fits.")
    assert picker.current().name == "sd" and picker.detail.text() == "Nothing fits."
    panel.shutdown()


def test_generate_greys_out_instruction_editors(main_window, qtbot):
    panel = main_window.show_workspace("generate")
    picker = panel.picker
    qtbot.waitUntil(lambda: not picker.scanning, timeout=10_000)
    picker._scanner = lambda _settings, _paths: list(ENTRIES)
    picker.refresh()
    qtbot.waitUntil(lambda: not picker.scanning and picker.combo.count() == 4, timeout=10_000)
    assert _enabled(picker) == {"sd": True, "kontext": False, "qwen-edit": False,
                                "mystery": True}
