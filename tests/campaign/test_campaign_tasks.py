"""The campaign's typed hand-offs (RunTask → run function → RunOutput → RunResult → store), the
campaign loop as one CampaignSession, the store's checkpoint, the timed session's parts, and a
campaign file checked without torch. Real store (SQLite), real worker code, real subprocesses
where the process is the point (what a fresh interpreter imports)."""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from campaign_runfns import always_fails, campaign_toml, trivial

from ecnas.campaign import load_campaign
from ecnas.campaign.runner import CampaignSession, RunLimit
from ecnas.campaign.store import ResultsStore
from ecnas.campaign.tasks import RunOutput, RunResult, RunTask
from ecnas.campaign.timed import (
    CheckpointEachRun,
    FixedCosts,
    SessionsFile,
    TimedSession,
    import_seconds,
    writable_copies,
)
from ecnas.campaign.worker import execute_run
from ecnas.errors import InputError
from ecnas.trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def campaign(tmp_path: Path):
    return load_campaign(campaign_toml(tmp_path / "c.toml", count=2, repeats=1))


def _task(campaign, run_fn=trivial, attempt: int = 1) -> RunTask:
    run = campaign.runs()[0]
    return RunTask(run_key=run.key, attempt=attempt,
                   config=TrainConfig.from_dict(campaign.train_config(run)),
                   campaign_hash=campaign.hash, run_fn=run_fn)


def test_checking_a_campaign_file_imports_no_torch(tmp_path: Path) -> None:
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=1)
    code = ("import sys; from ecnas.campaign.config import load_campaign; "
            f"c = load_campaign({str(toml)!r}); "
            "print(len(c.runs()), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.split() == ["2", "False"]
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines()
                if line.startswith("import time:")}
    assert "ecnas.trainer.config" in imported  # the recipe was checked, by TrainConfig
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}
    # and the facade keeps the old names: TrainConfig is one class, wherever it is imported from
    from ecnas.trainer import TrainConfig as FromFacade
    from ecnas.trainer.train import TrainConfig as FromTrain

    assert FromFacade is FromTrain is TrainConfig


def test_a_bad_recipe_is_refused_by_the_light_check(tmp_path: Path) -> None:
    toml = campaign_toml(tmp_path / "c.toml", count=1, repeats=1)
    toml.write_text(toml.read_text().replace("[recipe]", "[recipe]\nbn_decay = 1.5"))
    with pytest.raises(InputError, match=r"recipe: bn_decay must lie in \[0, 1\)"):
        load_campaign(toml)


def test_a_task_is_placed_and_travels(campaign) -> None:
    task = _task(campaign)
    placed = task.placed("cuda:0", gpu="3", share={"threads": 2})
    assert (placed.config.device, placed.gpu, placed.share) == ("cuda:0", "3", {"threads": 2})
    assert task.config.device == "cpu"  # frozen: the original is unchanged
    assert placed.config.matrix == task.config.matrix
    assert pickle.loads(pickle.dumps(placed)) == placed  # to a spawned process or a Dask worker


def test_execute_run_returns_a_typed_result_that_round_trips(campaign) -> None:
    result = execute_run(_task(campaign))
    assert isinstance(result, RunResult) and result.ok and result.error is None
    assert result.rows[-1]["arch_hash"] == campaign.runs()[0].arch_hash
    assert result.provenance["run_key"] == result.run_key
    assert result.energy_j == float(result.rows[-1]["energy_j"])
    text = json.dumps(result.to_dict(), sort_keys=True)  # NaN columns: compared as JSON text
    back = RunResult.from_dict(json.loads(text))
    assert isinstance(back.rows, tuple) and json.dumps(back.to_dict(), sort_keys=True) == text
    with pytest.raises(InputError, match="unknown key"):
        RunResult.from_dict({**result.to_dict(), "extra": 1})


def test_the_store_keeps_a_result(campaign, tmp_path: Path) -> None:
    ok, bad = execute_run(_task(campaign)), execute_run(_task(campaign, always_fails, 2))
    with ResultsStore(tmp_path / "s.sqlite", create=True) as store:
        assert store.commit_result(ok) is True and store.commit_result(ok) is False
        assert store.commit_result(bad) is False
        assert store.done_keys() == {ok.run_key}
        assert store.provenance()[ok.run_key]["run_key"] == ok.run_key
        assert [(f.run_key, f.attempt, f.host) for f in store.failures()] == \
            [(bad.run_key, 2, bad.host)]


def test_a_failed_run_is_a_result_not_an_exception(campaign) -> None:
    result = execute_run(_task(campaign, run_fn=always_fails))
    assert not result.ok and result.rows == () and "RuntimeError" in str(result.error)
    assert RunResult.from_dict(result.to_dict()) == result
    with pytest.raises(ValueError, match="needs rows"):
        RunResult(run_key="a/1/1", attempt=1, ok=True)


