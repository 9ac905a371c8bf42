"""``python -m studio`` / the ``studio`` console script: see :mod:`studio.cli`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``studio`` command; returns the exit status."""
    from studio.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
