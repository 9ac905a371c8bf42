"""The main window: start-up without torch, workspaces, device detection, shortcuts, shutdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from studio.core.devices import DeviceInfo
from studio.core.jobs import JobState
from studio.ui import workspaces
from studio.ui.main_window import CPU_NOTICE
from studio.ui.widgets.status_bar import format_memory
from studio.workers.device_probe import DeviceReport
from tests.gui_fixtures import press

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[1]


def gated(gate, progress, cancel):
    progress(1, 10)
    while not gate.wait(0.01):
        cancel.raise_if_cancelled()
    return "ok"


# Runs the real ``studio.app.main``; records what was imported when the window first showed.
START_UP = r"""
import json, sys
from PySide6.QtCore import QTimer
import studio.app as app
seen = {}
original_show = app.MainWindow.show
def show(self):
    original_show(self)
    seen["torch_at_show"] = "torch" in sys.modules
    seen["diffusers_at_show"] = "diffusers" in sys.modules
    seen["visible"] = self.isVisible()
    seen["workspaces"] = list(self.sidebar.buttons)
    seen["label_at_show"] = self.status.device_label.text()
    def poll():
        if self.status.device is not None:
            seen["device"] = self.status.device.kind
            seen["torch_after_probe"] = "torch" in sys.modules
            self.close()
        else:
            QTimer.singleShot(20, poll)
    QTimer.singleShot(0, poll)
