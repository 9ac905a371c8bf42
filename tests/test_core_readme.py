"""The README's two commands stay true: CI runs exactly the README's test command, and both
install with the lock."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fenced_commands(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = _fenced_commands(readme)
    test_cmd = next(c for c in commands if "pytest" in c and "pip install" in c)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_cmd in ci.splitlines()
    assert "-c constraints.txt" in test_cmd


def test_readme_install_command_launches_the_app():
    commands = _fenced_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    install = next(c for c in commands if "pip install" in c and "-e ." in c and "pytest" not in c)
    assert install.endswith("&& studio")
    assert "-c constraints.txt" in install
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'studio = "studio.__main__:main"' in pyproject


def test_readme_screenshots_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shots = re.findall(r"\]\((docs/screenshots/[^)]+)\)", readme)
    assert shots
    for shot in shots:
        assert (ROOT / shot).is_file(), shot
