"""``studio --version``, ``studio info`` and input errors, run as a user would (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import studio

ROOT = Path(studio.__file__).resolve().parent.parent


def run_studio(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m studio ARGS`` with this test's STUDIO_HOME (set by the autouse fixture)."""
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


def test_version_prints_and_imports_nothing_heavy():
    out = run_studio("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"studio {studio.__version__}"
    code = ("import sys\n"
            "from studio.__main__ import main\n"
            "try:\n    main(['--version'])\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'PySide6') "
            "if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stderr
    assert out.stdout.strip() == f"studio {studio.__version__}"


def test_help_lists_the_commands():
    out = run_studio("--help")
    assert out.returncode == 0
    for name in ("gui", "generate", "info"):
        assert name in out.stdout


def test_info_json_shows_versions_device_and_folders(studio_home):
    out = run_studio("info", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["studio"] == studio.__version__
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    import torch
    from packaging.version import Version

    # The full version, build tag included: PyPI's CUDA wheels say "2.14.1" in their metadata
    # while torch.__version__ is "2.14.1+cu130", and which build is installed is what matters.
    assert Version(info["packages"]["torch"]) == Version(torch.__version__)
    assert info["packages"]["torch"] == torch.__version__
    assert info["packages"]["diffusers"] and info["packages"]["PySide6"]
    assert info["device"]["kind"] in ("cpu", "cuda", "mps")
    paths = info["paths"]
    assert paths["settings_file"] == str(studio_home / "config" / "settings.json")
    assert paths["outputs"] == str(studio_home / "outputs")
    assert paths["models"] == str(studio_home / "data" / "models")
    assert paths["data"] == str(studio_home / "data")
    assert paths["hf_cache"]


def test_info_reads_torchs_build_tag_without_importing_torch(tmp_path, monkeypatch):
    """PyPI's metadata of a CUDA wheel says 2.14.1; torch/version.py says 2.14.1+cu130."""
    from studio.cli import info

    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('studio info must not import torch')\n")
    (fake / "version.py").write_text("__version__ = '2.14.1+cu130'\ncuda = '13.0'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(info.metadata, "version", lambda dist: "2.14.1")
    assert info._version("torch") == "2.14.1+cu130"
    assert info.collect(with_device=False)["packages"]["torch"] == "2.14.1+cu130"
    (fake / "version.py").unlink()  # an odd install: the metadata's version, not nothing
    assert info._version("torch") == "2.14.1"


def test_main_takes_sigint_for_the_command_and_gives_it_back(monkeypatch, capsys):
    """Ctrl+C raises KeyboardInterrupt inside every command even when SIGINT was inherited as
    ignored (a script's background job); before a job exists it ends the command with 130."""
    import signal

    from studio.cli import info, main

    seen = []

    def interrupted(args):
        seen.append(signal.getsignal(signal.SIGINT))
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("SIGINT did not interrupt the command")

    monkeypatch.setattr(info, "run", interrupted)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main(["info", "--no-device"]) == 130
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # given back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [signal.default_int_handler]
    assert capsys.readouterr().err.strip() == "studio: interrupted"


def test_info_text_and_output_dir_from_settings(studio_home, tmp_path):
    from studio.core.config import Settings, save_settings

    save_settings(Settings(output_dir=str(tmp_path / "pics")),
                  studio_home / "config" / "settings.json")
    out = run_studio("info", "--no-device")
    assert out.returncode == 0, out.stderr
    assert "Folders:" in out.stdout and str(tmp_path / "pics") in out.stdout
    assert "Device:" not in out.stdout


@pytest.mark.parametrize("args,needle", [
    (["--width", "100"], "not a multiple of 8"),
    (["--height", "0"], "positive number"),
    (["--steps", "0"], "Steps must be between"),
    (["--count", "0"], "Count must be between"),
    (["--seed", "-5"], "Seed must be between"),
    (["--scheduler", "warp drive"], "unknown scheduler 'warp drive'"),
    (["--model", "/no/such/model"], "/no/such/model does not exist"),
    (["--model", ""], "No model chosen"),
    (["--model", "someone/not-cached"], "not in your Hugging Face cache"),
])
def test_generate_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    base = {"--model": str(tmp_path), "--prompt": "a cat"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    argv = [x for kv in base.items() for x in kv]
    out = run_studio("generate", *argv)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("studio: error: ") and needle in lines[0]
    assert out.stdout == ""


def test_generate_folder_that_is_not_a_model_exits_2(tmp_path):
    out = run_studio("generate", "--model", str(tmp_path), "--prompt", "x")
    assert out.returncode == 2
    assert out.stderr.startswith("studio: error: ") and "not a Stable Diffusion model" in out.stderr


def test_missing_required_option_is_a_usage_error():
    out = run_studio("generate", "--prompt", "x")
    assert out.returncode == 2
    assert "--model" in out.stderr and "studio: error:" in out.stderr


@pytest.mark.parametrize("argv", [[], ["gui"]])
def test_no_command_and_gui_open_the_window(argv):
    """``studio`` and ``studio gui`` hand over to ``studio.app.main`` (replaced here, so no
    window opens) and return its exit status."""
    code = ("import sys, studio.app\n"
            "studio.app.main = lambda *a, **k: 7\n"
            "from studio.__main__ import main\n"
            f"sys.exit(main({argv!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert out.returncode == 7, out.stderr
