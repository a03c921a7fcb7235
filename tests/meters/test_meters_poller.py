"""The meters' shared polling thread and event log (ecnas.meters.poller), with real threads.

No timed assertion can fail on a slow machine: waits are on Events with generous bounds, and
the one short wait checks that something does *not* happen (a correct poller never does it).
"""

from __future__ import annotations

import threading
import time

import pytest
from fakes.sysfs import FakePowercap

from ecnas.meters.poller import EventLog, Poller, stopped
from ecnas.meters.rapl import RaplMeter

LONG = 30.0  # a bound no healthy run comes near, however loaded the machine


def test_polls_a_real_function_until_stopped() -> None:
    log = EventLog()
    calls: list[str] = []
    enough = threading.Event()

    def poll() -> None:
        calls.append(threading.current_thread().name)
        if len(calls) >= 3:
            enough.set()

    poller = Poller("ecnas-test-poll", poll, 0.001, log, what="test: poller", after="-")
    assert not poller.alive
    poller.start()
    assert poller.alive
    [thread] = [t for t in threading.enumerate() if t.name == "ecnas-test-poll"]
    assert thread.daemon  # never keeps the interpreter alive at exit
    assert enough.wait(LONG)
    assert poller.stop() is True
    assert not poller.alive
    assert set(calls) == {"ecnas-test-poll"}  # polled on its own, named thread
    assert log.since(-1e300) == ()  # nothing went wrong


def test_stop_does_not_wait_out_the_period() -> None:
    calls: list[int] = []
    poller = Poller("ecnas-test-idle", lambda: calls.append(1), 3600.0, EventLog(),
                    what="test: poller", after="-")
    poller.start()
    t0 = time.monotonic()
    assert poller.stop() is True
    assert time.monotonic() - t0 < LONG  # an hour's sleep would not end here
    assert calls == []  # the first poll comes one period after start


def test_the_wait_the_poll_returns_replaces_the_period() -> None:
    first, second = threading.Event(), threading.Event()

    def poll() -> float:
        (second if first.is_set() else first).set()
        return 3600.0  # the next poll is an hour away, not the 1 ms period

    poller = Poller("ecnas-test-wait", poll, 0.001, EventLog(), what="test: poller", after="-")
    poller.start()
    assert first.wait(LONG)
    assert not second.wait(0.2)  # with the 1 ms period there would have been ~200 more
    assert poller.stop() is True


def test_an_exception_in_the_poll_becomes_an_event_and_ends_the_thread() -> None:
    log = EventLog()
    seen: list[Exception] = []
    failed = threading.Event()
    calls = iter(range(10))

    def poll() -> None:
        if next(calls) == 2:
            raise RuntimeError("device gone")

    def on_error(exc: Exception) -> None:
        seen.append(exc)
        failed.set()

    t0 = time.monotonic()
    poller = Poller("ecnas-test-fail", poll, 0.001, log, what="test: the guard",
                    after="energy after this point is missing", on_error=on_error)
    poller.start()
    assert failed.wait(LONG)
    assert poller.stop() is True and not poller.alive
    assert [str(e) for e in seen] == ["device gone"]
    assert log.since(t0) == ("test: the guard stopped (RuntimeError: device gone); energy "
                             "after this point is missing",)


def test_a_failing_error_hook_still_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    log = EventLog()
    raised: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))

    def poll() -> None:
        raise ValueError("bad value")

    def on_error(exc: Exception) -> None:
        failed.set()
        raise OSError("hook broke too")

    failed = threading.Event()
    poller = Poller("ecnas-test-hook", poll, 0.001, log, what="test: poller", after="after",
                    on_error=on_error)
    poller.start()
    assert failed.wait(LONG)
    assert poller.stop() is True
    assert log.since(-1e300) == ("test: poller stopped (ValueError: bad value); after",)
    assert [str(e) for e in raised] == ["hook broke too"]  # the hook's own bug is loud too


