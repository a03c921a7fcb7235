"""Prometheus metrics for campaigns and long jobs, served by ``prometheus-client``.

Install the extra: ``pip install ecnas[prometheus]``; ``ecnas run --metrics-port PORT`` and
``ecnas measure --metrics-port PORT`` use it (see docs/campaigns.md). Every metric carries a
``campaign`` label (the campaign's name; for ``ecnas measure``, the command's name).

Campaign progress (a :class:`CampaignMetrics` observer of the coordinator):

* ``ecnas_campaign_runs{state}`` — ``total``, ``done`` (in the store, earlier sessions
  included), ``failed`` (given up), ``in_flight``, ``pending``;
* ``ecnas_campaign_failed_attempts_total``, ``ecnas_campaign_eta_seconds`` (NaN until a run
  is done);
* ``ecnas_campaign_energy_joules_total{device,status}`` and
  ``ecnas_campaign_component_energy_joules_total{device,component,status}`` — the stored
  runs' energy (each run's final checkpoint, as the store sums it), ``status`` measured or
  estimated;
* ``ecnas_campaign_info{hash,store}`` = 1.

Live energy on this host (a :class:`LiveEnergyCollector`, its own meters read at each scrape):
``ecnas_energy_joules_total`` (since the exporter started) and ``ecnas_power_watts`` (mean
over the interval since the previous scrape), labelled ``device`` (the hardware profile, or
the domain when none matches), ``domain``, ``component``, ``meter`` and ``status``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ecnas.campaign.observers import CampaignObserver
from ecnas.errors import InputError
from ecnas.monitor import Monitor

INSTALL_HINT = "--metrics-port needs prometheus-client: pip install ecnas[prometheus]"

try:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError:
    raise ImportError(INSTALL_HINT) from None

__all__ = ["CampaignMetrics", "LiveEnergyCollector", "MetricsServer", "campaign_exporter",
           "measure_exporter"]

COMPONENTS = ("gpu", "cpu", "dram")
RUN_STATES = ("total", "done", "failed", "in_flight", "pending")


class MetricsServer:
    """``registry`` over HTTP at ``http://ADDR:PORT/metrics`` (``127.0.0.1`` unless told);
    a port in use is refused with one line (:class:`InputError`, exit status 2)."""

    def __init__(self, registry: Any, port: int, addr: str = "127.0.0.1") -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InputError(f"--metrics-port {port!r}: use a port number in 0..65535")
        self.registry, self.addr, self._port = registry, addr, port
        self._server: Any = None
        self._thread: Any = None

    @property
    def port(self) -> int:
        """The bound port (the one the system chose when asked for 0)."""
        return int(self._server.server_port) if self._server is not None else self._port

    @property
    def url(self) -> str:
        """The metrics endpoint's address, ``http://ADDR:PORT/metrics`` (an IPv6 address in
        brackets)."""
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> MetricsServer:
        """Listen on the address and port, serving the registry on a thread; a port that cannot
        be bound is an :class:`~ecnas.errors.InputError`. Returns the server."""
        try:
            self._server, self._thread = start_http_server(self._port, addr=self.addr,
                                                           registry=self.registry)
        except OSError as exc:
            raise InputError(f"--metrics-port {self._port}: cannot listen on {self.addr}:"
                             f"{self._port} ({exc.strerror or exc})") from None
        return self

    def close(self) -> None:
        """Stop serving and release the port (nothing when not started)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None


