"""A real Prometheus server (Debian's ``prometheus`` package) scrapes ``ecnas run
--metrics-port`` on 127.0.0.1; the test reads the campaign's progress and energy series back
through Prometheus's HTTP API and checks each against the SQLite store.

The campaign's run function (``campaign_runfns:gated``) finishes its n-th run only when the
test says so, and the test says so only once Prometheus has stored the state before it: every
step of the campaign is seen by the server, whatever the machine's load. The shipped Grafana
dashboard's queries are run against the same server."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="prometheus-client not installed "
                    "(pip install ecnas[prometheus])")

from campaign_runfns import campaign_toml  # noqa: E402

from ecnas.campaign import ResultsStore  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
DASHBOARD = ROOT / "examples" / "grafana" / "ecnas-campaign.json"
PROMETHEUS = shutil.which("prometheus")
SCRAPE = "200ms"
TOTAL = 4  # 2 cells × 2 repeats

# one worker runs them (pytest -n … --dist loadgroup): each starts a Prometheus server
pytestmark = [pytest.mark.xdist_group("prometheus"), pytest.mark.skipif(
    PROMETHEUS is None, reason="Debian's prometheus package is not installed "
    "(apt-get install prometheus; scripts/test.sh --with-services installs it where apt-get "
    "works)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read().decode())


class Prom:
    """Prometheus on 127.0.0.1 with a scrape job for one ecnas exporter; temp storage."""

    def __init__(self, work: Path, target_port: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = work / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE}\n"
            f"  scrape_timeout: {SCRAPE}\n"
            "scrape_configs:\n"
            "  - job_name: ecnas\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n")
        self.log = (work / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=work)
        self.log_path = work / "prometheus.log"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"prometheus did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def query(self, expr: str) -> list[dict[str, Any]]:
        out = _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert out["status"] == "success", out
        return out["data"]["result"]

    def series(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        out = _get(f"{self.url}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": expr, "start": start, "end": end, "step": "0.1"}))
        assert out["status"] == "success", out
        return out["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def wait_for(self, expr: str, want: float, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.value(expr)) != want:
            assert time.monotonic() < deadline, f"{expr} = {got}, waited for {want}"
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _store_prefix_energy(store: Path) -> list[float]:
    """The stored energy after each run, in the order the store committed the runs."""
    import sqlite3

    db = sqlite3.connect(store)
    try:
        keys = [k for (k,) in db.execute("SELECT run_key FROM runs ORDER BY finished, rowid")]
    finally:
        db.close()
    with ResultsStore(store) as s:
        rows = s.rows()
    final = {f"{r['arch_hash']}/{r['budget_epochs']}/{r['repeat']}": r["energy_j"]
             for r in rows}
    out, total = [0.0], 0.0
    for k in keys:
        total += final[k]
        out.append(total)
    return out


def test_prometheus_scrapes_ecnas_run_and_matches_the_store(tmp_path: Path) -> None:
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=2)
    store, gates = tmp_path / "c.sqlite", tmp_path / "gates"
    gates.mkdir()
    port = _free_port()
    prom = Prom(tmp_path, port)
    env = {**os.environ, "ECNAS_TEST_GATE_DIR": str(gates),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    run = None
    try:
        t0 = time.time()
        run = subprocess.Popen(
            [sys.executable, "-m", "ecnas", "run", str(toml), "--store", str(store),
             "--workers", "0", "--run-fn", "campaign_runfns:gated", "--metrics-port", str(port),
             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        sel = '{job="ecnas",campaign="test"'
        done = f'ecnas_campaign_runs{sel},state="done"}}'
        # done, pending + in flight, total, stored energy
        seen: list[tuple[int, float, float, float]] = []
        for n in range(TOTAL):
            prom.wait_for(done, n)  # Prometheus holds the state with n runs stored
            energy = prom.query(f"sum(ecnas_campaign_energy_joules_total{sel}}})")
            seen.append((n, prom.value(f'sum(ecnas_campaign_runs{sel},'
                                       'state=~"pending|in_flight"})'),
                         prom.value(f'ecnas_campaign_runs{sel},state="total"}}'),
                         float(energy[0]["value"][1]) if energy else 0.0))
            assert prom.value('up{job="ecnas"}') == 1
            if n == 2:  # the dashboard's queries, mid-campaign, against the live server
                dashboard = _dashboard_queries(prom)
                # live energy of this host's meters rides along, measured or estimated
                live = prom.query('ecnas_energy_joules_total{job="ecnas"}')
            (gates / f"go-{n}").touch()  # let run n finish
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        t1 = time.time()
        # what the server stored over the whole campaign, against the store's commit order
        prefix = _store_prefix_energy(store)
        assert len(prefix) == TOTAL + 1
        for n, pending, total, energy in seen:
            assert total == TOTAL and pending == TOTAL - n
            assert energy == pytest.approx(prefix[n], rel=1e-12, abs=0)
        series = prom.series(f"ecnas_campaign_runs{sel},state=\"done\"}}", t0, t1)
        energies = prom.series(f"sum(ecnas_campaign_energy_joules_total{sel}}})", t0, t1)
        by_time = {float(t): float(v) for t, v in energies[0]["values"]} if energies else {}
        steps = 0
        for t, v in series[0]["values"]:
            d = int(float(v))
            assert 0 <= d <= TOTAL
            if float(t) in by_time:  # every sample pair: the energy of the first d runs
                assert by_time[float(t)] == pytest.approx(prefix[d], rel=1e-12, abs=0)
                steps += 1
        assert steps and {d for d, *_ in seen} == set(range(TOTAL))
        assert live and all(r["metric"]["status"] in ("measured", "estimated") for r in live)
        with ResultsStore(store) as s:
            measured, estimated = s.energy()
        assert measured + estimated == pytest.approx(prefix[-1], rel=1e-12)
        assert dashboard["progress"] == 2 and dashboard["energy"] == pytest.approx(prefix[2])
    finally:
        if run is not None and run.poll() is None:
            for n in range(TOTAL):
                (gates / f"go-{n}").touch()
            run.kill()
            run.wait()
        prom.close()
    assert "level=error" not in prom.log_path.read_text()


def _dashboard_queries(prom: Prom) -> dict[str, float]:
    """Every panel query of the shipped Grafana dashboard, its variables set as Grafana sets
    them, returns data from the live server; the progress and energy panels read the
    expected series."""
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] and board["uid"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"campaign", "datasource"}
    # the campaign variable: label_values(ecnas_campaign_info, campaign) through the API
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)",
                                 variables["campaign"]["definition"]).groups()
    values = _get(f"{prom.url}/api/v1/label/{label}/values?"
                  + urllib.parse.urlencode({"match[]": metric}))
    assert values["data"] == ["test"], values
    out: dict[str, float] = {}
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel
        for target in panel["targets"]:
            expr = target["expr"].replace("$campaign", "test").replace("$__rate_interval", "2s")
            assert "$" not in expr, f"unset variable in {expr!r}"
            result = prom.query(expr)
            assert result, f"panel {panel['title']!r}: {expr} returns nothing"
            if panel["title"] == "Runs done":
                out["progress"] = float(result[0]["value"][1])
            if panel["title"] == "Energy of stored runs":
                out["energy"] = sum(float(r["value"][1]) for r in result)
    assert set(out) == {"progress", "energy"}, out
    return out
