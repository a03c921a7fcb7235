"""What each optional extra must do once a user has installed it: run inside a fresh venv by
tests/packaging/test_packaging_extras_install.py as ``VENV/bin/python extras_checks.py EXTRA WORKDIR``.

Each check imports the ecnas that pip installed into the venv (never this source tree) and
exercises the integration for real, then prints one JSON line of what it saw; a failed check
raises (exit status 1, with the traceback). ``tests/`` is on ``sys.path`` for the real test
helpers (``campaign_runfns``, ``fakes``)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _installed_ecnas() -> str:
    import ecnas

    where = Path(ecnas.__file__).resolve()
    if ROOT in where.parents:  # the test would prove nothing about the install
        raise AssertionError(f"ecnas imported from the source tree ({where}), not the venv")
    return str(where)


def _campaign(work: Path, count: int = 2, repeats: int = 1) -> Any:
    from campaign_runfns import campaign_toml

    from ecnas.campaign import load_campaign

    return load_campaign(campaign_toml(work / "c.toml", count=count, repeats=repeats))


def check_core(work: Path) -> dict[str, Any]:
    """ecnas without extras: the command line works and no optional peer came along."""
    import importlib.util
    import subprocess

    out = subprocess.run([str(Path(sys.executable).parent / "ecnas"), "hardware", "--json"],
                         capture_output=True, text=True, check=True, timeout=120)
    meters = {m["meter"]: m["status"] for m in json.loads(out.stdout)["meters"]}
    assert "estimate" in meters, meters
    peers = ("lightning", "transformers", "syne_tune", "prometheus_client", "mlflow",
             "tensorboard", "distributed", "dask_jobqueue", "amdsmi", "pyRAPL")
    present = [p for p in peers if importlib.util.find_spec(p) is not None]
    assert not present, f"core install pulled optional peers: {present}"
    return {"meters": meters}


def check_prometheus(work: Path) -> dict[str, Any]:
    """A campaign's metrics served and scraped over 127.0.0.1, matched against the store."""
    from campaign_runfns import trivial
    from prometheus_client.parser import text_string_to_metric_families

    from ecnas.campaign import ResultsStore, run_campaign
    from ecnas.integrations.prometheus import campaign_exporter

    campaign = _campaign(work)
    store = work / "c.sqlite"
    with campaign_exporter(campaign.name, 0) as exporter:
        run_campaign(campaign, store, workers=0, run_fn=trivial, observers=exporter.observers)
        with urllib.request.urlopen(exporter.server.url, timeout=10) as resp:
            text = resp.read().decode()
    samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
    done = [s.value for s in samples
            if s.name == "ecnas_campaign_runs" and s.labels["state"] == "done"]
    energy = sum(s.value for s in samples if s.name == "ecnas_campaign_energy_joules_total")
    with ResultsStore(store) as s:
        measured, estimated = s.energy()
    assert done == [2.0], done
    assert math.isclose(energy, measured + estimated, rel_tol=1e-12), (energy, measured)
    return {"done": done[0], "energy_j": energy}


def check_dask(work: Path) -> dict[str, Any]:
    """A campaign on a real Dask LocalCluster (loopback), every run stored."""
    from campaign_runfns import trivial
    from distributed import LocalCluster

    from ecnas.campaign import ResultsStore, run_campaign

    campaign = _campaign(work, count=2, repeats=2)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        summary = run_campaign(campaign, work / "c.sqlite", scheduler=cluster.scheduler_address,
                               run_fn=trivial)
    with ResultsStore(work / "c.sqlite") as s:
        keys = s.done_keys()
    assert summary.done == 4 and len(keys) == 4, (summary, keys)
    return {"done": summary.done}


def check_jobqueue(work: Path) -> dict[str, Any]:
    """docs/campaigns.md's SLURMCluster builds its job script (nothing is submitted)."""
    from dask_jobqueue import SLURMCluster

    import ecnas.campaign  # noqa: F401  (the API the script drives)

    with SLURMCluster(queue="gpu", cores=8, processes=1, memory="32GB", walltime="04:00:00",
                      job_extra_directives=["--gres=gpu:1"],
                      worker_extra_args=["--resources", "GPU=1", "--nthreads", "1"],
                      scheduler_options={"host": "127.0.0.1",
                                         "dashboard_address": "127.0.0.1:0"},
                      ) as cluster:
        script = cluster.job_script()
        address = cluster.scheduler_address
    assert "#SBATCH --gres=gpu:1" in script and "--resources GPU=1" in script, script
    assert address.startswith("tcp://127.0.0.1:"), address
    return {"scheduler": address}


