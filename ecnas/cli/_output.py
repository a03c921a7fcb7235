"""Shared output helpers for the CLI: one JSON object with --json, readable text otherwise."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any


def _clean(value: Any) -> Any:
    # JSON has no NaN/Infinity: write null so every consumer can parse the output.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return _clean(value.item())
        except (TypeError, ValueError):
            return str(value)
    return value


def dumps(obj: Any) -> str:
    return json.dumps(_clean(obj), indent=2, sort_keys=False, default=str)


def emit(as_json: bool, obj: dict[str, Any], text: Callable[[dict[str, Any]], str]) -> None:
    """Print ``obj`` as one JSON object when ``as_json``, else ``text(obj)``."""
    if as_json:
        sys.stdout.write(dumps(obj) + "\n")
    else:
        sys.stdout.write(text(obj).rstrip("\n") + "\n")
    sys.stdout.flush()


def add_json_flag(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
