"""``studio self-test`` in a subprocess, as a user (or an installer build) runs it; the frozen-app
asset lookup; the packaging files agree with what the self-test checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _self_test(tmp_path: Path, *args: str, pythonpath: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, STUDIO_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p),
               TMPDIR=str(tmp_path))
    env.pop("QT_QPA_PLATFORM", None)  # the command must pick offscreen itself
    return subprocess.run([sys.executable, "-m", "studio", "self-test", *args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_self_test_passes_every_check_offline(tmp_path):
    shot = tmp_path / "window.png"
    proc = _self_test(tmp_path, "--screenshot", str(shot), "--device", "cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    names = [line.split()[1] for line in lines if line.startswith("✓")]
    assert names == ["imports", "assets", "generate", "img2img", "transform", "chat", "serve",
                     "download", "train", "window"]
    assert not any(line.startswith("✗") for line in lines)
    assert lines[-1] == "10/10 checks passed."
    assert re.search(r"^✓ generate +\d+\.\d s +2 steps, 64×64 PNG, its parameters read back; a LoRA "
                     r"trained a step; found by a CLIP search; a ControlNet guided one \(canny\); "
                     r"its int8 copy made one$",
                     proc.stdout, re.M)
    assert "1 token" in next(x for x in lines if " chat " in x)
    assert "img2img and inpaint" in next(x for x in lines if " img2img " in x)
    assert "CycleGAN" in next(x for x in lines if " transform " in x)
    serve = next(x for x in lines if " serve " in x)
    assert "chat completion" in serve and "embedding over HTTP" in serve
    assert "a Hub repository and a resumed file" in next(x for x in lines if " download " in x)
    from studio.pipelines.train.registry import lesson_keys

    assert f"{len(lesson_keys())} lessons" in next(x for x in lines if " train " in x)
    assert "in a spawned process" in next(x for x in lines if " train " in x)
    assert shot.stat().st_size > 1000
    # nothing is left in the user's folders: it worked in a scratch folder, then removed it
    assert not (tmp_path / "home").exists()
    assert not list(tmp_path.glob("studio-self-test-*"))


def test_a_broken_install_fails_naming_the_checks(tmp_path):
    # A pyqtgraph that cannot be imported: the stack import and the Train workspace break.
    fake = tmp_path / "shadow" / "pyqtgraph"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('pyqtgraph is broken on purpose')\n")
    # (assets: a check that needs no pyqtgraph still passes; it is cheap, unlike training)
    proc = _self_test(tmp_path, "--json", "--only", "imports", "--only", "assets",
                      "--only", "window", pythonpath=str(tmp_path / "shadow"))
    assert proc.returncode == 1
    rows = {r["check"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert list(rows) == ["imports", "assets", "window"]
    assert not rows["imports"]["ok"] and "broken on purpose" in rows["imports"]["detail"]
    assert rows["assets"]["ok"]
    assert not rows["window"]["ok"] and "Train" in rows["window"]["detail"]
    assert proc.stderr.strip().splitlines()[-1] == \
        "studio: error: self-test failed: imports, window"


def test_assets_resolve_inside_a_pyinstaller_bundle(tmp_path, monkeypatch):
    import studio

    bundle = tmp_path / "_internal"
    (bundle / "assets").mkdir(parents=True)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    assert studio._assets_dir() == bundle / "assets"
    # a macOS .app keeps data in Contents/Resources next to Contents/Frameworks
    app = tmp_path / "Studio.app" / "Contents"
    (app / "Resources" / "assets").mkdir(parents=True)
    (app / "Frameworks").mkdir()
    monkeypatch.setattr(sys, "_MEIPASS", str(app / "Frameworks"))
    assert studio._assets_dir() == app / "Resources" / "assets"
    monkeypatch.setattr(sys, "frozen", False)
    assert studio._assets_dir() == ROOT / "assets"


def test_the_spec_ships_the_metadata_and_files_the_self_test_checks():
    from studio.cli.self_checks import ASSET_FILES, runtime_distributions

    spec = (ROOT / "packaging" / "studio.spec").read_text(encoding="utf-8")
    # The spec ships metadata and data files of the computed dependency closure, not a list.
    assert "DISTRIBUTIONS, _missing = runtime_distributions()" in spec
    assert "copy_metadata(dist)" in spec and "collect_data_files(package" in spec
    installed, missing = runtime_distributions()
    assert not missing
    names = {name.lower().replace("_", "-") for name in installed}
    assert {"torch", "diffusers", "transformers", "peft", "pyside6-essentials"} <= names
    assert '(str(ROOT / "assets"), "assets")' in spec
    for name in ASSET_FILES:
        assert (ROOT / "assets" / name).exists(), name
    assert '(ROOT / "studio").rglob("*.py")' in spec  # commands/services are imported by name


@pytest.mark.parametrize("script", [
    ".ci/run", "packaging/linux/build.sh", "packaging/linux/make_appimage.sh",
    "packaging/linux/install-desktop-entry.sh", "packaging/ci_bundle.sh", "packaging/macos/build.sh",
    "packaging/windows/check_with_wine.sh"])
def test_shell_scripts_parse_and_are_executable(script):
    path = ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _ci_bundle(tmp_path: Path, build: str, **extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), STUDIO_CI_BUNDLE_BUILD=build)
    env.pop("STUDIO_CI_BUNDLE", None)  # the caller's own setting must not leak in
    env.update(extra)
    return subprocess.run(["bash", str(ROOT / "packaging" / "ci_bundle.sh")], env=env,
                          capture_output=True, text=True, timeout=300)


def test_ci_builds_the_bundle_only_when_packaging_inputs_changed(tmp_path):
    built = tmp_path / "built"
    build = f"echo run >> '{built}'"
    marker = tmp_path / "cache" / "studio-ci" / "bundle.sha"
    # a failing build fails CI and records nothing
    failed = _ci_bundle(tmp_path, "exit 3")
    assert failed.returncode != 0 and not marker.exists()
    # no marker yet: build, then remember the inputs
    assert _ci_bundle(tmp_path, build).returncode == 0
    assert built.read_text().count("run") == 1 and len(marker.read_text().strip()) == 64
    # same inputs: skipped
    again = _ci_bundle(tmp_path, build)
    assert again.returncode == 0 and "skipped" in again.stdout
    assert built.read_text().count("run") == 1
    # forced, or skipped on request
    assert _ci_bundle(tmp_path, build, STUDIO_CI_BUNDLE="1").returncode == 0
    assert built.read_text().count("run") == 2
    assert _ci_bundle(tmp_path, "exit 3", STUDIO_CI_BUNDLE="0").returncode == 0
    # other inputs than the last good build (the marker differs): build again
    marker.write_text("0" * 64 + "\n")
    assert _ci_bundle(tmp_path, build).returncode == 0
    assert built.read_text().count("run") == 3


def test_ci_runs_the_bundle_check_after_the_tests():
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    tests = lines.index('python -m pip install -c constraints.txt -e ".[test]" && python -m pytest')
    check = next(i for i, line in enumerate(lines) if "packaging/ci_bundle.sh" in line
                 and not line.startswith("#"))
    assert tests < check


def test_the_self_test_goes_through_every_way_the_app_runs_work():
    """A frozen app fails where a module is imported by name for the first time: each job kind
    the engine runs (for the window, the CLI and the server alike), each command and every
    lesson must be exercised by a self-test check (studio.cli.self_test.COVERS says which)."""
    from studio.cli import COMMANDS
    from studio.cli.self_test import CHECKS, COVERS
    from studio.pipelines.services import SERVICES

    assert set(COVERS.values()) <= set(CHECKS)
    kinds = {spec.kind for spec in SERVICES}
    assert kinds <= set(COVERS), f"job kinds without a self-test check: {kinds - set(COVERS)}"
    commands = {name.rsplit(".", 1)[-1].replace("_", "-") for name in COMMANDS}
    assert commands <= set(COVERS), \
        f"commands without a self-test check: {commands - set(COVERS)}"
