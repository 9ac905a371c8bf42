"""Every bench/ script still finds what it imports from Studio and the tests' fixtures.

The benchmarks import inside their functions (so ``--help`` stays instant) and are not run by the
suite, so a module that moves (as #13's layout moved most of them) leaves a script that fails only
when someone runs it. This walks each script's syntax tree, the code inside functions and the
small programs it hands to a child process as a string, and checks every ``from studio… import
name`` / ``from tests… import name`` / ``from bench… import name`` resolves to a module that has
the name. docs/benchmarks.md says how to run them."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
OURS = ("studio", "tests", "bench")


def _trees(source: str) -> list[ast.AST]:
    """The script's tree and those of string constants that are Python programs (a child's)."""
    tree = ast.parse(source)
    trees: list[ast.AST] = [tree]
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and "import" in node.value and "\n" in node.value:
            try:
                trees.append(ast.parse(node.value))
            except SyntaxError:
                continue  # prose that mentions importing, not a program
    return trees


def _our_imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name or None) for each import of Studio, the tests or bench/ in ``path``."""
    found: list[tuple[str, str | None]] = []
    for tree in _trees(path.read_text(encoding="utf-8")):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] in OURS:
                found += [(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(alias.name, None) for alias in node.names
                          if alias.name.split(".")[0] in OURS]
    return found


SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "__init__.py")


def test_every_bench_script_is_checked():
    assert {p.stem for p in SCRIPTS} >= {"txt2img", "chat", "transform", "library", "train",
                                         "gallery", "gui_responsiveness", "family_bench",
                                         "family_builders"}
    assert all(_our_imports(p) for p in SCRIPTS), "a script that imports nothing of Studio's"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_bench_script_imports_resolve(script):
    missing = []
    for module_name, name in _our_imports(script):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing.append(f"{module_name} ({exc})")
            continue
        if name is None or name == "*" or hasattr(module, name):
            continue
        try:  # `from package import submodule`
            importlib.import_module(f"{module_name}.{name}")
        except ModuleNotFoundError:
            missing.append(f"{module_name}.{name}")
    assert not missing, f"bench/{script.name} imports what no longer exists: {missing}"


def test_the_check_finds_a_moved_module(tmp_path):
    """The check itself: the layout before #13 (studio.jobs, studio.pipelines.txt2img) fails."""
    old = tmp_path / "old_bench.py"
    old.write_text("def run():\n    from studio.jobs import JobRunner\n"
                   "    from studio.core.config import NoSuchName\n"
                   "CHILD = '''\nimport sys\nfrom studio.pipelines.loading import x\n'''\n",
                   encoding="utf-8")
    assert _our_imports(old) == [("studio.jobs", "JobRunner"),
                                 ("studio.core.config", "NoSuchName"),
                                 ("studio.pipelines.loading", "x")]
    for module_name, name in _our_imports(old):
        with pytest.raises((ModuleNotFoundError, AssertionError)):
            module = importlib.import_module(module_name)
            assert hasattr(module, name)
