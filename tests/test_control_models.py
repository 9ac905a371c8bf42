"""ControlNet's model-based preprocessors (issue 14): depth and openpose from models in the
Hugging Face cache, checked against the transformers models run by hand; without a model, the
sentence with the download line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import Qt

from studio.core.jobs import UserFacingError
from studio.library import preprocessor_models
from studio.pipelines.diffusion import control_models, controlnet
from tests.fixtures.hub_cache import add_to_hub_cache


def _photo() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))


def _tiny_depth(folder):
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=64, image_size=56, patch_size=14,
                            out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 64],
                                 fusion_hidden_size=16, head_hidden_size=8,
                                 reassemble_hidden_size=32, patch_size=14)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True,
                      ensure_multiple_of=14, do_pad=False).save_pretrained(folder)
    return folder


def _tiny_pose(folder):
    from transformers import (
        VitPoseBackboneConfig,
        VitPoseConfig,
        VitPoseForPoseEstimation,
        VitPoseImageProcessor,
    )

    torch.manual_seed(0)
    backbone = VitPoseBackboneConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, image_size=[64, 48],
                                     patch_size=[16, 16], out_indices=[2])
    config = VitPoseConfig(backbone_config=backbone, num_labels=17)
    VitPoseForPoseEstimation(config).save_pretrained(folder)
    VitPoseImageProcessor(size={"height": 64, "width": 48}).save_pretrained(folder)
    return folder


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf"


def test_without_a_model_the_preprocessor_says_what_to_download(hf_home):
    assert preprocessor_models.find("depth") is None
    for name, line in (("depth", "hf download depth-anything/Depth-Anything-V2-Small-hf"),
                       ("openpose", "hf download usyd-community/vitpose-base-simple")):
        with pytest.raises(UserFacingError, match=line):
            controlnet.preprocess(name, _photo())


def test_depth_is_the_cached_model_s_depth_scaled_near_white(hf_home, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    snap = add_to_hub_cache(hf_home, "depth-anything/Depth-Anything-V2-Small-hf",
                            _tiny_depth(tmp_path / "depth"))
    assert preprocessor_models.find("depth") == snap
    image = _photo()
    made = np.asarray(controlnet.preprocess("depth", image))
    assert made.shape == (48, 64, 3) and made.min() == 0 and made.max() == 255

    processor = AutoImageProcessor.from_pretrained(str(snap))
    model = AutoModelForDepthEstimation.from_pretrained(str(snap)).eval()
    with torch.no_grad():
        predicted = model(**processor(images=image, return_tensors="pt")).predicted_depth
    depth = torch.nn.functional.interpolate(predicted[:, None], size=(48, 64), mode="bicubic",
                                            align_corners=False)[0, 0].numpy()
    expected = np.round((depth - depth.min()) / (depth.max() - depth.min()) * 255)
    assert np.abs(made[..., 0].astype(float) - expected).max() <= 1  # the same map


def test_openpose_draws_the_pose_model_s_keypoints_as_openpose_does(hf_home, tmp_path):
    add_to_hub_cache(hf_home, "usyd-community/vitpose-base-simple", _tiny_pose(tmp_path / "pose"))
    image = _photo()
    keypoints, scores = control_models.pose_keypoints(image)
    assert keypoints.shape == (17, 2) and scores.shape == (17,)
    made = controlnet.preprocess("openpose", image)
    assert made.size == image.size
    expected = control_models.draw_openpose(keypoints, scores, 64, 48)
    assert np.array_equal(np.asarray(made), np.asarray(expected))


def test_the_skeleton_has_openpose_s_colours_and_leaves_out_unsure_points():
    keypoints = np.array([[6 + (i % 5) * 12, 6 + (i // 5) * 12] for i in range(17)], dtype=float)
    scores = np.ones(17)
    scores[0] = 0.1  # the nose: unsure
    drawn = np.asarray(control_models.draw_openpose(keypoints, scores, 64, 64))
    right_shoulder = keypoints[6].round().astype(int)
    assert drawn[right_shoulder[1], right_shoulder[0]].tolist() == [255, 170, 0]  # OpenPose's 2
    nose = keypoints[0].round().astype(int)
    assert drawn[nose[1], nose[0]].tolist() == [0, 0, 0]  # not drawn
    assert drawn[0, 0].tolist() == [0, 0, 0]


def test_the_window_greys_out_a_preprocessor_whose_model_is_missing(qtbot, hf_home, tmp_path):
    from studio.ui.panels.generate.controls import GenerateControls

    add_to_hub_cache(hf_home, "depth-anything/Depth-Anything-V2-Small-hf",
                     _tiny_depth(tmp_path / "depth"))
    missing = preprocessor_models.missing()
    assert list(missing) == ["openpose"]  # depth is cached, the pose model is not
    group = GenerateControls().controlnet
    qtbot.addWidget(group)
    group.set_models([("canny-15", "sd1")])
    group.set_missing_preprocessors(missing)
    group.enabled.setChecked(True)
    row = group.rows[0]
    items = row.preprocess.model()
    pose, depth = row.preprocess.findData("openpose"), row.preprocess.findData("depth")
    assert not items.item(pose).isEnabled() and items.item(depth).isEnabled()
    assert "hf download usyd-community/vitpose-base-simple" in row.preprocess.itemData(
        pose, Qt.ItemDataRole.ToolTipRole)


def test_draw_makes_a_scribble_the_unit_uses(qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QDialog

    from studio.ui.panels.generate import scribble
    from studio.ui.panels.generate.controls import GenerateControls

    controls = GenerateControls()
    qtbot.addWidget(controls)
    group = controls.controlnet
    group.set_models([("scribble-15", "sd1")])
    group.set_scribble_place(lambda: (96, 64), tmp_path / "controls")
    group.enabled.setChecked(True)
    row = group.rows[0]
    row.preprocess.setCurrentIndex(row.preprocess.findData("canny"))

    def draw_and_use(dialog):
        assert dialog.canvas.mask().size().toTuple() == (96, 64)  # the request's size
        assert not dialog.use.isEnabled()  # nothing drawn yet
        dialog.canvas.begin_edit()  # a stroke, as a mouse press starts it
        dialog.canvas.paint_line(QPointF(10, 10), QPointF(80, 50))
        dialog.tools.undo.click()
        assert not dialog.canvas.has_mask()
        dialog.tools.redo.click()
        assert dialog.use.isEnabled()
        dialog.use.click()
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(scribble.ScribbleDialog, "exec", draw_and_use)
    row.draw.click()
    saved = row.image.text()
    assert saved.startswith(str(tmp_path / "controls" / "scribble-"))
    assert row.preprocess.currentData() == "none"  # a scribble is a control map already
    pixels = np.asarray(Image.open(saved).convert("L"))
    assert pixels.shape == (64, 96) and pixels[0, 95] == 0 and pixels[30, 45] == 255


def test_tracing_shows_the_image_under_the_drawing_and_keeps_it(qtbot, tmp_path):
    from PySide6.QtCore import QPointF

    from studio.ui.panels.generate.scribble import ScribbleDialog, sheet

    picture = tmp_path / "on-screen.png"
    Image.new("RGB", (48, 32), (0, 0, 0)).save(picture)
    assert sheet((48, 32)).pixelColor(5, 5).name() == "#ffffff"
    traced = sheet((48, 32), str(picture)).pixelColor(5, 5)
    assert 150 < traced.red() < 180  # black at 35 % over white
    dialog = ScribbleDialog((48, 32), tmp_path, str(picture))
    qtbot.addWidget(dialog)
    dialog.canvas.begin_edit()
    dialog.canvas.paint_line(QPointF(5, 5), QPointF(40, 20))
    dialog.trace.setChecked(True)
    assert dialog.canvas.has_mask() and dialog.tools.undo.isEnabled()  # the strokes stay
    without = ScribbleDialog((48, 32), tmp_path)
    qtbot.addWidget(without)
    assert not without.trace.isEnabled()  # nothing on screen to trace


def test_a_depth_controlnet_preselects_depth_only_while_its_model_is_cached(qtbot):
    from studio.ui.panels.generate.controls import GenerateControls

    group = GenerateControls().controlnet
    qtbot.addWidget(group)
    group.set_models([("control_v11f1p_sd15_depth", "sd1", "depth")])
    group.set_missing_preprocessors({"depth": "needs a depth model"})
    group.enabled.setChecked(True)
    assert group.rows[0].preprocess.currentData() == "none"  # a depth map made elsewhere
    group.set_missing_preprocessors({})
    group.rows[0].preselect()
    assert group.rows[0].preprocess.currentData() == "depth"


def test_model_preprocessors_stay_greyed_until_the_cache_is_looked_at(qtbot):
    from studio.ui.panels.generate.controls import GenerateControls

    group = GenerateControls().controlnet
    qtbot.addWidget(group)
    group.set_models([("control_v11f1p_sd15_depth", "sd1", "depth")])
    group.enabled.setChecked(True)
    row = group.rows[0]
    assert not row.preprocess.model().item(row.preprocess.findData("depth")).isEnabled()
    assert row.preprocess.currentData() == "none"  # not preselected before the scan answers
