"""Integration costs: building the syne-tune blackbox from the 5V bundle, a simulated MOASHA
search on it (per trial), one Prometheus scrape over loopback, and the coordinator's cost per
completed run with and without the metrics observer. ECNAS_BENCH_QUICK=1 shrinks the counts.

    python3 -m pytest -q benchmarks/bench_integrations.py
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from campaign_runfns import trivial  # noqa: E402

from ecnas.campaign import Campaign, run_campaign  # noqa: E402

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
TRIALS = 40 if QUICK else 200
RUNS = 200 if QUICK else 2_000


@pytest.fixture(scope="module")
def bench5v(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from ecnas.benchmark import Benchmark, write_bundle
    from ecnas.interop import import_ecnas

    return Benchmark.load(write_bundle(import_ecnas(ecnas_5v_dir),
                                       tmp_path_factory.mktemp("b") / "b5v"))


def test_to_blackbox_5v(benchmark, bench5v) -> None:
    pytest.importorskip("syne_tune.blackbox_repository", reason="syne-tune not installed")
    from ecnas.integrations.synetune import to_blackbox

    bb = benchmark(to_blackbox, bench5v)
    assert len(bb.hyperparameters) == len(bench5v)


def test_moasha_simulated_trials(benchmark, bench5v, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("syne_tune.blackbox_repository", reason="syne-tune not installed")
    import logging

    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository import UserBlackboxBackend
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    from ecnas.integrations.synetune import to_blackbox

    monkeypatch.setenv("SYNETUNE_FOLDER", str(tmp_path))
    bb = to_blackbox(bench5v)
    logging.disable(logging.WARNING)

    def search() -> int:
        results = SimulatorCallback()
        Tuner(trial_backend=UserBlackboxBackend(bb, elapsed_time_attr="training_time_s"),
              scheduler=MOASHA(config_space=bb.configuration_space, time_attr="epochs",
                               metrics=["validation_error", "energy_j"], max_t=4,
                               grace_period=2, reduction_factor=2, random_seed=0),
              stop_criterion=StoppingCriterion(max_num_trials_started=TRIALS), n_workers=4,
              sleep_time=0, callbacks=[results], save_tuner=False,
              results_update_interval=1e9, print_update_interval=1e9).run()
        return results.dataframe()["trial_id"].nunique()

    try:
        trials = benchmark.pedantic(search, rounds=1 if QUICK else 3, iterations=1)
    finally:
        logging.disable(logging.NOTSET)
    benchmark.extra_info["trials"] = trials
    # the stop criterion counts trials started: up to n_workers (4) may have reported nothing yet
    assert trials >= TRIALS - 4


def test_scrape(benchmark) -> None:
    pytest.importorskip("prometheus_client", reason="prometheus-client not installed")
    from ecnas.integrations.prometheus import campaign_exporter

    with campaign_exporter("bench", 0) as exporter:
        body = benchmark(lambda: urllib.request.urlopen(exporter.server.url).read())
    assert b"ecnas_energy_joules_total" in body


def _campaign() -> Campaign:
    return Campaign.from_dict({
        "campaign": {"budgets": [4], "repeats": RUNS // 100},
        "architectures": {"sample": {"count": 100, "seed": 0}},
        "recipe": {"stem_channels": 4, "num_stacks": 1, "cells_per_stack": 1}})


@pytest.mark.parametrize("observed", [False, True], ids=["plain", "with-exporter"])
def test_dispatch_with_and_without_exporter(benchmark, tmp_path: Path, observed: bool) -> None:
    pytest.importorskip("prometheus_client", reason="prometheus-client not installed")
    from ecnas.integrations.prometheus import campaign_exporter

    campaign = _campaign()
    stores = iter(range(100))

    def dispatch() -> int:
        store = tmp_path / f"s{next(stores)}.sqlite"
        if not observed:
            return run_campaign(campaign, store, workers=0, run_fn=trivial).done
        with campaign_exporter("bench", 0) as exporter:
            return run_campaign(campaign, store, workers=0, run_fn=trivial,
                                observers=exporter.observers).done

    done = benchmark.pedantic(dispatch, rounds=3, iterations=1)
    benchmark.extra_info["runs"] = done
    assert done == RUNS
