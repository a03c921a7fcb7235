"""The SQLite results store and the shared-socket split, on real files."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
from campaign_runfns import _rows, campaign_toml
from cli_inproc import run_cli

from ecnas.campaign import ResultsStore, export_table, load_campaign
from ecnas.campaign.socket_split import CpuTimes, cpu_share, split_rows
from ecnas.errors import InputError
from ecnas.trainer.train import TrainConfig


@pytest.fixture()
def campaign(tmp_path: Path):
    return load_campaign(campaign_toml(tmp_path / "c.toml", count=2, repeats=1))


def _run_rows(campaign, run):
    return _rows(TrainConfig.from_dict(campaign.train_config(run)))


def test_store_is_wal_and_commits_each_run_once(tmp_path: Path, campaign) -> None:
    path = tmp_path / "s.sqlite"
    with ResultsStore(path, create=True) as store:
        store.bind(campaign.hash, campaign.to_dict())
        run = campaign.runs()[0]
        assert store.commit_run(run.key, _run_rows(campaign, run), {"host": "h"}) is True
        assert store.commit_run(run.key, _run_rows(campaign, run), {"host": "h"}) is False
        assert store.count() == 1
        assert store.done_keys() == {run.key}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


def test_store_refuses_another_campaign(tmp_path: Path, campaign) -> None:
    other = load_campaign(campaign_toml(tmp_path / "o.toml", count=3, repeats=1))
    with ResultsStore(tmp_path / "s.sqlite", create=True) as store:
        store.bind(campaign.hash, campaign.to_dict())
        with pytest.raises(InputError, match="belongs to campaign"):
            store.bind(other.hash, other.to_dict())
        store.bind(other.hash, other.to_dict(), allow_other=True)


def test_table_is_validated_with_metadata_and_failures_are_kept(tmp_path: Path,
                                                                campaign) -> None:
    path = tmp_path / "s.sqlite"
    with ResultsStore(path, create=True) as store:
        store.bind(campaign.hash, campaign.to_dict())
        for run in campaign.runs():
            store.commit_run(run.key, _run_rows(campaign, run),
                             {"meters": ["estimate"], "cpu_share": 1.0,
                              "estimate_reasons": ["estimate: RAPL unavailable (process 12)",
                                                   "estimate: RAPL unavailable (process 13)"]})
        store.record_failure(campaign.runs()[0].key, 1, "RuntimeError: boom", "host")
        df = store.table()
        assert len(df) == 2 * len(campaign.runs())
        assert df.attrs["ecnas"]["campaign_hash"] == campaign.hash
        # one reason, not one per process
        assert df.attrs["ecnas"]["estimate_reasons"] == [
            "estimate: RAPL unavailable (process <pid>)"]
        assert [f.error for f in store.failures()] == ["RuntimeError: boom"]
    out = export_table(path, tmp_path / "t.parquet")
    from ecnas.tables import read_table

    back = read_table(out)
    assert len(back) == len(df)
    assert back.attrs["ecnas"]["campaign_hash"] == campaign.hash


def test_missing_or_foreign_store_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no campaign store"):
        ResultsStore(tmp_path / "nope.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match="not a campaign store"):
        ResultsStore(junk)


def test_split_rows_scales_cpu_and_dram_and_recomputes_total() -> None:
    rows = [{"energy_j": 30.0, "gpu_energy_j": 10.0, "cpu_energy_j": 16.0,
             "dram_energy_j": 4.0}]
    out = split_rows(rows, 0.25)
    assert out[0]["cpu_energy_j"] == 4.0 and out[0]["dram_energy_j"] == 1.0
    assert out[0]["gpu_energy_j"] == 10.0
    assert out[0]["energy_j"] == 15.0 and out[0]["cpu_share"] == 0.25
    nan_gpu = split_rows([{"energy_j": 8.0, "gpu_energy_j": math.nan, "cpu_energy_j": 8.0}], 0.5)
    assert nan_gpu[0]["energy_j"] == 4.0


def test_cpu_share_is_own_over_busy() -> None:
    assert cpu_share(CpuTimes(1.0, 10.0), CpuTimes(2.0, 14.0)) == 0.25
    assert cpu_share(CpuTimes(1.0, 10.0), CpuTimes(1.0, 10.0)) == 1.0  # nothing measurable


def test_one_coordinator_per_store(tmp_path: Path, campaign) -> None:
    """A second coordinator on a store in use is refused, naming the first; the claim ends with
    the first (here: closed; a killed process's lock is dropped by the kernel)."""
    from campaign_runfns import trivial

    from ecnas.campaign import run_campaign

    path = tmp_path / "s.sqlite"
    first = ResultsStore(path, create=True)
    first.claim()
    with pytest.raises(InputError, match=r"another coordinator is running on this store "
                                         r"\(pid \d+ on "):
        run_campaign(campaign, path, workers=0, run_fn=trivial)
    first.close()
    summary = run_campaign(campaign, path, workers=0, run_fn=trivial)
    assert summary.done == len(campaign.runs())


def test_cli_refuses_a_store_of_another_campaign_unless_allowed(tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    tests = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    store = tmp_path / "s.sqlite"

    def run(toml: Path, *extra: str) -> subprocess.CompletedProcess:
        return run_cli("run", toml, "--store", store, "--workers", "0", "--run-fn",
                       "campaign_runfns:trivial", "--json", *extra, env=env)

    first = run(campaign_toml(tmp_path / "a.toml", count=1, repeats=1))
    assert first.returncode == 0, first.stderr
    other = campaign_toml(tmp_path / "b.toml", count=2, repeats=1)
    refused = run(other)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "store belongs to campaign" in lines[0], refused.stderr
    assert "--allow-other-campaign" in lines[0]
    added = run(other, "--allow-other-campaign", "--resume")
    assert added.returncode == 0, added.stderr
    summary = json.loads(added.stdout)
    assert summary["done"] + summary["skipped"] == 2
    with ResultsStore(store) as s:
        assert s.count() == 1 + summary["done"]


def _filled_store(path: Path, campaign) -> None:
    with ResultsStore(path, create=True) as store:
        store.bind(campaign.hash, campaign.to_dict())
        for run in campaign.runs():
            store.commit_run(run.key, _run_rows(campaign, run), {"host": "h"})


def test_ecnas_table_leaves_no_wal_or_shm_beside_the_store(tmp_path: Path, campaign,
                                                           capsys) -> None:
    """Issue 29: a mode=ro reader made -wal/-shm files it could not delete on close."""
    from ecnas.cli import main

    store = tmp_path / "s.sqlite"
    _filled_store(store, campaign)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "s.sqlite"]
    assert main(["table", str(store), "--out", str(tmp_path / "t.parquet")]) == 0
    assert "wrote 2 run(s)" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "s.sqlite", "t.parquet"]
    with ResultsStore(store, readonly=True) as reader, pytest.raises(sqlite3.OperationalError,
                                                                     match="readonly"):
        reader._db.execute("DELETE FROM runs")  # the reader cannot change the store
    with ResultsStore(store, readonly=True) as reader:
        assert reader.count() == 2


def test_a_reader_beside_a_writer_sees_its_commits_and_leaves_its_wal(tmp_path: Path,
                                                                       campaign) -> None:
    store = tmp_path / "s.sqlite"
    _filled_store(store, campaign)
    with ResultsStore(store) as writer:
        writer._db.execute("DELETE FROM runs WHERE rowid = (SELECT MIN(rowid) FROM runs)")
        with ResultsStore(store, readonly=True) as reader:
            assert reader.count() == 1  # the writer's commit, still only in its WAL
        # the writer is still open: its WAL stays (deleting it would lose the commit)
        assert (tmp_path / "s.sqlite-wal").exists()
    assert not (tmp_path / "s.sqlite-wal").exists() and not (tmp_path / "s.sqlite-shm").exists()


def test_a_read_only_store_file_is_read_without_files_beside_it(tmp_path: Path,
                                                                campaign) -> None:
    store = tmp_path / "s.sqlite"
    _filled_store(store, campaign)
    store.chmod(0o444)
    try:
        out = export_table(store, tmp_path / "t.parquet")
        assert out.is_file()
        assert not (tmp_path / "s.sqlite-wal").exists()
        assert not (tmp_path / "s.sqlite-shm").exists()
    finally:
        store.chmod(0o644)