def test_a_poll_stuck_past_the_timeout_is_reported_not_waited_for() -> None:
    log = EventLog()
    entered, release = threading.Event(), threading.Event()

    def poll() -> None:
        entered.set()
        release.wait(LONG)  # a driver call that does not return

    poller = Poller("ecnas-test-stuck", poll, 0.001, log, what="test: poller", after="-")
    poller.start()
    assert entered.wait(LONG)
    assert poller.stop(timeout_s=0.05) is False
    assert log.since(-1e300) == ("test: poller did not stop within 0.05 s (stuck in a read); "
                                 "left running in the background",)
    release.set()
    assert poller.stop() is True and not poller.alive  # it ends once the call returns


def test_stop_from_inside_the_poll_and_before_start() -> None:
    assert Poller("ecnas-test-never", lambda: None, 1.0, EventLog(), what="t",
                  after="-").stop() is True
    holder: list[Poller] = []
    calls: list[bool] = []
    inside = threading.Event()

    def poll() -> None:
        calls.append(holder[0].stop())  # must not join its own thread (that would raise)
        inside.set()

    poller = Poller("ecnas-test-self", poll, 0.001, EventLog(), what="t", after="-")
    holder.append(poller)
    poller.start()
    assert inside.wait(LONG)
    assert poller.stop() is True and not poller.alive
    assert calls == [True]  # asked to stop, it polled no more


def test_event_log_since_a_time() -> None:
    log = EventLog()
    assert log.since(0.0) == () and len(log) == 0
    log.add("a", 1.0)
    log.add("b", 2.0)
    log.add("c", 3.0)
    assert log.since(2.0) == ("b", "c")  # at or after, oldest first
    assert log.since(3.5) == ()
    log.add("late", 1.5)  # timed before the newest (a read's midpoint): still found
    assert log.since(1.5) == ("b", "c", "late")
    t0 = time.monotonic()
    log.add("now")  # no time given: logged as now
    assert log.since(t0) == ("now",)


def test_event_log_is_bounded() -> None:
    log = EventLog(maxlen=3)
    for i in range(10):
        log.add(f"e{i}", float(i))
    assert len(log) == 3
    assert log.since(0.0) == ("e7", "e8", "e9")  # the oldest went first


def test_events_from_the_polling_thread_reach_the_reader() -> None:
    log = EventLog()
    done = threading.Event()
    n = iter(range(1000))

    def poll() -> None:
        i = next(n)
        log.add(f"poll {i}")
        if i == 4:
            done.set()

    t0 = time.monotonic()
    poller = Poller("ecnas-test-log", poll, 0.001, log, what="t", after="-")
    poller.start()
    assert done.wait(LONG)
    poller.stop()
    got = log.since(t0)
    assert got[:5] == tuple(f"poll {i}" for i in range(5))


def test_stopped_names_the_cause() -> None:
    assert stopped("rapl: wrap guard", KeyError("x")) == "rapl: wrap guard stopped (KeyError: 'x')"


def test_a_rapl_guard_that_fails_marks_the_zones_dead_and_says_so(tmp_path, monkeypatch) -> None:
    # the meters' own use: RAPL's wrap guard (a 1 J counter at 50 W: a read every 5 ms)
    FakePowercap(tmp_path).package(0, dram=False, core=False, range_uj=1_000_000)
    meter = RaplMeter(tmp_path, max_power_w=50.0)
    t0 = time.monotonic()
    meter.start()
    failed = threading.Event()

    def broken() -> None:
        failed.set()
        raise RuntimeError("driver gone")

    monkeypatch.setattr(meter, "read", broken)  # the guard's next read fails
    try:
        assert failed.wait(LONG)
        deadline = time.monotonic() + LONG
        while not meter.events(t0) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert meter.events(t0) == ("rapl: wrap guard stopped (RuntimeError: driver gone); "
                                    "energy after this point is missing",)
        [zone] = meter.counters()
        assert str(zone["dead"]).endswith(": wrap guard stopped (RuntimeError: driver gone)")
    finally:
        meter.close()


@pytest.mark.parametrize("bad", [0, -5.0, float("nan"), float("inf")])
def test_rapl_refuses_a_max_power_that_is_not_positive(tmp_path, bad) -> None:
    """The wrap guard's period divides by max_power_w: a bad one is refused at construction
    with one line, not a ZeroDivisionError at start()."""
    from ecnas.errors import InputError
    from ecnas.meters.rapl import RaplMeter

    with pytest.raises(InputError, match="max_power_w"):
        RaplMeter(tmp_path, max_power_w=bad)
