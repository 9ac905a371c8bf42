"""The ``studio`` command line: one module per sub-command, registered in :data:`COMMANDS`.

A sub-command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
and is listed in :data:`COMMANDS`. Modules are imported when the parser is built, so they must
import nothing heavy at module level (``studio --version`` must not pay for torch).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from studio import __version__

#: Sub-command modules, in the order ``studio --help`` lists them. Add a line to add a command.
COMMANDS: list[str] = [
    "studio.cli.gui",
    "studio.cli.generate",
    "studio.cli.transform",
    "studio.cli.img2img",
    "studio.cli.train",
    "studio.cli.chat",
    "studio.cli.serve",
    "studio.cli.models",
    "studio.cli.info",
    "studio.cli.self_test",
]

#: What ``studio`` with no sub-command does.
DEFAULT_COMMAND = "gui"


class UsageError(Exception):
    """Bad input from the user: printed as ``studio: error: <message>``, exit status 2."""


def fail(message: str, code: int = 1) -> int:
    """Print ``studio: error: <message>`` (one line) on stderr and return ``code``."""
    first = " ".join(str(message).split("\n")[0].split())
    print(f"studio: error: {first}", file=sys.stderr, flush=True)
    return code


class _Parser(argparse.ArgumentParser):
    """Every usage error, a sub-command's included, ends in the same ``studio: error:`` line."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"studio: error: {message}\n")


def _modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in COMMANDS]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = _Parser(
        prog="studio",
        description="A desktop studio for generative AI that runs on your own machine. "
                    "Without a command, opens the window.")
    parser.add_argument("--version", action="version", version=f"studio {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands: dict[str, ModuleType] = {}
    for module in _modules():
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        commands[module.NAME] = module
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser, commands = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.command:
        args = parser.parse_args([DEFAULT_COMMAND])
    try:
        return int(commands[args.command].run(args) or 0)
    except UsageError as exc:
        return fail(str(exc), 2)