def check_lightning(work: Path) -> dict[str, Any]:
    """docs/integrations.md's Lightning example, shortened: 2 epochs on random data."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from ecnas.integrations.lightning import EnergyCallback

    try:
        import lightning.pytorch as pl
    except ImportError:
        import pytorch_lightning as pl

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(8, 2)

        def training_step(self, batch: Any, _: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.layer(x), y)
            self.log("train_loss", loss, on_epoch=True)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader(TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,))),
                      batch_size=16)
    energy = EnergyCallback(repeat=1)
    trainer = pl.Trainer(max_epochs=2, callbacks=[energy], accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(work))
    trainer.fit(Net(), data)
    df = energy.table()
    assert list(df["epoch"]) == [0.0, 1.0, 2.0], df
    assert (df["energy_j"].diff().dropna() >= 0).all() and df["estimated"].dtype == bool
    return {"rows": len(df), "energy_j": float(df["energy_j"].iloc[-1])}


def check_huggingface(work: Path) -> dict[str, Any]:
    """docs/integrations.md's Hugging Face Trainer example, shortened: 2 epochs."""
    import torch
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainingArguments

    from ecnas.integrations.huggingface import EnergyCallback

    class Random(Dataset):
        def __init__(self, n: int) -> None:
            self.x, self.y = torch.randn(n, 8), torch.randint(0, 2, (n,))

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"x": self.x[i], "labels": self.y[i]}

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(8, 2)

        def forward(self, x: Any, labels: Any = None) -> dict[str, Any]:
            logits = self.layer(x)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    energy = EnergyCallback(repeat=1)
    args = TrainingArguments(output_dir=str(work / "hf-out"), num_train_epochs=2,
                             logging_strategy="epoch", save_strategy="no", report_to=[],
                             use_cpu=True, remove_unused_columns=False)
    trainer = Trainer(model=Linear(), args=args, train_dataset=Random(64), callbacks=[energy])
    try:
        trainer.train()
    finally:
        energy.close()
    df = energy.table()
    assert list(df["epoch"]) == [0.0, 1.0, 2.0], df
    assert (df["energy_j"].diff().dropna() >= 0).all()
    return {"rows": len(df), "energy_j": float(df["energy_j"].iloc[-1])}


