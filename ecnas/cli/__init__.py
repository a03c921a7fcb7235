"""The ``ecnas`` command: a thin layer over the Python API.

Each room has one module here with ``register(subparsers)``; registering must stay cheap
(argparse only), and each handler imports the heavy parts of its room when it runs.
Exit status: 0 success, 1 a check or metered command failed, 2 bad usage or bad input
(every expected failure: see ``ecnas.cli._boundary``), 70 a bug in ecnas (with its traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Any

from ecnas._version import __version__
from ecnas.cli._boundary import run_guarded
from ecnas.cli._options import HelpFormatter

# One module per room; each defines register(subparsers).
COMMAND_MODULES = (
    "ecnas.cli.meters",
    "ecnas.cli.profiles",
    "ecnas.cli.space",
    "ecnas.cli.trainer",
    "ecnas.cli.campaign",
    "ecnas.cli.tables",
    "ecnas.cli.surrogate",
    "ecnas.cli.benchmark",
    "ecnas.cli.contributions",
    "ecnas.cli.demo",
    "ecnas.cli.validate",
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error and exit status 2 (no usage dump), and help that leaves
    out the hidden old spellings of renamed options (``ecnas.cli._options``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As argparse's, with ``HelpFormatter`` unless another formatter is given."""
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        """Exit with status 2 and a one-line message pointing to ``--help``, instead of
        argparse's usage dump."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> ArgumentParser:
    """The ``ecnas`` parser with every room's commands registered (argparse only: no room's
    heavy imports)."""
    parser = ArgumentParser(
        prog="ecnas",
        description="Measure training energy and build energy-aware NAS benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"ecnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name in COMMAND_MODULES:
        import_module(name).register(sub)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> Any:
    for action in parser._actions:  # argparse keeps its subparsers here
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ecnas`` with ``argv`` (default: the process's arguments) and return its exit
    status: 0 success, 1 a check or metered command failed, 2 bad usage or input, 70 a bug in
    ecnas; no command prints the help and returns 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # an unknown option belongs to the subcommand: point at its help, not ecnas --help
        sub = _subparser(parser, getattr(args, "command", None))
        (sub or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2

    return run_guarded(args.command, args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
