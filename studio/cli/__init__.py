"""The ``studio`` command line: one module per sub-command, registered in :data:`COMMANDS`.

A sub-command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
and is listed in :data:`COMMANDS`; an optional ``EXIT_STATUS`` says what its exit statuses mean
(default :data:`EXIT_RULE`) and ends its ``--help``. Modules are imported when the parser is
built, so they must import nothing heavy at module level (``studio --version`` must not pay for
torch).

Exit status, the same rule for every command: 0 done; 1 the work failed (a job, a download, a
copy: the message says why); 2 bad input (a usage error, an invalid value, a model or file that
does not exist or is of the wrong kind); 130 interrupted with Ctrl+C; 143 stopped by SIGTERM (the
job is cancelled as Ctrl+C cancels it, and the worker joined before the process ends; ``studio
serve`` exits 0, a SIGTERM being its normal stop). :class:`UsageError` is how a
command says "bad input"; an uncaught :class:`studio.core.jobs.UserFacingError` is a failure (1).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from studio import __version__

#: Sub-command modules, in the order ``studio --help`` lists them. Add a line to add a command.
COMMANDS: list[str] = [
    "studio.cli.gui",
    "studio.cli.generate",
    "studio.cli.transform",
    "studio.cli.upscale",
    "studio.cli.img2img",
    "studio.cli.train",
    "studio.cli.train_lora",
    "studio.cli.chat",
    "studio.cli.serve",
    "studio.cli.models",
    "studio.cli.info",
    "studio.cli.params",
    "studio.cli.classify",
    "studio.cli.gallery",
    "studio.cli.self_test",
]

#: The exit status after Ctrl+C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
#: The exit status after SIGTERM (128 + SIGTERM).
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """Raised on the main thread by the first SIGTERM: every Ctrl+C path (cancel the job, wait for
    the worker, keep what is finished) runs for it too; the exit status is then 143."""


_terminated = threading.Event()


def _on_sigterm(signum: int, frame: object) -> None:
    # Only the first: a second SIGTERM while the job stops must not cut the wait for the worker
    # short (the process would end with the worker inside torch, which aborts in C++).
    if not _terminated.is_set():
        _terminated.set()
        raise Terminated

#: What ``studio`` with no sub-command does.
DEFAULT_COMMAND = "gui"


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: The exit-status rule every command follows (the end of ``studio --help``).
EXIT_RULE = ("Exit status (every command): 0 done; 1 the work failed (a job, a download, a copy; "
             "the message says why); 2 bad input: a usage error, an invalid value, or a model "
             "or file that does not exist or is of the wrong kind; 130 interrupted with Ctrl+C; 143 "
             "stopped by SIGTERM (a running job is cancelled first). "
             "Errors are one line on stderr: 'studio: error: …'.")


class UsageError(Exception):
    """Bad input from the user: printed as ``studio: error: <message>``, exit status 2."""


def fail(message: str, code: int = 1) -> int:
    """Print ``studio: error: <message>`` (one line) on stderr and return ``code``."""
    first = " ".join(str(message).split("\n")[0].split())
    print(f"studio: error: {first}", file=sys.stderr, flush=True)
    return code


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows every option's default — "(default: 20)" — unless the help already says
    it or there is none worth showing (a flag, an empty value); descriptions and epilogs keep
    their paragraphs (blank lines) and lines starting with spaces (examples)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        out = []
        for block in text.split("\n\n"):
            lines = block.splitlines()
            if any(line.startswith("  ") for line in lines):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(textwrap.fill(" ".join(block.split()), width,
                                         initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False
                or default in ("", [], argparse.SUPPRESS)
                or action.nargs == 0  # a flag (--json, --full): its "default" means nothing
                or not action.option_strings and action.nargs in ("?", "*")):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Every usage error, a sub-command's included, ends in the same ``studio: error:`` line;
    every parser, a sub-command's included, shows defaults in its help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"studio: error: {message}\n")


def _modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in COMMANDS]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = _Parser(
        prog="studio",
        description="A desktop studio for generative AI that runs on your own machine. "
                    "Without a command, opens the window. 'studio COMMAND --help' shows a "
                    "command's options.",
        epilog=EXIT_RULE)
    parser.add_argument("--version", action="version", version=f"studio {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands: dict[str, ModuleType] = {}
    for module in _modules():
        sub = subparsers.add_parser(module.NAME, help=module.HELP,
                                    description=getattr(module, "DESCRIPTION", module.HELP),
                                    epilog=getattr(module, "EXIT_STATUS", EXIT_RULE))
        module.add_arguments(sub)
        commands[module.NAME] = module
    return parser, commands


@contextmanager
def _ctrl_c_interrupts() -> Iterator[None]:
    """Make SIGINT raise KeyboardInterrupt for the whole command, whatever the process inherited.

    The commands promise that Ctrl+C (or ``kill -INT``) cancels a job cleanly. Python installs its
    KeyboardInterrupt handler only when SIGINT starts out at its default, and a shell starts the
    background commands of a script (``studio generate … &``) with SIGINT ignored: such a job
    would shrug the signal off and run to its end. So the command takes SIGINT itself, from the
    start (before any model or torch is loaded), and gives the previous handler back after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set on the main thread (an embedding caller's job)
        return
    previous = signal.getsignal(signal.SIGINT)
    previous_term = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _terminated.clear()
    try:
        yield
    finally:
        if previous is not None:  # None: set outside Python, cannot be put back from here
            signal.signal(signal.SIGINT, previous)
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def _leave_if_a_job_is_stuck(code: int) -> int:
    """End the process at once when a job outlived the engine's shutdown wait.

    The commands cancel their job and join the GPU worker before returning; a job stuck inside
    one long model call (a huge first UNet step) can outlast that wait. Letting the interpreter
    shut down around a thread that is inside torch ends in a C++ ``terminate`` (an abort and a
    core dump), so the process leaves without finalising, with the command's status.
    """
    lanes = sys.modules.get("studio.core.lanes")  # not imported: no job ever ran
    if lanes is None or threading.current_thread() is not threading.main_thread() \
            or not any(runner.stuck for runner in list(lanes.RUNNERS)):
        return code
    print("studio: the running job did not stop in time; leaving without waiting for it",
          file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    return _leave_if_a_job_is_stuck(_main(argv))


def _main(argv: list[str] | None) -> int:
    with _ctrl_c_interrupts():
        parser, commands = build_parser()
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        if not args.command:
            args = parser.parse_args([DEFAULT_COMMAND])
        from studio.core.jobs import UserFacingError

        try:
            code = int(commands[args.command].run(args) or 0)
        except UsageError as exc:
            return fail(str(exc), EXIT_USAGE)
        except UserFacingError as exc:  # a command's work failed with a message for a person
            return fail(str(exc), EXIT_FAILED)
        except KeyboardInterrupt as exc:  # before a job started (loading, checking)
            if isinstance(exc, Terminated):
                print("studio: stopped by SIGTERM", file=sys.stderr, flush=True)
                return EXIT_TERMINATED
            print("studio: interrupted", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        if code == EXIT_INTERRUPTED and _terminated.is_set():  # the command stopped its job
            print("studio: stopped by SIGTERM", file=sys.stderr, flush=True)
            return EXIT_TERMINATED
        return code
