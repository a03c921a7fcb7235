"""Measurement campaigns: a campaign file, a durable SQLite results store, a coordinator that
runs each training run in its own process (or on a Dask cluster), resume, retries, progress.

Importing this package is light (no torch, no dask): names load on first use, so the
Prometheus integration can import :mod:`ecnas.campaign.observers` alone.
"""

from __future__ import annotations

from ecnas._lazy import lazy_exports

_EXPORTS = {
    "Campaign": "ecnas.campaign.config",
    "RunSpec": "ecnas.campaign.config",
    "load_campaign": "ecnas.campaign.config",
    "CampaignSummary": "ecnas.campaign.runner",
    "run_campaign": "ecnas.campaign.runner",
    "ResultsStore": "ecnas.campaign.store",
    "export_table": "ecnas.campaign.store",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