def check_tensorboard(work: Path) -> dict[str, Any]:
    """measure()'s energy written with torch's SummaryWriter and read back by TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from ecnas import measure

    logdir = work / "tb"
    written = []
    with SummaryWriter(str(logdir)) as writer:
        for step in range(3):
            with measure(f"step{step}") as m:
                sum(i * i for i in range(200_000))
            writer.add_scalar("energy/energy_j", m.report.energy_j, step)
            written.append(m.report.energy_j)
    acc = EventAccumulator(str(logdir)).Reload()
    read = [e.value for e in acc.Scalars("energy/energy_j")]
    assert [round(v, 4) for v in read] == [round(v, 4) for v in written], (read, written)
    return {"scalars": len(read)}


def check_mlflow(work: Path) -> dict[str, Any]:
    """measure()'s energy logged to an MLflow file store and read back by MlflowClient."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from ecnas import measure

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (work / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as run:
        with measure("mlflow") as m:
            sum(i * i for i in range(200_000))
        mlflow.log_metric("energy_j", m.report.energy_j)
        mlflow.log_param("energy_estimated", m.report.estimated)
    got = MlflowClient(uri).get_run(run.info.run_id).data
    assert got.metrics["energy_j"] == m.report.energy_j, (got.metrics, m.report.energy_j)
    return {"energy_j": got.metrics["energy_j"]}


def check_amd(work: Path) -> dict[str, Any]:
    """The real amdsmi bindings over the stand-in libamd_smi.so (tests/fakes/amd.py): one
    window reads a measured counter delta."""
    from dataclasses import replace

    from fakes.amd import FakeAmdGpu, build_stub, compiler, import_amdsmi, joules, write_state

    from ecnas import Monitor
    from ecnas.meters.amd import AmdSmiMeter, _import_amdsmi

    if compiler() is None:  # still: the bindings are there and look for ROCm's library
        reason = _import_amdsmi()
        assert isinstance(reason, str) and reason != "not installed", reason
        return {"stand_in": False, "reason": reason}
    root = build_stub(work / "rocm")
    os.environ["ROCM_PATH"] = str(root)
    (work / "sys" / "sys" / "module" / "amdgpu").mkdir(parents=True)
    os.environ["ECNAS_SYSFS_ROOT"] = str(work / "sys")
    state = work / "amdsmi-state.txt"
    os.environ["FAKE_AMDSMI_STATE"] = str(state)
    import_amdsmi(root)
    gpu = FakeAmdGpu("aaaa-0000", serial="5B0A6E6FD3C2B5C8", acc=1000)
    write_state(state, [gpu])
    with Monitor([AmdSmiMeter()]) as mon:
        mon.begin("w")
        write_state(state, [replace(gpu, acc=1000 + 98_039)])
        out = mon.end("w").to_dict()
    d = out["domain_details"]["gpu:0"]
    assert math.isclose(d["raw_joules"], joules(98_039), rel_tol=1e-12), d
    assert d["status"] == "measured" and d["meter"] == "amdsmi", d
    return {"stand_in": True, "raw_joules": d["raw_joules"]}


def check_pyrapl(work: Path) -> dict[str, Any]:
    """pyRAPL installed: ``ecnas hardware`` lists the ``pyrapl`` meter (this machine has no
    RAPL, so it must say why it cannot read)."""
    import subprocess

    import pyRAPL  # noqa: F401

    out = subprocess.run([str(Path(sys.executable).parent / "ecnas"), "hardware", "--json"],
                         capture_output=True, text=True, check=True, timeout=120)
    meters = {m["meter"]: m for m in json.loads(out.stdout)["meters"]}
    assert "pyrapl" in meters, sorted(meters)
    m = meters["pyrapl"]
    assert m["status"] in ("measured", "unavailable") and m["reason"], m
    return {"status": m["status"], "reason": m["reason"]}


def check_synetune(work: Path) -> dict[str, Any]:
    """The EC-NAS 5V bundle registered in syne-tune's repository and loaded by syne-tune's
    own load_blackbox, offline; the energy it returns is the bundle's."""
    import tarfile

    os.environ["HF_HUB_OFFLINE"] = "1"
    from syne_tune.blackbox_repository import load_blackbox, repository

    from ecnas.benchmark import Benchmark, write_bundle
    from ecnas.integrations.synetune import register_bundle
    from ecnas.interop import import_ecnas

    with tarfile.open(ROOT / "tests" / "data" / "ec-nas-5v.tar.gz") as tar:
        tar.extractall(work, filter="data")
    bundle = write_bundle(import_ecnas(work / "ec-nas-5v"), work / "b5v")
    repository.repository_path = work / "repo"
    name = register_bundle(bundle, name="ecnas-5v")
    bb = load_blackbox(name, local_files_only=True)["nvidia-quadro-rtx-6000"]
    cell = bb.hyperparameters["cell"].iloc[17]
    got = bb.objective_function({"cell": cell, "space": bb.hyperparameters["space"].iloc[0]},
                                fidelity={"epochs": 4}, seed=0)
    energy = got["energy_j"]
    matrix, ops = cell.split("|")
    want_j = Benchmark.load(bundle).query((matrix, ops.split(",")), 4, repeat=1)["energy_j"]
    assert float(energy) == float(want_j), (energy, want_j)
    return {"cells": len(bb.hyperparameters), "energy_j": float(energy)}


def check_search(work: Path) -> dict[str, Any]:
    """Optuna's multi-objective TPE (``tpe``) over the EC-NAS 5V bundle: every evaluation a
    distinct architecture of the table, the fraction of the true front within (0, 1]."""
    import tarfile

    import optuna

    from ecnas.benchmark import Benchmark, write_bundle
    from ecnas.benchmark.moo import run_search
    from ecnas.interop import import_ecnas

    with tarfile.open(ROOT / "tests" / "data" / "ec-nas-5v.tar.gz") as tar:
        tar.extractall(work, filter="data")
    bench = Benchmark.load(write_bundle(import_ecnas(work / "ec-nas-5v"), work / "b5v"))
    res = run_search(bench, "tpe", 20, 0)
    hashes = list(res.trajectory.arch_hash)
    assert len(hashes) == 20 == len(set(hashes)), hashes
    frac = float(res.fraction)
    assert 0 < frac <= 1, frac
    return {"optuna": optuna.__version__, "evaluations": len(hashes), "fraction": frac}


CHECKS = {name[len("check_"):]: fn for name, fn in globals().items()
          if name.startswith("check_") and callable(fn)}


def main(argv: list[str]) -> int:
    extra, work = argv[0], Path(argv[1])
    work.mkdir(parents=True, exist_ok=True)
    where = _installed_ecnas()
    t0 = time.monotonic()
    result = CHECKS[extra](work)
    print(json.dumps({"extra": extra, "ecnas": where, "seconds": round(time.monotonic() - t0, 2),
                      **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
