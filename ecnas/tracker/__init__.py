"""The tracker room: meter any epoch loop (:class:`EnergyTracker`) and turn its checkpoints
into energy-table rows (:func:`write_rows`). No torch: the Lightning, Hugging Face and
Prometheus integrations build on this room, never on the trainer.

Importing this package is light: names load on first use (``ecnas.tracker.rows`` needs pandas
only when it writes a table).
"""

from __future__ import annotations

from ecnas._lazy import lazy_exports

_EXPORTS = {
    "EnergyTracker": "ecnas.tracker.tracker",
    "Checkpoint": "ecnas.tracker.tracker",
    "EpochMark": "ecnas.tracker.tracker",
    "WarmUp": "ecnas.tracker.tracker",
    "write_rows": "ecnas.tracker.rows",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
