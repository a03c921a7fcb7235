"""Observers of a running campaign: the coordinator tells each one what happens, in order, on
its own thread (a metrics exporter, a dashboard feed …). The base class does nothing, so an
observer overrides only the events it needs; an observer must be quick and must not raise.
"""

from __future__ import annotations

from typing import Any


class CampaignObserver:
    """Events of one :func:`ecnas.campaign.run_campaign` call."""

    def on_start(self, campaign: Any, progress: Any, store: Any) -> None:
        """The store is bound and its runs counted (``progress.skipped`` are already there);
        nothing has been dispatched yet."""

    def on_submit(self, run: Any, in_flight: int) -> None:
        """``run`` (a :class:`RunSpec`) went to a worker; ``in_flight`` counts it."""

    def on_run_done(self, run: Any, rows: list[dict[str, Any]], in_flight: int,
                    progress: Any) -> None:
        """``run`` is committed to the store with ``rows`` (its checkpoints)."""

    def on_run_failed(self, run: Any, error: str, will_retry: bool, in_flight: int,
                      progress: Any) -> None:
        """An attempt of ``run`` failed (recorded in the store); retried or given up."""

    def on_end(self, progress: Any) -> None:
        """The coordinator is done dispatching (every run finished, or it was interrupted)."""


def notify(observers: Any, event: str, *args: Any) -> None:
    """Call ``event`` (a :class:`CampaignObserver` method name) on every observer with ``args``,
    in order."""
    for observer in observers:
        getattr(observer, event)(*args)
