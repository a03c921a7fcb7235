"""The process-wide default Monitor behind measure(): shared, thread-safe, fork-safe, and
re-discovered when the environment says the hardware changed (fake powercap trees)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.sysfs import FakePowercap

from ecnas.monitor import default_monitor, measure, refresh
from ecnas.tracker.tracker import EnergyTracker

J = 1_000_000


class Tree:
    """A one-package fake tree whose counter moves by known joules."""

    def __init__(self, root: Path) -> None:
        self.fake = FakePowercap(root)
        self.zone = self.fake.package(0, dram=False, core=False)["package"]
        self.uj = 0

    def add(self, joules: float) -> None:
        self.uj += int(joules * J)
        self.zone.set(self.uj)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    t = Tree(tmp_path / "a")
    monkeypatch.setenv("ECNAS_SYSFS_ROOT", str(t.fake.root))
    yield t
    refresh()  # the next test starts from its own environment


def test_windows_share_one_started_monitor(tree: Tree) -> None:
    with measure("one") as a:
        shared = a.monitor
        tree.add(3)
    with measure("two") as b:
        assert b.monitor is shared is default_monitor()
        tree.add(4)
    assert shared.started  # not closed by the windows
    assert (a.report.energy_j, b.report.energy_j) == (pytest.approx(3), pytest.approx(4))
    assert b.report.meters == ("rapl",) and b.report.name == "two"


def test_same_name_nested_are_two_windows(tree: Tree) -> None:
    with measure("step") as outer:
        tree.add(1)
        with measure("step") as inner:
            tree.add(2)
        tree.add(4)
    assert inner.report.energy_j == pytest.approx(2)
    assert outer.report.energy_j == pytest.approx(7)


def test_same_name_in_two_threads_are_two_windows(tree: Tree) -> None:
    opened, measured = threading.Barrier(3), threading.Barrier(3)
    reports: dict[str, float] = {}

    def worker(tag: str) -> None:
        with measure("step") as m:
            opened.wait(timeout=30)
            measured.wait(timeout=30)
        reports[tag] = m.report.energy_j

    threads = [threading.Thread(target=worker, args=(t,)) for t in ("x", "y")]
    for t in threads:
        t.start()
    tree.add(1)  # races with the windows opening: in none, one or both of them
    opened.wait(timeout=30)  # both windows open now
    tree.add(5)
    measured.wait(timeout=30)
    for t in threads:
        t.join(timeout=30)
    assert set(reports) == {"x", "y"}
    # Each window saw the 5 J added while both were open, plus at most the 1 J before.
    assert all(5 - 1e-9 <= v <= 6 + 1e-9 for v in reports.values()), reports


def test_a_decorated_function_called_from_two_threads(tree: Tree) -> None:
    """Overlapping calls, ending in the order they began: each call is its own window."""
    entered = {1: threading.Event(), 2: threading.Event()}
    release = {1: threading.Event(), 2: threading.Event()}
    got: dict[int, float] = {}
    done = {1: threading.Event(), 2: threading.Event()}

    @measure("step")
    def step(k: int) -> None:
        entered[k].set()
        release[k].wait(timeout=30)

    def call(k: int) -> None:
        step(k)
        got[k] = step.energy_report.energy_j  # type: ignore[attr-defined]  # the other waits
        done[k].set()

    t1 = threading.Thread(target=call, args=(1,))
    t2 = threading.Thread(target=call, args=(2,))
    t1.start()
    assert entered[1].wait(timeout=30)
    tree.add(1)  # call 1 only
    t2.start()
    assert entered[2].wait(timeout=30)
    tree.add(8)  # both calls
    release[1].set()
    assert done[1].wait(timeout=30)
    tree.add(16)  # call 2 only
    release[2].set()
    t1.join(timeout=30)
    t2.join(timeout=30)
    assert got == {1: pytest.approx(9), 2: pytest.approx(24)}


def test_a_second_thread_gets_correct_joules(tree: Tree) -> None:
    out: dict[str, float] = {}

    def worker() -> None:
        with measure("thread") as m:
            tree.add(2.5)
        out["j"] = m.report.energy_j

    t = threading.Thread(target=worker)
    t.start()
    t.join(timeout=30)
    assert out == {"j": pytest.approx(2.5)}


def test_a_changed_sysfs_root_is_rediscovered(tree: Tree, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with measure() as first:
        old = first.monitor
        tree.add(1)
    other = Tree(tmp_path / "b")
    other.fake.package(1, dram=False, core=False)  # a second socket: the meters differ
    monkeypatch.setenv("ECNAS_SYSFS_ROOT", str(other.fake.root))
    with measure() as second:
        new = second.monitor
        tree.add(100)  # the old tree: no longer read
        other.add(4)
    assert new is not old and not old.started  # replaced and closed
    assert first.report.energy_j == pytest.approx(1)
    assert second.report.energy_j == pytest.approx(4)
    assert set(second.report.domains) == {"cpu:0/package", "cpu:1/package"}


def test_a_window_open_across_refresh_ends_on_its_monitor(tree: Tree) -> None:
    with measure() as m:
        old = m.monitor
        tree.add(2)
        refresh()
        assert old.started  # kept open for this window
        tree.add(3)
    assert m.report.energy_j == pytest.approx(5)
    assert not old.started  # closed with its last window
    with measure() as again:
        assert again.monitor is not old
        tree.add(1)
    assert again.report.energy_j == pytest.approx(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_opens_its_own_counters(tree: Tree) -> None:
    with measure() as warm:  # the parent's monitor exists before the fork
        parent_monitor = warm.monitor
        tree.add(1)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's exit hooks
        try:
            os.close(read_end)
            with measure("child") as m:
                own = m.monitor is not parent_monitor
                tree.add(6)
            data = {"j": m.report.energy_j, "own": own,
                    "meters": list(m.report.meters)}
        except BaseException as exc:  # noqa: BLE001 - any failure goes back to the parent
            data = {"error": repr(exc)}
        os.write(write_end, json.dumps(data).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = json.loads(fh.read() or b"{}")
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert data == {"j": pytest.approx(6), "own": True, "meters": ["rapl"]}
    tree.uj = tree.zone.get()  # the child moved the shared counter on (in its own memory)
    with measure() as after:  # the parent's monitor is untouched by the child
        assert after.monitor is parent_monitor
        tree.add(2)
    assert after.report.energy_j == pytest.approx(2)


def test_explicit_meters_keep_their_own_monitor(tree: Tree) -> None:
    from ecnas.meters.rapl import RaplMeter

    shared = default_monitor()
    with measure(meters=[RaplMeter(tree.fake.root)]) as m:
        own = m.monitor
        tree.add(2)
    assert own is not shared and not own.started and shared.started
    assert m.report.energy_j == pytest.approx(2)


def test_idle_subtract_on_the_shared_monitor_is_per_window(tree: Tree) -> None:
    with measure(idle_subtract=True) as m:
        first = m.monitor
        tree.add(3)
    with measure() as plain:
        assert plain.monitor is first
        tree.add(3)
    assert m.report.net_energy_j is not None and plain.report.net_energy_j is None


def test_energy_tracker_without_meters_uses_the_shared_monitor(tree: Tree) -> None:
    tracker = EnergyTracker().start()
    assert tracker.monitor is default_monitor()
    tree.add(5)
    final = tracker.stop()
    assert final.energy_j == pytest.approx(5) and default_monitor().started


# -- the three decorator forms (issue 29): @measure, @measure(), @measure("name") -------------

def test_bare_decorator_on_a_function(tree: Tree) -> None:
    @measure
    def step(joules: float) -> str:
        tree.add(joules)
        return "done"

    assert step.energy_report is None  # type: ignore[attr-defined]  # not called yet
    assert step(2) == "done" and step.__name__ == "step"
    first = step.energy_report  # type: ignore[attr-defined]
    assert first.energy_j == pytest.approx(2) and first.name.endswith("step")
    step(5)  # every call is its own window
    assert step.energy_report.energy_j == pytest.approx(5)  # type: ignore[attr-defined]


def test_empty_and_named_decorators_on_functions(tree: Tree) -> None:
    @measure()
    def unnamed() -> None:
        tree.add(3)

    named = measure("train")

    @named
    def train() -> None:
        tree.add(4)

    unnamed()
    train()
    assert unnamed.energy_report.energy_j == pytest.approx(3)  # type: ignore[attr-defined]
    assert unnamed.energy_report.name.endswith("unnamed")  # type: ignore[attr-defined]
    assert train.energy_report.name == "train" == named.report.name  # type: ignore[attr-defined]
    assert named.report.energy_j == pytest.approx(4)


def test_decorators_on_methods(tree: Tree) -> None:
    class Trainer:
        def __init__(self, joules: float) -> None:
            self.joules = joules

        @measure
        def bare(self, extra: float = 0) -> float:
            tree.add(self.joules + extra)
            return self.joules

        @measure("epoch")
        def named(self) -> float:
            tree.add(2 * self.joules)
            return self.joules

    t = Trainer(1.5)
    assert t.bare(extra=1) == 1.5
    assert Trainer.bare.energy_report.energy_j == pytest.approx(2.5)  # type: ignore[attr-defined]
    assert Trainer.bare.energy_report.name == "test_decorators_on_methods.<locals>.Trainer.bare"  # type: ignore[attr-defined]
    assert t.named() == 1.5
    report = Trainer.named.energy_report  # type: ignore[attr-defined]
    assert (report.name, report.energy_j) == ("epoch", pytest.approx(3))


def test_decorators_on_coroutines_span_the_awaits(tree: Tree) -> None:
    import asyncio
    import inspect

    @measure
    async def bare(joules: float) -> float:
        await asyncio.sleep(0)
        tree.add(joules)  # after an await: only a window around the whole run sees it
        return joules

    @measure()
    async def empty() -> None:
        await asyncio.sleep(0)
        tree.add(1)

    @measure("fetch")
    async def named() -> str:
        await asyncio.sleep(0)
        tree.add(6)
        return "ok"

    assert all(inspect.iscoroutinefunction(f) for f in (bare, empty, named))
    assert asyncio.run(bare(2.5)) == 2.5
    asyncio.run(empty())
    assert asyncio.run(named()) == "ok"
    assert bare.energy_report.energy_j == pytest.approx(2.5)  # type: ignore[attr-defined]
    assert empty.energy_report.energy_j == pytest.approx(1)  # type: ignore[attr-defined]
    assert named.energy_report.name == "fetch"  # type: ignore[attr-defined]
    assert named.energy_report.energy_j == pytest.approx(6)  # type: ignore[attr-defined]


def test_decorated_failure_still_reports_and_reraises(tree: Tree) -> None:
    @measure
    def boom() -> None:
        tree.add(1)
        raise ValueError("bad step")

    with pytest.raises(ValueError, match="bad step"):
        boom()
    assert boom.energy_report.energy_j == pytest.approx(1)  # type: ignore[attr-defined]


def test_a_name_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(TypeError, match="is a str"):
        measure(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decorates a function"):
        measure("x")(3)  # type: ignore[arg-type]
