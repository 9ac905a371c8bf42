"""The lock (constraints.txt): it pins everything pyproject.toml asks for, every install path uses
it, and ``tools/lock.py --check-env`` notices an environment that drifted from it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import lock  # noqa: E402


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name not in lock.UNLOCKED_EXTRAS:
            reqs += extra
    return [Requirement(r) for r in reqs]


def test_an_extra_left_out_of_the_lock_is_pinned_exactly_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for name in lock.UNLOCKED_EXTRAS:
        for req in map(Requirement, project["optional-dependencies"][name]):
            assert [s.operator for s in req.specifier] == ["=="], \
                f"{req}: an extra outside the lock must name one version"


def test_the_lock_pins_every_requirement_at_a_version_it_allows():
    pins = lock.locked()
    for req in _pyproject_requirements():
        lines = pins.get(canonicalize_name(req.name))
        assert lines, f"{req.name} is not in constraints.txt: run tools/lock.py"
        here = lock.pin_for(req.name, pins)
        assert here is not None, f"{req.name}: no line of constraints.txt applies here"
        assert req.specifier.contains(here, prereleases=True), \
            f"{req.name}: locked {here} does not satisfy pyproject's {req.specifier}"


def test_torch_is_locked_without_a_flavour():
    # torch==X matches X+cpu (CPU index) and X (PyPI, CUDA on Linux): one lock, both flavours
    (version, marker), = lock.locked()["torch"]
    assert marker is None and "+" not in version
    assert f"torch=={version}" in lock.PINS


def test_every_install_path_uses_the_lock():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    installs = [line for line in re.findall(r"^python -m pip install .*$", readme, re.M)]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "download.pytorch.org/whl/cpu" in ci  # the CPU build, asked for explicitly
    assert all("-c constraints.txt" in line for line in ci.splitlines()
               if "pip install" in line and not line.lstrip().startswith("#"))
    assert "tools/lock.py --check-env" in ci
    for script in ("packaging/linux/build.sh", "packaging/macos/build.sh",
                   "packaging/windows/build.ps1"):
        text = (ROOT / script).read_text(encoding="utf-8")
        pip_lines = [line for line in text.splitlines()
                     if "-m pip install" in line and not line.lstrip().startswith("#")]
        assert pip_lines and all("-c constraints.txt" in line for line in pip_lines), script
        assert "tools/lock.py --check-env" in text, script


def test_check_env_names_a_package_that_drifted(tmp_path, monkeypatch, capsys):
    from importlib.metadata import version

    fake = tmp_path / "constraints.txt"
    fake.write_text(f"pytest=={version('pytest')}\npackaging==0.0.1\n"
                    "not-installed-anywhere==1.0\n", encoding="utf-8")
    monkeypatch.setattr(lock, "LOCK", fake)
    assert lock.check_env() == 1
    err = capsys.readouterr().err
    assert "packaging" in err and "locked: 0.0.1" in err and "pytest" not in err
    fake.write_text(f"pytest=={version('pytest')}\n", encoding="utf-8")
    assert lock.check_env() == 0


def test_lock_explains_itself():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "lock.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--check-env" in proc.stdout
    header = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()[:5]
    assert any("tools/lock.py" in line for line in header)
