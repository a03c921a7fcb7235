"""Shared output helpers for the CLI: one JSON object with --json, readable text otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ecnas.outputs import dumps_json


def dumps(obj: Any) -> str:
    """``obj`` as indented JSON, NaN and infinities as null so every consumer can parse it."""
    return dumps_json(obj, indent=2)  # NaN/inf as null: every consumer can parse it


def emit(as_json: bool, obj: dict[str, Any], text: Callable[[dict[str, Any]], str]) -> None:
    """Print ``obj`` as one JSON object when ``as_json``, else ``text(obj)``."""
    if as_json:
        sys.stdout.write(dumps(obj) + "\n")
    else:
        sys.stdout.write(text(obj).rstrip("\n") + "\n")
    sys.stdout.flush()


def add_json_flag(parser: Any) -> None:
    """Add ``--json`` (print one JSON object on stdout) to ``parser``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_force_flag(parser: Any, what: str = "--out") -> None:
    """Add ``--force`` (replace ``what`` only when ecnas wrote it and it is unchanged since) to
    ``parser``."""
    parser.add_argument("--force", action="store_true",
                        help=f"replace {what} if ecnas wrote it and it is unchanged since "
                             "(never a user's file, a symbolic link, a read-only file or the "
                             "input; a bundle folder only when its manifest lists everything "
                             "in it); see docs/outputs.md")
