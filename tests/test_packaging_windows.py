"""The Windows installer's parts that can be checked on Linux: the icon, and the Inno Setup script
compiled, installed, upgraded and uninstalled under Wine (packaging/windows/check_with_wine.sh;
it runs only where Wine, Xvfb and Inno Setup's compiler, or npm to fetch it, are installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_windows_icon_holds_every_size_windows_shows(tmp_path):
    from PIL import Image

    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        from make_icon import render_icon
    finally:
        sys.path.remove(str(ROOT / "packaging"))
    out = render_icon(tmp_path / "studio.ico", 256)
    with Image.open(out) as ico:
        sizes = set(ico.info["sizes"])
        assert {(16, 16), (24, 24), (32, 32), (48, 48), (256, 256)} <= sizes
        ico.size = (16, 16)
        small = ico.convert("RGBA")
    # the 16 px image is the drawing scaled down, not empty: it has opaque and clear pixels
    alpha = small.getchannel("A").getextrema()
    assert alpha == (0, 255)
    assert not list(tmp_path.glob("*.png"))  # the intermediate PNG is removed


def _iscc_or_npm() -> bool:
    return bool(os.environ.get("ISCC") or shutil.which("npm"))


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("wine") and shutil.which("Xvfb") and _iscc_or_npm()),
                    reason="needs Wine (with 32-bit support), Xvfb and ISCC or npm")
def test_the_installer_installs_upgrades_and_uninstalls_under_wine():
    proc = subprocess.run(["bash", str(ROOT / "packaging" / "windows" / "check_with_wine.sh")],
                          env=dict(os.environ, PYTHON=sys.executable), capture_output=True,
                          text=True, timeout=600)
    if proc.returncode == 2:  # a tool is missing or Inno Setup could not be fetched: nothing ran
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "✗" not in proc.stdout
    assert proc.stdout.count("✓") == 15  # compile, install (5), upgrade (4), uninstall (5)