class LiveEnergyCollector:
    """Cumulative energy and power per domain of this host's meters, read at each scrape."""

    def __init__(self, labels: Mapping[str, str], meters: Sequence[Any] | None = None) -> None:
        self._labels = dict(labels)
        self._meters = meters
        self._lock = threading.Lock()  # one meter read at a time, whatever the scrapers do
        self._monitor: Any = None
        self._window = "ecnas-metrics"
        self._last: dict[str, tuple[float, float]] = {}  # domain -> (joules, duration_s)

    def start(self) -> LiveEnergyCollector:
        """Start this host's meters and open the window the scrapes read; returns the
        collector."""
        self._monitor = Monitor(self._meters, sync_cuda=False)
        self._monitor.start()
        self._monitor.begin(self._window)
        return self

    def close(self) -> None:
        """Close the window and stop the meters; later scrapes yield nothing."""
        with self._lock:
            if self._monitor is not None:
                self._monitor.end(self._window)
                self._monitor.close()
                self._monitor = None

    def describe(self) -> list[Any]:
        """No metrics up front: they are generated at scrape time, so the registry has nothing
        to check at registration."""
        return []  # generated at scrape time: nothing to check at registration

    def collect(self) -> Iterator[Any]:
        """At each scrape: every domain's energy (J) since the exporter started, and its mean
        power (W) since the previous scrape."""
        keys = [*self._labels, "device", "domain", "component", "meter", "status"]
        energy = CounterMetricFamily("ecnas_energy_joules", "Energy this host's meters read "
                                     "since the exporter started (PUE excluded)", labels=keys)
        power = GaugeMetricFamily("ecnas_power_watts", "Mean power since the previous scrape",
                                  labels=keys)
        with self._lock:
            if self._monitor is None:
                return
            report = self._monitor.peek(self._window)
            for name, d in sorted(report.domains.items()):
                values = [*self._labels.values(), d.profile_id or name, name, d.component,
                          d.meter, d.status]
                energy.add_metric(values, d.joules)
                j0, t0 = self._last.get(name, (0.0, 0.0))
                if report.duration_s > t0:
                    power.add_metric(values, (d.joules - j0) / (report.duration_s - t0))
                self._last[name] = (d.joules, report.duration_s)
        yield energy
        yield power


class CampaignMetrics(CampaignObserver):
    """Campaign progress and stored energy, kept consistent under one lock: a scrape sees the
    counts and the energy of the same set of runs."""

    def __init__(self, campaign_label: str) -> None:
        self._label = campaign_label
        self._lock = threading.Lock()
        self._info: dict[str, str] = {}
        self._runs = dict.fromkeys(RUN_STATES, 0)  # "pending" follows at scrape time
        self._remaining = 0  # runs neither stored nor given up (in flight included)
        self._failed_attempts = 0
        self._started = time.monotonic()
        self._done_now = 0  # this session's runs, for the ETA
        self._energy: dict[tuple[str, str], float] = {}  # (device, status) -> J
        self._parts: dict[tuple[str, str, str], float] = {}  # (device, component, status)

    # -- observer --------------------------------------------------------------------------
    def on_start(self, campaign: Any, progress: Any, store: Any) -> None:
        """Take the run counts and add the energy of the runs already in the store."""
        stored = _final_rows(store.rows()) if progress.skipped else []
        with self._lock:
            self._info = {"hash": campaign.hash, "store": str(getattr(store, "path", ""))}
            self._started = progress.started
            self._runs.update(total=progress.total, done=progress.skipped)
            self._remaining = progress.remaining
            for row, estimated in stored:
                self._add(row, estimated)

    def on_submit(self, run: Any, in_flight: int) -> None:
        """Update the runs in flight."""
        with self._lock:
            self._runs["in_flight"] = in_flight

    def on_run_done(self, run: Any, rows: list[dict[str, Any]], in_flight: int,
                    progress: Any) -> None:
        """Add the run's final checkpoint's energy (estimated when any of its rows is) and
        update the counts."""
        estimated = any(bool(r.get("estimated")) for r in rows)  # as the store flags a run
        with self._lock:
            self._add(rows[-1], estimated)
            self._done_now = progress.done
            self._runs.update(done=progress.skipped + progress.done, in_flight=in_flight)
            self._remaining = progress.remaining

    def on_run_failed(self, run: Any, error: str, will_retry: bool, in_flight: int,
                      progress: Any) -> None:
        """Update failed attempts, runs given up and runs in flight."""
        with self._lock:
            self._failed_attempts = progress.failed_attempts
            self._runs.update(failed=progress.given_up, in_flight=in_flight)
            self._remaining = progress.remaining

    def on_end(self, progress: Any) -> None:
        """Nothing is in flight any more; keep what remains for the ETA."""
        with self._lock:
            self._runs["in_flight"] = 0
            self._remaining = progress.remaining

    def _add(self, row: Mapping[str, Any], estimated: bool) -> None:
        device, status = str(row.get("device", "")), "estimated" if estimated else "measured"
        key = (device, status)
        self._energy[key] = self._energy.get(key, 0.0) + float(row.get("energy_j", 0.0))
        for c in COMPONENTS:
            value = float(row.get(f"{c}_energy_j", math.nan))
            if not math.isnan(value):
                part = (device, c, status)
                self._parts[part] = self._parts.get(part, 0.0) + value

    # -- collector -------------------------------------------------------------------------
    def describe(self) -> list[Any]:
        """No metrics up front: they are generated at scrape time."""
        return []

    def collect(self) -> Iterator[Any]:
        """At each scrape: runs by state, failed attempts, ETA (s), the stored runs' energy (J)
        in all and per component, and the campaign's info, all under one lock."""
        c = [self._label]
        runs = GaugeMetricFamily("ecnas_campaign_runs", "Runs of the campaign by state",
                                 labels=["campaign", "state"])
        failed = CounterMetricFamily("ecnas_campaign_failed_attempts", "Failed run attempts "
                                     "(retried or given up) this session", labels=["campaign"])
        eta = GaugeMetricFamily("ecnas_campaign_eta_seconds", "Estimated seconds to the "
                                "campaign's end (NaN until a run is done)", labels=["campaign"])
        energy = CounterMetricFamily("ecnas_campaign_energy_joules", "Energy of the stored "
                                     "runs (final checkpoints)", labels=["campaign", "device",
                                                                         "status"])
        parts = CounterMetricFamily("ecnas_campaign_component_energy_joules", "Energy of the "
                                    "stored runs per component",
                                    labels=["campaign", "device", "component", "status"])
        info = GaugeMetricFamily("ecnas_campaign_info", "The campaign being run",
                                 labels=["campaign", "hash", "store"])
        with self._lock:
            self._runs["pending"] = max(self._remaining - self._runs["in_flight"], 0)
            for state in RUN_STATES:
                runs.add_metric([*c, state], self._runs[state])
            failed.add_metric(c, self._failed_attempts)
            eta.add_metric(c, (time.monotonic() - self._started) / self._done_now
                           * self._remaining if self._done_now else math.nan)
            for (device, status), j in sorted(self._energy.items()):
                energy.add_metric([*c, device, status], j)
            for (device, comp, status), j in sorted(self._parts.items()):
                parts.add_metric([*c, device, comp, status], j)
            if self._info:
                info.add_metric([*c, self._info["hash"], self._info["store"]], 1)
        yield from (runs, failed, eta, energy, parts, info)


