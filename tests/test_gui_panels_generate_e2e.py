"""Generate end to end: the real model scan, the real txt2img handler, a tiny SD 1.5 model."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from studio.core.config import Settings
from studio.core.jobs import JobState
from studio.media.metadata import read_image_metadata, to_request
from studio.ui.panels.generate import GeneratePanel
from tests.gui_fixtures import app_context

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def test_generate_with_a_real_tiny_model(qtbot, tiny_sd15_dir):
    settings = Settings(device="cpu", precision="fp32", preview_mode="fast",
                        added_models=[str(tiny_sd15_dir)])
    ctx = app_context(settings)
    panel = GeneratePanel(ctx)  # the real scanner: studio.library.models.find_txt2img_models
    qtbot.addWidget(panel)
    frames = []
    show_frame = panel.preview.show_frame

    def spy(image, step, total, clock, *args, **kwargs):
        frames.append((None if image is None else image.size().toTuple(), step, total))
        show_frame(image, step, total, clock, *args, **kwargs)

    panel.preview.show_frame = spy
    try:
        panel.show()
        qtbot.waitUntil(lambda: not panel.picker.scanning, timeout=30_000)
        assert panel.picker.current_model() == str(tiny_sd15_dir)
        assert panel.picker.current().family == "sd1"
        panel.controls.prompt.setPlainText("a tiny red square")
        panel.controls.steps.setValue(3)
        panel.controls.width_box.setValue(64)
        panel.controls.height_box.setValue(64)
        panel.controls.seed_mode.setCurrentIndex(1)  # fixed
        panel.controls.seed.setValue(1234)
        with qtbot.waitSignal(panel.jobFinished, timeout=300_000) as sig:
            qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
        job = sig.args[0]
        assert job.state is JobState.DONE, job.error
        qtbot.waitUntil(lambda: panel.strip.count() == 1, timeout=5000)
    finally:
        ctx.bridge.shutdown()
        panel.shutdown()

    # Live previews were drawn at the requested size, step by step.
    assert frames and all(size == (64, 64) for size, _, _ in frames)
    # (Tiny steps outrun 30 frames/s, so some frames are dropped.)
    steps = [step for _, step, _ in frames]
    assert steps == sorted(steps) and frames[-1][2] >= 3
    # The finished image is what stays on screen, not a late preview frame.
    assert panel.preview.status.text().startswith("Seed 1234 · 64×64 · 3 steps")
    result = panel.strip.results()[0]
    assert result.seed == 1234 and Path(result.path).exists()
    assert panel.preview.view.image_size() == (64, 64)
    # What was written can be reused: the same request comes back from the file.
    rebuilt = to_request(read_image_metadata(Path(result.path)), "")
    assert rebuilt.prompt == "a tiny red square" and rebuilt.seed == 1234
    assert rebuilt.model == str(tiny_sd15_dir)
