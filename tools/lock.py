"""Refresh or check ``constraints.txt``, the lock of Studio's whole dependency set.

Why a lock: an upstream release (a new transformers that pulled in ``kernels`` with package data
the installers lacked) broke CI and the installers with no change on our side. Every install that
matters — the README's two commands, ``.ci/run``, every installer build — now installs with
``-c constraints.txt``, so the versions are the ones this file names until someone refreshes it on
purpose and CI has passed with the new set.

One file covers every platform flavour: uv's universal resolution writes environment markers
(``sys_platform == 'linux'`` for torch's NVIDIA libraries, ``python_full_version < '3.11'`` where
an older Python needs an older release), and a constraints file pins only what is being installed.
The torch *flavour* is where torch comes from — PyTorch's CPU index gives ``torch==2.13.0+cpu``,
PyPI gives the CUDA build on Linux — and ``torch==2.13.0`` matches both, so the CPU build pulls in
no NVIDIA library and the CUDA build gets exactly the ones locked here.

Refresh (needs uv and the network to PyPI)::

    python -m pip install uv && python tools/lock.py

Check that this environment has exactly the locked versions (``.ci/run`` does)::

    python tools/lock.py --check-env
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
#: Versions chosen on purpose rather than "newest": torch is the one CI machines carry as a CPU
#: wheel (PyTorch's CPU index has it for every platform); raise it deliberately, with a CI run.
PINS = ["torch==2.13.0"]
EXTRAS = ["test", "packaging", "faces", "bnb"]
#: extras left out of the lock, each pinned exactly in pyproject instead, and why
UNLOCKED_EXTRAS = {"gguf": "llama-cpp-python has no wheel on PyPI: its sdist compiles llama.cpp, "
                           "differently per machine (CPU, CUDA, Metal)"}
OLDEST_PYTHON = "3.10"  # pyproject's requires-python
HEADER = """\
# The lock of Studio's whole dependency set, every platform and Python >= 3.10 (uv's universal
# resolution; markers say where a line applies). Install with it as constraints:
#     python -m pip install -c constraints.txt -e .
# Refresh on purpose (then run CI):  python -m pip install uv && python tools/lock.py
# Do not edit by hand. tools/lock.py explains the torch flavours (CPU index vs PyPI).
"""


def refresh() -> int:
    uv = shutil.which("uv")
    if uv is None:
        print("lock: uv is not installed: python -m pip install uv", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        pins = Path(tmp) / "pins.txt"
        pins.write_text("\n".join(PINS) + "\n", encoding="utf-8")
        out = Path(tmp) / "lock.txt"
        cmd = [uv, "pip", "compile", str(ROOT / "pyproject.toml"), "--universal",
               "--python-version", OLDEST_PYTHON, "--no-header", "--no-annotate", "--quiet",
               "--no-python-downloads",
               "-c", str(pins), "-o", str(out)]
        for extra in EXTRAS:
            cmd += ["--extra", extra]
        result = subprocess.run(cmd, cwd=ROOT)
        if result.returncode != 0:
            return result.returncode
        LOCK.write_text(HEADER + out.read_text(encoding="utf-8"), encoding="utf-8")
    print(f"lock: wrote {LOCK.relative_to(ROOT)}")
    return 0


def locked() -> dict[str, list[tuple[str, object]]]:
    """Each locked name (normalised) → its (version, marker or None) lines."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, list[tuple[str, object]]] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        pins.setdefault(canonicalize_name(req.name), []).append((spec.version, req.marker))
    return pins


def pin_for(name: str, pins: dict[str, list[tuple[str, object]]] | None = None) -> str | None:
    """The version locked for ``name`` in this interpreter's environment, or None."""
    from packaging.utils import canonicalize_name

    for version, marker in (pins if pins is not None else locked()).get(
            canonicalize_name(name), []):
        if marker is None or marker.evaluate():  # type: ignore[attr-defined]
            return version
    return None


def check_env() -> int:
    """Every installed distribution that the lock names has the locked version."""
    from importlib.metadata import distributions

    from packaging.version import Version

    pins = locked()
    wrong = []
    for dist in distributions():
        name = dist.metadata["Name"]
        want = pin_for(name, pins) if name else None
        # torch==2.13.0 is met by 2.13.0+cpu: the local label is the flavour, not the version.
        if want is not None and Version(dist.version).public != Version(want).public:
            wrong.append(f"{name} {dist.version} (locked: {want})")
    if wrong:
        print("lock: installed versions differ from constraints.txt: " + "; ".join(wrong),
              file=sys.stderr)
        return 1
    print("lock: every installed package that constraints.txt names has its locked version")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check-env", action="store_true",
                        help="check this environment against constraints.txt instead")
    args = parser.parse_args(argv)
    return check_env() if args.check_env else refresh()


if __name__ == "__main__":
    sys.exit(main())