def _final_rows(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]:
    """Each stored run's final checkpoint and whether any of its rows is estimated (the store
    lists a run's rows together)."""
    out: list[tuple[dict[str, Any], bool]] = []
    key = None
    for row in rows:
        k = (row.get("arch_hash"), row.get("budget_epochs"), row.get("repeat"))
        if k != key:
            out.append((row, bool(row.get("estimated"))))
            key = k
        else:
            out[-1] = (row, out[-1][1] or bool(row.get("estimated")))
    return out


class Exporter:
    """A registry with its collectors and the HTTP server; a context manager."""

    def __init__(self, server: MetricsServer, live: LiveEnergyCollector,
                 campaign: CampaignMetrics | None) -> None:
        self.server, self.live, self.campaign = server, live, campaign

    @property
    def observers(self) -> list[CampaignObserver]:
        """The campaign observers to pass to :func:`ecnas.campaign.run_campaign` (empty for
        ``ecnas measure``)."""
        return [self.campaign] if self.campaign is not None else []

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the HTTP server and the live meters."""
        self.server.close()
        self.live.close()


def _exporter(label: str, port: int, addr: str, meters: Sequence[Any] | None,
              with_campaign: bool) -> Exporter:
    registry = CollectorRegistry(auto_describe=False)  # one per exporter: no global state
    server = MetricsServer(registry, port, addr).start()  # refuse a busy port before work
    try:
        live = LiveEnergyCollector({"campaign": label}, meters).start()
    except BaseException:
        server.close()
        raise
    registry.register(live)
    campaign = CampaignMetrics(label) if with_campaign else None
    if campaign is not None:
        registry.register(campaign)
    return Exporter(server, live, campaign)


def campaign_exporter(campaign_label: str, port: int, addr: str = "127.0.0.1",
                      meters: Sequence[Any] | None = None) -> Exporter:
    """Serve a campaign's progress and this host's live energy; pass ``.observers`` to
    :func:`ecnas.campaign.run_campaign`."""
    return _exporter(campaign_label, port, addr, meters, True)


def measure_exporter(label: str, port: int, addr: str = "127.0.0.1",
                     meters: Sequence[Any] | None = None) -> Exporter:
    """Serve this host's live energy while ``ecnas measure`` runs its command."""
    return _exporter(label, port, addr, meters, False)
