"""syne-tune: the real EC-NAS 5V bundle as a tabular blackbox, loaded by syne-tune's own
``load_blackbox`` offline, searched by its MOASHA scheduler through its blackbox simulator
backend; every energy and time the search sees is the bundle's."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("syne_tune.blackbox_repository",
                    reason="syne-tune not installed (pip install ecnas[synetune])")
pytest.importorskip("fastparquet", reason="syne-tune's blackbox repository reads with fastparquet")

from ecnas.benchmark import Benchmark, write_bundle  # noqa: E402
from ecnas.errors import InputError  # noqa: E402
from ecnas.integrations.synetune import OBJECTIVES, register_bundle, to_blackbox  # noqa: E402
from ecnas.interop import import_ecnas  # noqa: E402

DEVICE = "nvidia-quadro-rtx-6000"  # the device EC-NAS's 5V runs were measured on


@pytest.fixture(scope="module")
def bundle5v(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(import_ecnas(ecnas_5v_dir), tmp_path_factory.mktemp("st") / "b5v")


@pytest.fixture(scope="module")
def bench(bundle5v: Path) -> Benchmark:
    return Benchmark.load(bundle5v)


@pytest.fixture
def st_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """syne-tune's local repository and results folder in tmp_path, the Hub switched off."""
    import huggingface_hub.constants
    from syne_tune.blackbox_repository import repository

    monkeypatch.setattr(repository, "repository_path", tmp_path / "repo")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("SYNETUNE_FOLDER", str(tmp_path / "syne-tune"))
    return tmp_path / "repo"


def _expected(bench: Benchmark, cell: str, epochs: float) -> dict[str, float]:
    """The bundle's numbers for one cell at one fidelity (the halfway or the final evaluation)."""
    matrix, ops = cell.split("|")
    _, computed = bench.get_metrics_from_spec((matrix, ops.split(",")))
    run = computed[4][0]
    stage = "final" if epochs == 4 else "halfway"
    return {"energy_j": run[f"{stage}_energy_j"],
            "training_time_s": run[f"{stage}_training_time"],
            "validation_accuracy": run[f"{stage}_validation_accuracy"],
            "test_accuracy": run[f"{stage}_test_accuracy"]}


def test_blackbox_holds_the_bundle(bench: Benchmark) -> None:
    bb = to_blackbox(bench)
    assert list(bb.fidelity_values) == [2.0, 4.0]  # EC-NAS's halfway and final evaluations
    assert bb.objectives_names == list(OBJECTIVES)
    assert bb.objectives_evaluations.shape == (len(bench), 1, 2, len(OBJECTIVES))
    arrays = bench.arrays(4, repeat=1)
    final = bb.objectives_evaluations[:, 0, 1]
    np.testing.assert_array_equal(final[:, OBJECTIVES.index("energy_j")], arrays["energy_j"])
    np.testing.assert_array_equal(final[:, OBJECTIVES.index("validation_error")],
                                  1.0 - arrays["validation_accuracy"])
    cell = bb.hyperparameters["cell"].iloc[17]
    half = bb.objective_function({"cell": cell, "space": "nasbench101-5V9E"},
                                 fidelity={"epochs": 2}, seed=0)
    want = _expected(bench, cell, 2)
    assert half["energy_j"] == want["energy_j"] and half["training_time_s"] == want["training_time_s"]
    # every sample of the configuration space is a benchmarked cell
    space = bb.configuration_space
    stored = set(bb.hyperparameters["cell"])
    for _ in range(50):
        assert space["cell"].sample() in stored


def test_blackbox_resolves_other_spellings_and_names_the_reason(bench: Benchmark) -> None:
    bb = to_blackbox(bench)
    cells = bb.hyperparameters["cell"].tolist()
    # a 5-vertex cell whose vertices 1 and 2 are unconnected: swapping them is the same cell
    for cell in cells:
        matrix, ops = cell.split("|")
        m = np.array(list(matrix), dtype=int).reshape(5, 5) if len(matrix) == 25 else None
        o = ops.split(",")
        if m is not None and m[1, 2] == 0 and o[1] != o[2]:
            break
    perm = [0, 2, 1, 3, 4]
    swapped = "".join(map(str, m[np.ix_(perm, perm)].ravel())) + "|" + ",".join(o[i] for i in perm)
    assert swapped not in cells
    got = bb.objective_function({"cell": swapped, "space": "x"}, fidelity={"epochs": 4}, seed=0)
    assert got["energy_j"] == _expected(bench, cell, 4)["energy_j"]
    with pytest.raises(ValueError, match="not connected|input|output|invalid"):
        bb.objective_function({"cell": "0000000000000000|input,conv3x3-bn-relu,"
                                       "conv3x3-bn-relu,output"}, fidelity={"epochs": 4})
    with pytest.raises(ValueError, match="expected"):
        bb.objective_function({"cell": 3}, fidelity={"epochs": 4})


