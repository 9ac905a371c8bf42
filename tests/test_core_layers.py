"""House rules that keep the layers apart (DESIGN rules 1 and 7)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import studio

ROOT = Path(studio.__file__).resolve().parent.parent
QT_FREE = ["studio.core.jobs", "studio.core.config", "studio.core.devices", "studio.core.files", "studio.media.gallery"]


def _qt_free_modules() -> list[str]:
    names = list(QT_FREE)
    for pkg in ("studio.pipelines", "studio.library"):
        path = ROOT / pkg.replace(".", "/")
        names.append(pkg)
        names += [f"{pkg}.{m.name}" for m in pkgutil.iter_modules([str(path)])]
    return [n for n in names if (ROOT / (n.replace(".", "/") + ".py")).exists()
            or (ROOT / n.replace(".", "/")).is_dir()]


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
    assert "studio.pipelines.requests" in modules and "studio.core.jobs" in modules
    out = subprocess.run([sys.executable, "-c", BLOCK_QT, *modules], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"ok {len(modules)}"


def test_light_modules_do_not_import_torch():
    code = ("import sys, studio.core.config, studio.core.jobs, studio.core.devices, studio.pipelines.requests; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.strip() == "False", out.stderr
