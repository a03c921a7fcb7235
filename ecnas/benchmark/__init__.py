"""The benchmark room: versioned bundles and the ``Benchmark`` query API (EC-NAS TFRecord
export is :mod:`ecnas.interop`).

``Benchmark`` is imported lazily so that ``import ecnas.benchmark`` stays cheap (no pandas).
"""

from __future__ import annotations

from ecnas._lazy import lazy_exports

_LAZY = {
    "Benchmark": "ecnas.benchmark.api",
    "write_bundle": "ecnas.benchmark.bundle",
    "load_bundle": "ecnas.benchmark.bundle",
    "verify_bundle": "ecnas.benchmark.bundle",
}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