def test_moasha_on_load_blackbox_sees_the_bundles_energy(
        bundle5v: Path, bench: Benchmark, st_repository: Path) -> None:
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository import BlackboxRepositoryBackend, load_blackbox
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    name = register_bundle(bundle5v, name="ecnas-5v")
    assert json.loads((st_repository / name / "metadata.json").read_text())["task_names"] == [DEVICE]
    bb = load_blackbox(name, local_files_only=True)[DEVICE]  # syne-tune's own reader, offline
    assert bb.objectives_evaluations.dtype == np.float64

    backend = BlackboxRepositoryBackend(blackbox_name=name, dataset=DEVICE,
                                        elapsed_time_attr="training_time_s")
    scheduler = MOASHA(config_space=bb.configuration_space,
                       metrics=["validation_error", "energy_j"], time_attr="epochs", max_t=4,
                       grace_period=2, reduction_factor=2, random_seed=7)
    results = SimulatorCallback()
    tuner = Tuner(trial_backend=backend, scheduler=scheduler,
                  stop_criterion=StoppingCriterion(max_num_trials_started=40), n_workers=4,
                  sleep_time=0, callbacks=[results], save_tuner=False,
                  results_update_interval=1e9, print_update_interval=1e9)
    tuner.run()
    df = results.dataframe()
    assert df["trial_id"].nunique() >= 30 and len(df) >= 36
    assert set(df["epochs"]) == {2.0, 4.0}
    assert (df["st_decision"] == "STOP").any()  # MOASHA stopped some trials at the halfway rung
    for row in df.itertuples():
        want = _expected(bench, row.config_cell, row.epochs)
        assert row.energy_j == want["energy_j"]  # exactly: float64 all the way
        assert row.validation_accuracy == want["validation_accuracy"]
        assert row.training_time_s == want["training_time_s"]
    # simulated time: each trial starts once and its results arrive at start + the table's time
    for _, trial in df.groupby("trial_id"):
        start = trial["st_tuner_time"] - trial["training_time_s"]
        assert start.max() - start.min() < 1e-6
    assert df["st_tuner_time"].max() >= df["training_time_s"].max()
    assert math.isfinite(df["energy_j"].sum())


def test_register_refuses_foreign_folders_and_bad_names(bundle5v: Path, st_repository: Path,
                                                        tmp_path: Path) -> None:
    foreign = st_repository / "ecnas-mine"
    foreign.mkdir(parents=True)
    (foreign / "metadata.json").write_text("{}")
    with pytest.raises(InputError, match="not written by ecnas"):
        register_bundle(bundle5v, name="ecnas-mine")
    assert (foreign / "metadata.json").read_text() == "{}"
    with pytest.raises(InputError, match="ecnas-"):
        register_bundle(bundle5v, name="fcnet")
    with pytest.raises(InputError, match="not an ecnas bundle"):
        register_bundle(tmp_path, name="ecnas-x")
    # a folder ecnas wrote is replaced on re-registration; its mode follows the umask
    register_bundle(bundle5v, name="ecnas-again")
    register_bundle(bundle5v, name="ecnas-again")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((st_repository / "ecnas-again").stat().st_mode) == 0o777 & ~mask
    assert [p.name for p in st_repository.iterdir() if p.name.startswith(".")] == []
    assert sorted(p.name for p in (st_repository / "ecnas-again").iterdir()) == [
        "configspace.json", "fidelities_values.npy", "fidelityspace.json",
        "hyperparameters.parquet", "metadata.json", "objectives_evaluations.npy"]


def test_a_missing_dependency_of_syne_tune_is_named() -> None:
    """syne-tune installed without a package its blackbox repository imports (syne-tune 0.16's
    own install lacks huggingface_hub): the ImportError names that package, not only the
    extra the user may have just installed."""
    import subprocess
    import sys

    blocked = "huggingface_hub"
    proc = subprocess.run([sys.executable, "-c", f"import sys; sys.modules[{blocked!r}] = None; "
                           "import ecnas.integrations.synetune"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ecnas.integrations.synetune: syne-tune is installed "
                           f"but cannot import {blocked!r}"), last
    assert f"pip install {blocked.replace('_', '-')}" in last
    assert "pip install ecnas[synetune]" in last