app.MainWindow.show = show
code = app.main(["studio"])
print("RESULT " + json.dumps(seen))
sys.exit(code)
"""


def test_torch_is_not_imported_before_the_window_shows(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", STUDIO_HOME=str(tmp_path),
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", START_UP], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    seen = json.loads(line[len("RESULT "):])
    assert seen["visible"]
    assert seen["workspaces"] == [w.key for w in workspaces.WORKSPACES]
    assert seen["torch_at_show"] is False
    assert seen["diffusers_at_show"] is False
    assert seen["label_at_show"] == "Detecting device…"
    # ...and the device probe, started after the window showed, did import it and report
    assert seen["torch_after_probe"] is True
    assert seen["device"] in ("cuda", "mps", "cpu")


def test_window_shows_the_workspaces_and_builds_panels_lazily(main_window, qtbot, screenshot):
    main_window.show()
    qtbot.waitExposed(main_window)
    keys = [w.key for w in workspaces.WORKSPACES]
    assert keys[:2] == ["generate", "gallery"]
    assert list(main_window.sidebar.buttons) == keys
    assert main_window.current_workspace() == "generate"
    assert main_window.sidebar.buttons["generate"].isChecked()
    assert main_window.panel("gallery", create=False) is None  # not built until first shown
    assert main_window.status.device_label.text() == "Detecting device…"
    assert main_window.status.queue_button.text() == "Queue: 0"
    assert main_window.status.memory_label.text().startswith("RAM ")
    screenshot(main_window, "window")


def test_switching_workspaces_keeps_panels_and_the_running_queue(main_window, qtbot):
    runner = main_window.ctx.bridge.engine
    runner.register("gated", gated)
    main_window.show()
    qtbot.waitExposed(main_window)
    generate = main_window.panel("generate")
    gate = threading.Event()
    job = main_window.ctx.bridge.engine.gpu.submit("gated", gate, "Long job")
    press(main_window, Qt.Key.Key_J)
    qtbot.waitUntil(lambda: job.state is JobState.RUNNING)

    press(main_window, Qt.Key.Key_2)
    assert main_window.current_workspace() == "gallery"
    assert main_window.sidebar.buttons["gallery"].isChecked()
    assert main_window.queue_drawer.isVisible()
    assert job.id in main_window.queue_drawer.cards
    assert job.state is JobState.RUNNING and runner.gpu.alive

    qtbot.mouseClick(main_window.sidebar.buttons["generate"], Qt.MouseButton.LeftButton)
    assert main_window.current_workspace() == "generate"
    assert main_window.panel("generate") is generate  # the same panel, still alive
    gate.set()
    qtbot.waitUntil(lambda: job.state is JobState.DONE)
    qtbot.waitUntil(lambda: main_window.queue_drawer.cards[job.id].state_label.text() == "done")


def test_open_in_workspace_switches_and_hands_over_the_payload(shell_window):
    payload = object()
    shell_window.ctx.openInWorkspace.emit("gallery", payload)
    assert shell_window.current_workspace() == "gallery"
    assert shell_window.panel("gallery").received == [payload]
    shell_window.ctx.openInWorkspace.emit("no-such-workspace", payload)  # ignored, no crash
    assert shell_window.current_workspace() == "gallery"


def test_device_detection_fills_the_status_bar_and_warns_on_cpu(shell_window, qtbot,
                                                                 screenshot):
    import torch

    shell_window.show()
    shell_window.start_device_detection()
    qtbot.waitUntil(lambda: shell_window.status.device is not None, timeout=60_000)
    info = shell_window.status.device
    assert info.label in shell_window.status.device_label.text()
    banners = [b for b in shell_window.banners.banners() if b.key == "cpu"]
    if info.kind == "cpu":
        assert len(banners) == 1 and banners[0].text.startswith(CPU_NOTICE)
        if torch.version.cuda is None:
            assert "CPU-only build" in banners[0].text
        screenshot(shell_window, "banner_cpu")
    else:
        assert banners == []


def test_changing_the_device_setting_detects_again(shell_window, qtbot):
    import dataclasses

    shell_window.start_device_detection()
    qtbot.waitUntil(lambda: shell_window.status.device is not None, timeout=60_000)
    shell_window.ctx.update_settings(dataclasses.replace(shell_window.ctx.settings, device="cpu"))

    def cpu_banner_says_chosen():
        banners = [b for b in shell_window.banners.banners() if b.key == "cpu"]
        return bool(banners) and "The CPU was chosen in Settings." in banners[0].text

    qtbot.waitUntil(cpu_banner_says_chosen, timeout=30_000)
    assert shell_window.status.device.kind == "cpu"
    # a late answer for the old setting is ignored
    stale = DeviceReport(DeviceInfo("cuda", "CUDA · Old · 8 GB"), "", setting="auto")
    shell_window.on_device_detected(stale)
    assert shell_window.status.device.kind == "cpu"


def test_a_gpu_report_shows_vram_and_removes_the_cpu_banner(shell_window):
    shell_window.on_device_detected(DeviceReport(DeviceInfo("cpu", "CPU"), "Reason."))
    assert [b.key for b in shell_window.banners.banners()] == ["cpu"]
    assert shell_window.banners.banners()[0].text == CPU_NOTICE + " Reason."
    gpu = DeviceInfo("cuda", "CUDA · RTX 4070 · 12 GB", 12 * 2**30)
    shell_window.on_device_detected(DeviceReport(gpu))
    assert "CUDA · RTX 4070 · 12 GB" in shell_window.status.device_label.text()
    assert shell_window.banners.banners() == []
    assert shell_window.status.memory_label.text().startswith("VRAM ")


def test_memory_is_formatted_for_people():
    assert format_memory("cuda", int(3.4 * 2**30)) == "VRAM 3.4 GB"
    assert format_memory("cpu", int(1.2 * 2**30)) == "RAM 1.2 GB"
    assert format_memory(None, 300 * 2**20) == "RAM 300 MB"


def test_closing_the_window_cancels_jobs_and_stops_the_worker(shell_window, qtbot):
    runner = shell_window.ctx.bridge.engine
    runner.register("gated", gated)
    shell_window.show()
    qtbot.waitExposed(shell_window)
    running = shell_window.ctx.bridge.engine.gpu.submit("gated", threading.Event(), "Running")
    waiting = shell_window.ctx.bridge.engine.gpu.submit("gated", threading.Event(), "Waiting")
    qtbot.waitUntil(lambda: running.state is JobState.RUNNING)
    press(shell_window, Qt.Key.Key_Q)  # returns once the worker has stopped
    assert not shell_window.isVisible()
    assert running.state is JobState.CANCELLED
    assert waiting.state is JobState.CANCELLED
    assert not runner.gpu.alive


def test_a_panel_that_fails_to_build_gives_a_notice_not_a_crash(qtbot, studio_home):
    from studio.app import build_main_window
    from studio.ui.workspaces import Workspace
    from tests.gui_fixtures import RecordingPanel

    def broken(ctx):
        raise ImportError("No module named 'studio.ui.panels.train'")

    window = build_main_window(workspaces=[
        Workspace("generate", "Generate", "generate", RecordingPanel("Generate")),
        Workspace("train", "Train", "train", broken)])
    qtbot.addWidget(window)
    try:
        window.show()
        qtbot.mouseClick(window.sidebar.buttons["train"], Qt.MouseButton.LeftButton)
        assert window.current_workspace() == "generate"
        assert window.sidebar.buttons["generate"].isChecked()
        banner = window.banners.banners()[0]
        assert banner.kind == "error"
        assert banner.text.startswith("The Train workspace could not be opened: ImportError")
    finally:
        window.shutdown()


def test_txt2img_jobs_run_on_the_worker_and_share_one_service(shell_window, qtbot,
                                                               tiny_sd15_dir):
    from studio.core.requests import GeneratedImage, Txt2ImgRequest

    bridge = shell_window.ctx.bridge
    assert shell_window.ctx.bridge.engine.built("txt2img") is None  # nothing loaded before the first job
    request = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="a fox", steps=2, width=64,
                             height=64, seed=5)
    first = bridge.engine.submit(request, "fox")
    qtbot.waitUntil(lambda: first.state.finished, timeout=120_000)
    assert first.state is JobState.DONE, first.error
    service = shell_window.ctx.bridge.engine.built("txt2img")
    assert service is not None
    [image] = first.result
    assert isinstance(image, GeneratedImage) and image.path.exists()
    assert shell_window.ctx.paths.outputs_dir in image.path.parents

    second = bridge.engine.submit(Txt2ImgRequest(**{**request.__dict__, "seed": 6}), "fox 2")
    qtbot.waitUntil(lambda: second.state.finished, timeout=120_000)
    assert second.state is JobState.DONE, second.error
    assert shell_window.ctx.bridge.engine.built("txt2img") is service  # the model cache survived
