"""Measurement campaigns: a campaign file, a durable SQLite results store, a coordinator that
runs each training run in its own process (or on a Dask cluster), resume, retries, progress.

Importing this package is light (no torch, no dask).
"""

from ecnas.campaign.config import Campaign, RunSpec, load_campaign
from ecnas.campaign.runner import CampaignSummary, run_campaign
from ecnas.campaign.store import ResultsStore, export_table

__all__ = ["Campaign", "CampaignSummary", "ResultsStore", "RunSpec", "export_table",
           "load_campaign", "run_campaign"]
