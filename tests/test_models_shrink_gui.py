"""Models → Make smaller… on a tiny chat model: the estimate, a refusal shown in the dialog,
the job in the background with the before/after table, and the new entry in the list."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

pytestmark = [pytest.mark.gui]


@pytest.fixture
def models_panel(qtbot, main_window, tiny_llama_dir):
    shutil.copytree(tiny_llama_dir, main_window.ctx.paths.models_dir / "tiny-llama")
    main_window.ctx.update_settings(dataclasses.replace(main_window.ctx.settings, device="cpu"))
    main_window.resize(1400, 820)
    main_window.show()
    panel = main_window.show_workspace("models")
    qtbot.waitUntil(lambda: panel.scans >= 1, timeout=20000)
    return panel


def test_make_smaller_dialog_runs_the_job_and_lists_the_copy(qtbot, models_panel):
    panel = models_panel
    models = panel.ctx.paths.models_dir
    assert panel.tree.select_path(models / "tiny-llama")
    assert panel.details.shrink_button.isVisible() and panel.details.shrink_button.isEnabled()
    dialog = panel.open_shrink()
    qtbot.waitUntil(lambda: dialog.plans >= 1, timeout=20000)
    assert dialog.name.text() == "tiny-llama-int8"
    assert "14 linear layers quantized" in dialog.plan_label.text()
    assert dialog.start_button.isEnabled()
    # a taken name is refused in the dialog, with Make smaller off
    dialog.name.setText("tiny-llama")
    qtbot.waitUntil(lambda: "already exists" in dialog.plan_label.text(), timeout=20000)
    assert not dialog.start_button.isEnabled()
    dialog.set_method("fp8")
    dialog.name.setText("tiny-llama-fp8")
    dialog.estimate()
    qtbot.waitUntil(lambda: dialog.plan is not None and dialog.plan.method == "fp8",
                    timeout=20000)
    job = dialog.start()
    assert job is not None and not dialog.start_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=120000)
    assert dialog.table.rowCount() == 3 and dialog.table.isVisible()
    assert dialog.table.item(0, 0).text() == "Size on disk"
    assert "Saved tiny-llama-fp8" in dialog.status.text()
    qtbot.waitUntil(lambda: "tiny-llama-fp8" in [e.name for e in panel.entries], timeout=20000)
    assert panel.tree.select_path(models / "tiny-llama-fp8")
    assert panel.details.values["Precision"].text() == "torchao fp8"
    # the name just made is taken: the dialog suggests the next free one and plans for it
    assert dialog.name.text() == "tiny-llama-fp8-2"
    qtbot.waitUntil(lambda: dialog.plan is not None and dialog.start_button.isEnabled(),
                    timeout=20000)
    assert "already exists" not in dialog.plan_label.text()
    dialog.close()
