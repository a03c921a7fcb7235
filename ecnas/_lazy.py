"""The one lazy-export helper behind the package facades (``ecnas``, ``ecnas.tracker`` …).

A facade names, for each public name, the module that defines it; the module is imported on
first use, so importing the facade stays cheap (no torch, pandas or dask). The architecture
test reads the same literal mapping to follow these imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str], namespace: dict[str, Any] | None = None
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` loading each of ``exports`` (name → module)
    on first use; with ``namespace`` (the facade's ``globals()``) a loaded name is kept there,
    so the next lookup does not come back here."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        if namespace is not None:
            namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace or ()) | set(exports))

    return __getattr__, __dir__
