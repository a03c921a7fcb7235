"""Prometheus: scrape the exporter over 127.0.0.1 while a small real campaign runs (real
coordinator, real SQLite store, run functions from campaign_runfns), then match every scrape
against the store; ``ecnas run``/``ecnas measure --metrics-port``; a busy port is refused."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client", reason="prometheus-client not installed "
                    "(pip install ecnas[prometheus])")

from campaign_runfns import campaign_toml  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from ecnas.campaign import ResultsStore, load_campaign, run_campaign  # noqa: E402
from ecnas.integrations.prometheus import campaign_exporter  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]
Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(url: str) -> Sample:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _get(sample: Sample, name: str, **labels: str) -> list[float]:
    want = set(labels.items())
    return [v for (n, lab), v in sample.items() if n == name and want <= set(lab)]


def _runs(sample: Sample, state: str) -> float:
    (value,) = _get(sample, "ecnas_campaign_runs", state=state)
    return value


def _store_runs(store: Path) -> list[tuple[float, float]]:
    """(energy_j, cpu_energy_j) of each stored run's final checkpoint, in commit order."""
    import sqlite3

    db = sqlite3.connect(store)
    try:
        keys = [k for (k,) in db.execute("SELECT run_key FROM runs ORDER BY finished, rowid")]
    finally:
        db.close()
    with ResultsStore(store) as s:
        rows = s.rows()
    final = {}
    for r in rows:
        final[f"{r['arch_hash']}/{r['budget_epochs']}/{r['repeat']}"] = r
    return [(final[k]["energy_j"], final[k]["cpu_energy_j"]) for k in keys]


def _scrape_until_exit(proc: subprocess.Popen, url: str, every: float) -> list[Sample]:
    seen: list[Sample] = []
    while proc.poll() is None:
        try:
            sample = _scrape(url)
        except OSError:
            sample = {}  # not listening yet, or already gone
        if sample:  # a scrape cut short by the server's shutdown reads as nothing
            seen.append(sample)
        time.sleep(every)
    return seen


# a free port is picked here and bound by a child process a moment later: one worker runs the
# port-using tests (pytest -n … --dist loadgroup), so no other test takes it in between
pytestmark = pytest.mark.xdist_group("prometheus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")])}


def test_scrapes_during_a_campaign_match_the_store(tmp_path: Path) -> None:
    campaign = load_campaign(campaign_toml(tmp_path / "c.toml", count=3, repeats=2))
    store = tmp_path / "c.sqlite"
    scrapes: list[Sample] = []
    with campaign_exporter(campaign.name, 0) as exporter:  # port 0: the system picks one
        assert exporter.server.url.startswith("http://127.0.0.1:")
        from campaign_runfns import marked

        result: dict = {}
        runner = threading.Thread(target=lambda: result.update(summary=run_campaign(
            campaign, store, workers=0, run_fn=marked, observers=exporter.observers)))
        runner.start()
        while runner.is_alive():
            scrapes.append(_scrape(exporter.server.url))
            time.sleep(0.05)
        runner.join()
        final = _scrape(exporter.server.url)
    assert result["summary"].done == 6
    runs = _store_runs(store)
    assert len(runs) == 6
    middle = [s for s in scrapes if 0 < _runs(s, "done") < 6]
    assert middle, "no scrape landed while the campaign was running"
    started = [s for s in scrapes if _get(s, "ecnas_campaign_info")]  # before: all zero
    assert all(_runs(s, "total") == 0 for s in scrapes if s not in started)
    for s in [*started, final]:
        done = int(_runs(s, "done"))
        assert _runs(s, "total") == 6 and _runs(s, "failed") == 0
        assert _runs(s, "in_flight") <= 1  # inline: one run at a time
        assert done + _runs(s, "pending") + _runs(s, "in_flight") == 6
        # the energy a scrape shows is that of the first `done` runs the store committed
        energy = sum(_get(s, "ecnas_campaign_energy_joules_total", campaign="test",
                          status="measured"))
        assert energy == pytest.approx(sum(e for e, _ in runs[:done]), rel=1e-12, abs=0)
        cpu = sum(_get(s, "ecnas_campaign_component_energy_joules_total", component="cpu"))
        assert cpu == pytest.approx(sum(c for _, c in runs[:done]), rel=1e-12, abs=0)
        assert not _get(s, "ecnas_campaign_component_energy_joules_total", component="gpu")
    assert _runs(final, "done") == 6 and _runs(final, "pending") == 0
    with ResultsStore(store) as s:
        measured, estimated = s.energy()
    assert sum(_get(final, "ecnas_campaign_energy_joules_total")) == pytest.approx(measured)
    assert estimated == 0
    assert _get(final, "ecnas_campaign_eta_seconds") == [0.0]
    assert _get(final, "ecnas_campaign_info", hash=campaign.hash) == [1.0]
    assert _get(final, "ecnas_campaign_energy_joules_total", device="generic-cpu")
    # live energy of this host's meters, per domain, labelled with campaign and device
    live = [(dict(lab), v) for (n, lab), v in final.items() if n == "ecnas_energy_joules_total"]
    assert live and all(lab["campaign"] == "test" and lab["device"] and lab["domain"]
                        and lab["status"] in ("measured", "estimated") for lab, _ in live)
    assert all(v > 0 for _, v in live)
    assert all(v >= 0 for v in _get(final, "ecnas_power_watts"))

    # a later session over the same store starts from what is stored
    with campaign_exporter(campaign.name, 0) as exporter:
        run_campaign(campaign, store, workers=0, run_fn=marked, observers=exporter.observers)
        again = _scrape(exporter.server.url)
    assert _runs(again, "done") == 6
    assert sum(_get(again, "ecnas_campaign_energy_joules_total")) == pytest.approx(measured)