def test_run_output_reads_both_forms_of_a_run_function() -> None:
    rows = [{"energy_j": 1.0}]
    assert RunOutput.of(rows).rows == tuple(rows)
    out = RunOutput.of({"rows": rows, "meters": ["nvml"], "warmup": {"time_s": 0.5}})
    assert (out.meters, out.warmup) == (("nvml",), {"time_s": 0.5})
    with pytest.raises(RuntimeError, match="no rows"):
        RunOutput.of([])
    with pytest.raises(RuntimeError, match="without 'rows'"):
        RunOutput.of({"meters": []})


def test_one_session_owns_the_loop(campaign, tmp_path: Path) -> None:
    lines: list[str] = []
    session = CampaignSession(campaign, tmp_path / "s.sqlite", workers=0, run_fn=trivial,
                              progress=lines.append, limit=RunLimit(runs=1))
    summary = session.run()
    assert (summary.done, summary.left_for_later) == (1, 1)
    assert session.progress.done == 1 and len(session.pending) == 1
    assert session.executor.label.startswith("inline") and session.given_up == []
    again = CampaignSession(campaign, tmp_path / "s.sqlite", workers=0, run_fn=always_fails,
                            progress=lines.append)
    failed = again.run()
    assert (failed.done, failed.skipped, failed.failed) == (0, 1, 1)
    assert again.progress.failed_attempts == campaign.retries + 1
    with ResultsStore(tmp_path / "s.sqlite", readonly=True) as store:
        assert store.count() == 1 and len(store.failures()) == campaign.retries + 1


def test_checkpoint_each_run_leaves_the_store_file_whole(campaign, tmp_path: Path) -> None:
    store_path = tmp_path / "s.sqlite"
    seen: list[int] = []

    class Count(CheckpointEachRun):
        def on_run_done(self, *args: object) -> None:
            super().on_run_done(*args)  # type: ignore[arg-type]
            # the store file alone (immutable: the -wal ignored) holds every run so far
            uri = f"file:{store_path}?mode=ro&immutable=1"
            with sqlite3.connect(uri, uri=True) as db:
                seen.append(db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    CampaignSession(campaign, store_path, workers=0, run_fn=trivial, observers=[Count()]).run()
    assert seen == [1, 2]


def test_timed_session_limits_and_costs(campaign, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="must be positive"):
        TimedSession(time_budget_s=-1)
    with pytest.raises(InputError, match="at least 1"):
        TimedSession(max_runs=0)
    assert TimedSession().limit() is None
    session = TimedSession(time_budget_s=3600, max_runs=1)
    limit = session.limit()
    assert limit is not None and limit.runs == 1 and 0 < limit.seconds <= 3600
    assert limit.first_run_s == pytest.approx(max(30.0, limit.seconds / 10), rel=0.01)
    summary = session.run(campaign, tmp_path / "s.sqlite", trivial)
    assert (summary.done, summary.left_for_later) == (1, 1)
    costs = FixedCosts({"a_s": 1.0, "b_s": None, "c_s": 2.0}, per_process=("a_s", "b_s"))
    with costs.timed("c_s"):
        pass
    assert costs.per_process_s == 1.0 and costs.to_dict()["c_s"] >= 2.0


def test_writable_copies_of_read_only_files(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "k.sqlite").write_bytes(b"x")
    (src / "k.sqlite-wal").write_bytes(b"w")
    (src / "other.sqlite").write_bytes(b"o")
    for f in src.iterdir():
        f.chmod(0o444)
    made = writable_copies(src, dst, ("k.sqlite", "k.sessions.json"))
    assert sorted(p.name for p in made) == ["k.sqlite", "k.sqlite-wal"]
    assert all(p.stat().st_mode & 0o200 for p in made)
    with pytest.raises(InputError, match="exists"):
        writable_copies(src, dst, ("k.sqlite",))
    with pytest.raises(InputError, match="no such folder"):
        writable_copies(tmp_path / "nope", dst, ("k.sqlite",))


def test_sessions_file_refuses_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    log = SessionsFile(path, "fmt/1").load()
    log.append({"n": 1})
    assert SessionsFile(path, "fmt/1").load().sessions == [{"n": 1}]
    path.write_text('{"format": "other"}')
    with pytest.raises(InputError, match="not a sessions file of fmt/1"):
        SessionsFile(path, "fmt/1").load()
    assert path.read_text() == '{"format": "other"}'


def test_import_seconds_times_a_fresh_interpreter() -> None:
    assert import_seconds("json") is not None
    assert import_seconds("no_such_module_here") is None
