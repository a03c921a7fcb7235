"""The benchmark room: versioned bundles, EC-NAS TFRecord export, the ``Benchmark`` query API.

``Benchmark`` is imported lazily so that ``import ecnas.benchmark`` stays cheap (no pandas).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Benchmark": "ecnas.benchmark.api",
    "write_bundle": "ecnas.benchmark.bundle",
    "load_bundle": "ecnas.benchmark.bundle",
    "verify_bundle": "ecnas.benchmark.bundle",
    "write_ecnas_tfrecord": "ecnas.benchmark.export_tfrecord",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ecnas.benchmark' has no attribute {name!r}")
    return getattr(import_module(module), name)
