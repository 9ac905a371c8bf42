"""House rules that keep the layers apart (DESIGN rules 1 and 7)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import studio

ROOT = Path(studio.__file__).resolve().parent.parent
QT_FREE_PACKAGES = ("studio.core", "studio.media", "studio.library", "studio.pipelines",
                    "studio.server")


def _qt_free_modules() -> list[str]:
    """Every module of the Qt-free packages, recursively (chat/, train/, diffusion/, …)."""
    names: list[str] = []
    for pkg in QT_FREE_PACKAGES:
        path = ROOT / pkg.replace(".", "/")
        names.append(pkg)
        names += [m.name for m in pkgutil.walk_packages([str(path)], prefix=f"{pkg}.")]
    return names


BLOCK_QT = """
import importlib.abc, sys
class BlockQt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'shiboken6', 'qasync', 'pyqtgraph', 'superqt'):
            raise ImportError('Qt is blocked in the Qt-free layers: ' + name)
sys.meta_path.insert(0, BlockQt())
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
print('ok', len(sys.argv) - 1)
"""


def test_core_layers_import_without_qt():
    modules = _qt_free_modules()
    assert "studio.core.requests" in modules and "studio.core.jobs" in modules
    out = subprocess.run([sys.executable, "-c", BLOCK_QT, *modules], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"ok {len(modules)}"


def test_light_modules_do_not_import_torch():
    code = ("import sys, studio.core.config, studio.core.jobs, studio.core.devices, studio.core.requests; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.strip() == "False", out.stderr


def test_import_linter_contracts_hold():
    """The layers, the Qt-free packages and independent workspaces (pyproject's
    [tool.importlinter]), over every import, including those inside functions."""
    pytest.importorskip("importlinter")
    out = subprocess.run([sys.executable, "-c",
                          "import sys; from importlinter.cli import lint_imports_command; "
                          "sys.exit(lint_imports_command())"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout
