"""Every third-party package the app imports is a declared dependency.

The shared development environment once had qasync installed by hand: every test passed there
while a fresh install (the README's commands, `.ci/run`, the installers) lacked it.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (3.10 has no TOML reader built in)

ROOT = Path(__file__).resolve().parents[1]
#: Imported only inside ``try: … except ImportError`` with a fallback, on purpose.
OPTIONAL = {
    "keyring": "API keys go to a private file when no system keyring is installed",
    "psutil": "memory figures fall back to the standard library (accelerate brings it anyway)",
    "sentence_transformers": "document vectors fall back to transformers' AutoModel with mean "
                             "pooling",
    "llama_cpp": "GGUF chat models run through the optional extra `gguf`; without it they are "
                 "listed with the line that installs it",
    "bitsandbytes": "8-bit AdamW for LoRA training (CUDA; the CPU from 0.50 on), NF4/int8 image-model weights and "
                    "8/4-bit chat models (the optional extra `bnb`); greyed out or refused "
                    "with the install line without it",
    "torchvision": "Qwen-Image-Edit uses the folder's full processor with it and the PIL image "
                   "processor without it; a build for another torch is named with the install "
                   "line",
}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {re.split(r"[<>=!\[ ;~]", dep)[0].lower().replace("_", "-")
            for dep in project["dependencies"]}


def _imported() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / "studio").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top != "studio":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_a_declared_dependency():
    declared = _declared()
    owners = md.packages_distributions()
    missing = {}
    for top, files in _imported().items():
        if top in OPTIONAL:
            continue
        dists = {d.lower().replace("_", "-") for d in owners.get(top, [])}
        if not dists & declared:
            missing[top] = sorted(files)[:3]
    assert not missing, f"imported but not in pyproject's dependencies: {missing}"
