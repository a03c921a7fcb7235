"""``--metrics-port`` / ``--metrics-addr``, shared by ``ecnas run`` and ``ecnas measure``:
a Prometheus endpoint (the ``prometheus`` extra), started before any work so a busy port is
refused first."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ecnas.errors import InputError


def add_metrics_flags(p: argparse.ArgumentParser, what: str) -> None:
    """Add ``--metrics-port`` and ``--metrics-addr`` (serve Prometheus metrics while the command
    runs) to ``p``; ``what`` says in the help what is exported."""
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help=f"serve Prometheus metrics ({what}) on PORT while running "
                   "(needs ecnas[prometheus]; see docs/campaigns.md)")
    p.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR",
                   help="address the metrics endpoint listens on (default 127.0.0.1: this "
                   "host only; 0.0.0.0 for every interface)")


def start_exporter(args: argparse.Namespace, label: str, *, campaign: bool,
                   meters: Any = None) -> Any:
    """The running exporter, or None without ``--metrics-port``."""
    if args.metrics_port is None:
        return None

    try:
        from ecnas.integrations import prometheus
    except ImportError as exc:
        raise InputError(str(exc)) from None
    make = prometheus.campaign_exporter if campaign else prometheus.measure_exporter
    exporter = make(label, args.metrics_port, args.metrics_addr, meters)
    print(f"serving metrics at {exporter.server.url}", file=sys.stderr, flush=True)
    return exporter
