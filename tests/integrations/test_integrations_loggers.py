"""The callbacks' energy in the loggers people already use: real tiny Lightning and Hugging
Face runs on CPU logging to a real TensorBoard event file and a real MLflow file store, read
back with TensorBoard's ``EventAccumulator`` and MLflow's ``MlflowClient``; the values are the
ones the callback's own rows hold."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install ecnas[tensorboard])")
pytest.importorskip("mlflow", reason="mlflow not installed (pip install ecnas[mlflow])")


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "cache"))
    # MLflow 3 keeps its file store in maintenance mode behind this switch
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)


def _scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _mlflow_history(uri: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    return [(m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, key)]


def _check_energy(logged: list[float], rows: list[dict[str, Any]], *, rel: float) -> None:
    """One logged value per epoch, equal to the row at that epoch's end (float32 where the
    framework or logger keeps float32, hence ``rel``), cumulative."""
    assert len(logged) == len(rows) - 1
    assert logged == pytest.approx([r["energy_j"] for r in rows[1:]], rel=rel, abs=0)
    assert logged == sorted(logged) and logged[0] > 0


@pytest.mark.filterwarnings("ignore")
def test_lightning_energy_in_tensorboard_and_mlflow(tmp_path: Path) -> None:
    pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger
    from test_integrations_frameworks import _lightning_fit

    from ecnas.integrations.lightning import EnergyCallback

    uri = f"file:{tmp_path / 'mlruns'}"
    tb = TensorBoardLogger(save_dir=str(tmp_path), name="tb")
    energy = EnergyCallback(log_steps=True)
    _lightning_fit(tmp_path, energy, log_every_n_steps=1,
                   logger=[tb, MLFlowLogger(experiment_name="ecnas", tracking_uri=uri)])
    rows = energy.rows()
    assert [r["epoch"] for r in rows] == [0.0, 1.0, 2.0]
    assert not any(k.startswith("energy/") for r in rows for k in r)  # logs stay out of rows

    tb_energy = [v for _, v in _scalars(Path(tb.log_dir), "energy/energy_j")]
    _check_energy(tb_energy, rows, rel=1e-6)
    # Lightning accumulates epoch logs in float32 tensors: float32 all the way to MLflow
    ml_energy = [v for _, v in _mlflow_history(uri, "energy/energy_j")]
    _check_energy(ml_energy, rows, rel=1e-6)
    # per component: this machine has no RAPL or GPU here, so the CPU part is all there is
    components = [c for c in ("gpu", "cpu", "dram") if not math.isnan(rows[1][f"{c}_energy_j"])]
    for c in components:
        logged = [v for _, v in _mlflow_history(uri, f"energy/{c}_energy_j")]
        assert logged == pytest.approx([r[f"{c}_energy_j"] for r in rows[1:]], rel=1e-6)
    for c in {"gpu", "cpu", "dram"} - set(components):
        assert _mlflow_history(uri, f"energy/{c}_energy_j") == []
    # mean power per epoch: that epoch's energy over its wall time
    power = [v for _, v in _mlflow_history(uri, "energy/power_w")]
    want = [(rows[1]["energy_j"]) / rows[1]["wall_time_s"],
            (rows[2]["energy_j"] - rows[1]["energy_j"])
            / (rows[2]["wall_time_s"] - rows[1]["wall_time_s"])]
    assert power == pytest.approx(want, rel=1e-6)
    estimated = [v for _, v in _mlflow_history(uri, "energy/estimated")]
    assert estimated == [float(rows[1]["estimated"]), float(rows[2]["estimated"])]
    # per step: 4 optimizer steps per epoch, logged at every one of them
    steps = _scalars(Path(tb.log_dir), "energy/energy_j_step")
    assert len(steps) == 8
    assert [v for _, v in steps] == sorted(v for _, v in steps)
    assert steps[-1][1] <= tb_energy[-1] * (1 + 1e-6)


@pytest.mark.filterwarnings("ignore")
def test_huggingface_energy_in_tensorboard_and_mlflow(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    import mlflow
    from test_integrations_frameworks import _hf_trainer

    from ecnas.integrations.huggingface import EnergyCallback

    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # a URI set earlier in this process would win over the env
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "ecnas")
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    trainer = _hf_trainer(tmp_path / "out", [], eval_strategy="no", logging_strategy="no",
                          report_to=["tensorboard", "mlflow"])
    energy = EnergyCallback().attach(trainer)
    trainer.train()
    rows = energy.rows()
    assert [r["epoch"] for r in rows] == [0.0, 1.0, 2.0]
    assert not any(k.startswith("energy/") for r in rows for k in r)
    # the Trainer's own record of its log events holds the energy, one per epoch
    history = [h for h in trainer.state.log_history if "energy/energy_j" in h]
    assert [h["epoch"] for h in history] == [1.0, 2.0]
    # logged at each epoch's end, before the checkpoint read: at most the row's energy
    logged = [h["energy/energy_j"] for h in history]
    assert logged == sorted(logged) and logged[0] > 0
    for value, row in zip(logged, rows[1:], strict=True):
        assert rows[0]["energy_j"] <= value <= row["energy_j"]

    ml = _mlflow_history(uri, "energy/energy_j")
    assert [v for _, v in ml] == logged  # exactly what the Trainer logged
    assert [s for s, _ in ml] == [h["step"] for h in history]
    # the Trainer's TensorBoard callback prefixes training logs with "train/"
    tb = _scalars(tmp_path / "tb", "train/energy/energy_j")
    assert [v for _, v in tb] == pytest.approx(logged, rel=1e-6)
    assert [v for _, v in _mlflow_history(uri, "energy/estimated")] == [
        float(rows[1]["estimated"]), float(rows[2]["estimated"])]
    # mean power since the previous energy log: never negative, and positive exactly when the
    # energy grew (the CPU estimate counts 10 ms ticks: a short interval can hold none)
    power = [v for _, v in _mlflow_history(uri, "energy/power_w")]
    assert len(power) == len(logged) and all(v >= 0 for v in power)
    for p, (before, after) in zip(power[1:], itertools.pairwise(logged), strict=True):
        assert (p > 0) == (after > before)