def test_failures_are_counted(tmp_path: Path) -> None:
    from campaign_runfns import always_fails

    campaign = load_campaign(campaign_toml(tmp_path / "c.toml", count=1, repeats=2, retries=1))
    with campaign_exporter(campaign.name, 0) as exporter:
        run_campaign(campaign, tmp_path / "c.sqlite", workers=0, run_fn=always_fails,
                     observers=exporter.observers)
        s = _scrape(exporter.server.url)
    assert _runs(s, "failed") == 2 and _runs(s, "done") == 0 and _runs(s, "pending") == 0
    assert _get(s, "ecnas_campaign_failed_attempts_total") == [4.0]  # 2 runs × (1 + 1 retry)
    assert _get(s, "ecnas_campaign_eta_seconds") != [0.0]  # NaN: nothing done to go by


def test_ecnas_run_metrics_port_and_a_busy_port(tmp_path: Path) -> None:
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=2)
    store = tmp_path / "c.sqlite"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused = subprocess.run(
            [sys.executable, "-m", "ecnas", "run", str(toml), "--store", str(store),
             "--workers", "0", "--run-fn", "campaign_runfns:marked", "--metrics-port",
             str(port)], capture_output=True, text=True, env=_env(), timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "cannot listen on 127.0.0.1:" in refused.stderr
    assert not store.exists()  # refused before any work

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecnas", "run", str(toml), "--store", str(store), "--workers",
         "0", "--run-fn", "campaign_runfns:marked", "--metrics-port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    url = f"http://127.0.0.1:{port}/metrics"
    seen = _scrape_until_exit(proc, url, every=0.1)
    assert proc.wait(timeout=60) == 0
    assert f"serving metrics at {url}" in proc.stderr.read()
    assert any(0 < _runs(s, "done") < 4 for s in seen)
    runs = _store_runs(store)
    for s in seen:
        done = int(_runs(s, "done"))
        energy = sum(_get(s, "ecnas_campaign_energy_joules_total"))
        assert energy == pytest.approx(sum(e for e, _ in runs[:done]), rel=1e-12, abs=0)


def test_ecnas_measure_metrics_port(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecnas", "measure", "--name", "sleeper", "--metrics-port",
         str(port), "--json", "--", sys.executable, "-c", "import time; time.sleep(2.5)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    url = f"http://127.0.0.1:{port}/metrics"
    seen = _scrape_until_exit(proc, url, every=0.2)
    assert proc.wait(timeout=60) == 0
    live = [s for s in seen if _get(s, "ecnas_energy_joules_total", campaign="sleeper")]
    assert len(live) >= 2
    first = sum(_get(live[0], "ecnas_energy_joules_total"))
    last = sum(_get(live[-1], "ecnas_energy_joules_total"))
    # cumulative; the estimate counts CPU time in clock ticks, so an early scrape may read 0
    assert 0 <= first <= last and last > 0
    assert not any(_get(s, "ecnas_campaign_runs") for s in seen)  # no campaign here


def test_core_import_pulls_in_no_optional_peer() -> None:
    code = ("import sys, ecnas, ecnas.benchmark, ecnas.campaign, ecnas.integrations, "
            "ecnas.cli; ecnas.cli.build_parser(); "
            "print(sorted(m for m in ('syne_tune', 'mlflow', 'tensorboard', "
            "'prometheus_client', 'lightning', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), timeout=120, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("flags", "message"), [
    (["--metrics-port", "70000"], "use a port number in 0..65535"),
    (["--metrics-port", "0", "--metrics-addr", "no-such-host.invalid"], "cannot listen on"),
])
def test_bad_metrics_flags_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                               flags: list[str], message: str) -> None:
    from ecnas.cli import main

    toml = campaign_toml(tmp_path / "c.toml", count=1, repeats=1)
    assert main(["run", str(toml), "--store", str(tmp_path / "c.sqlite"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "c.sqlite").exists()


def test_metrics_port_without_prometheus_client_names_the_extra(tmp_path: Path) -> None:
    toml = campaign_toml(tmp_path / "c.toml", count=1, repeats=1)
    code = ("import sys; sys.modules['prometheus_client'] = None; from ecnas.cli import main; "
            f"sys.exit(main(['run', {str(toml)!r}, '--metrics-port', '0']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "pip install ecnas[prometheus]" in proc.stderr
    assert not (tmp_path / "c.sqlite").exists()
