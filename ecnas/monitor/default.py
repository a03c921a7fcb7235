"""The process-wide default Monitor, and :func:`measure` (context manager and decorator).

``measure()``, ``@measure``, the pytest ``energy`` fixture and :class:`EnergyTracker` without
meters of their own all meter through ONE Monitor per process: started on first use (meters
discovered, profiles matched, counters opened, once), reused by every window after it, closed
at interpreter exit. A window on it costs what a :class:`Monitor` window costs, not a Monitor's
start (milliseconds: discovery, profile matching, NVML init).

It is held by :data:`_SHARED`, a lock-protected holder and this module's only state:

* threads: windows are snapshots kept by their caller, so two ``measure("step")`` open at once
  (nested, or in two threads) are two windows; the holder's lock guards (re)creation;
* fork: the child drops the parent's Monitor (its wrap-guard and polling threads did not
  survive the fork, its NVML handle is the parent's) and opens its own on first use
  (``os.register_at_fork``);
* configuration: the Monitor is re-discovered when ``ECNAS_SYSFS_ROOT``,
  ``CUDA_VISIBLE_DEVICES``, ``CUDA_DEVICE_ORDER``, ``HIP_VISIBLE_DEVICES``,
  ``ROCR_VISIBLE_DEVICES``, ``ECNAS_PROFILE_PATH`` or ``ECNAS_NVML_BACKGROUND`` changed since
  it started; :func:`refresh` forces it for anything else
  (a GPU added, a profile file edited). A replaced Monitor is closed when its last open
  window ends.

``measure(meters=[...])``, ``measure(profile_paths=[...])`` and ``measure(use_profiles=False)``
build their own Monitor for each window, as before.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from ecnas.errors import InputError
from ecnas.meters.base import Meter
from ecnas.monitor import distributed
from ecnas.monitor.distributed import JobReport
from ecnas.monitor.monitor import Monitor, Snapshot
from ecnas.monitor.report import EnergyReport

F = TypeVar("F", bound=Callable[..., Any])


class Window(NamedTuple):
    """One open ``measure()`` window: its Monitor, its start, and the shared Monitor's lease
    (None for a Monitor of its own)."""

    monitor: Monitor
    start: Snapshot
    lease: Lease | None

#: Environment variables that change what the default Monitor reads or how it calibrates.
WATCHED_ENV = ("ECNAS_SYSFS_ROOT", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
               "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ECNAS_PROFILE_PATH",
               "ECNAS_NVML_BACKGROUND")


def _env_reader() -> Callable[[], tuple[object, ...]]:
    """A function returning the watched variables' current values, for comparison only.

    It reads the mapping behind ``os.environ`` (``_data``, kept in step by every
    ``os.environ[...] = ...``, ``monkeypatch.setenv`` included): with ``os.environ.get``
    a fresh ``with measure(): pass`` costs 32 % more (16.6 → 22.0 µs, issue 27, measured
    side by side). No public way costs the same: every public lookup (``os.environ.get``,
    ``os.getenv``, ``in``, ``os.environb``) raises and catches a KeyError inside ``os`` for
    each unset variable, and most of these are unset: 59,000 instructions per check against
    4,800 here (callgrind, 7 variables, issue 38). Where that mapping is not there (another
    Python), it falls back to ``os.environ.get``.
    """
    env = os.environ
    data = getattr(env, "_data", None)
    encodekey = getattr(env, "encodekey", None)
    if isinstance(data, dict) and callable(encodekey):
        keys = tuple(encodekey(name) for name in WATCHED_ENV)
        get = data.get
        return lambda: tuple(map(get, keys))
    return lambda: tuple(map(env.get, WATCHED_ENV))


_env_key = _env_reader()


class Lease:
    """One Monitor the :class:`SharedMonitor` handed out, and the ``measure()`` windows in
    flight on it: a replaced (retired) Monitor is closed when the last of them, and its last
    named window, has ended."""

    __slots__ = ("monitor", "users", "retired")

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.users: list[None] = []  # one entry per window in flight (append/pop: atomic)
        self.retired = False

    def close_if_idle(self) -> None:
        """Close the Monitor if it was replaced and nothing uses it any more."""
        if self.retired and not self.users and not self.monitor.open_windows():
            self.monitor.close()


class SharedMonitor:
    """Holds the process's default :class:`Monitor` (one per process; see the module doc) and
    counts the windows that use it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lease: Lease | None = None
        self._key: tuple[object, ...] = ()  # the watched variables, as _env_key reads them
        self._exit_hook = False

    def get(self) -> Monitor:
        """The default Monitor, started; re-discovered first if the watched variables changed."""
        return self._current().monitor

    def _current(self) -> Lease:
        lease = self._lease
        if lease is not None and self._key == _env_key():
            return lease
        with self._lock:
            key = _env_key()
            lease = self._lease
            if lease is None or self._key != key:
                old, lease = lease, Lease(Monitor().start())
                self._lease, self._key = lease, key
                if not self._exit_hook:
                    atexit.register(self.close)
                    self._exit_hook = True
                if old is not None:
                    _retire(old)
            return lease

    def acquire(self) -> Lease:
        """The default Monitor's lease, counted as in use until :meth:`release` (a replaced
        Monitor stays open until then)."""
        while True:
            lease = self._current()
            lease.users.append(None)
            if not lease.retired:
                return lease
            self.release(lease)  # replaced meanwhile: take the new one

    def release(self, lease: Lease) -> None:
        """One window of ``lease`` ended."""
        lease.users.pop()
        if lease.retired:
            lease.close_if_idle()

    def refresh(self) -> None:
        """Forget the current Monitor; the next window starts a freshly discovered one."""
        with self._lock:
            lease, self._lease, self._key = self._lease, None, ()
        if lease is not None:
            _retire(lease)

    def close(self) -> None:
        """Close the default Monitor now (at interpreter exit; open windows end with it)."""
        with self._lock:
            lease, self._lease, self._key = self._lease, None, ()
        if lease is not None:
            lease.monitor.close()

    def _after_fork_in_child(self) -> None:
        # The lock may have been held by a thread that does not exist here; the Monitor's
        # threads are gone and its NVML handle is the parent's: start afresh.
        self._lock = threading.Lock()
        self._lease, self._key = None, ()


def _retire(lease: Lease) -> None:
    """A newer Monitor replaces ``lease``'s: close it now, or when its last window ends."""
    lease.retired = True
    lease.monitor.on_idle = lease.close_if_idle
    lease.close_if_idle()


_SHARED = SharedMonitor()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_SHARED._after_fork_in_child)


def default_monitor() -> Monitor:
    """The process-wide default Monitor (started; shared: never close it yourself).

    Open named windows on it with unique names (``begin``/``end``), or use :func:`measure`."""
    return _SHARED.get()


def refresh() -> None:
    """Re-discover the default Monitor's meters and profiles at the next window (after a change
    the watched environment variables do not show: a device added, a profile file edited)."""
    _SHARED.refresh()


class measure:  # lower-case: used like a function, ``with measure():`` / ``@measure()``
    """Meter a block or a function: ``with measure("train") as m: ...`` then ``m.report``.

    As a decorator (``@measure``, ``@measure()`` or ``@measure("step")``, on functions, methods,
    coroutine functions, generator functions and async generator functions) every call is one
    window, named after the function unless a name is given; the latest report is on the
    wrapped function (``.energy_report``) and on the decorator object (``.report``). A
    generator's window spans its iteration: it opens at the first ``next()`` (not when the
    generator object is made) and closes when the generator is exhausted, returns, raises or
    is closed (``break`` out of a ``for`` loop closes it when the generator is collected, at
    once in CPython); the time the consumer spends between items is inside the window.
    Windows are on the process's default Monitor unless ``meters``, ``profile_paths`` or
    ``use_profiles=False`` ask for a Monitor of their own (built and closed per window).

    In a distributed job (docs/distributed.md) each rank meters its own GPU and the node's
    local rank 0 the shared domains. ``gather=True`` brings the window's reports of every rank
    together when it ends (collective: every rank must end the same windows in the same
    order): the job's total, per node and per rank, is then on ``.job``
    (:class:`~ecnas.monitor.distributed.JobReport`; in a single process, a job of one rank).
    ``barrier=True`` makes the ranks wait for each other at both edges, so their windows
    start and end together.
    """

    # Slots: a measure() is built for every window of ``with measure():``.
    __slots__ = ("name", "_named", "_idle_subtract", "_sync_cuda", "_own", "_meters", "_kwargs",
                 "report", "monitor", "_stack", "_gather", "_barrier", "job")

    def __new__(cls, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        # Bare ``@measure``: Python calls measure(fn); answer with the decorated function.
        # (A str name first, and object.__new__: every ``with measure():`` window pays this.)
        if name.__class__ is not str and callable(name) and not args and not kwargs:
            return cls()(name)
        return object.__new__(cls)

    def __init__(self, name: str | None = None, meters: Sequence[Meter] | None = None, *,
                 idle_subtract: bool = False, profile_paths: Sequence[str | Path] = (),
                 sync_cuda: bool = True, use_profiles: bool = True, gather: bool = False,
                 barrier: bool = False) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"measure(name): a window name is a str, not {type(name).__name__}")
        self._named = name is not None
        self.name = "measure" if name is None else name
        self._idle_subtract = idle_subtract
        self._sync_cuda = sync_cuda
        self._own = meters is not None or bool(profile_paths) or not use_profiles
        if self._own:  # only then a Monitor is built per window (the default one is shared)
            self._meters = meters
            self._kwargs = {"idle_subtract": idle_subtract, "profile_paths": profile_paths,
                            "sync_cuda": sync_cuda, "use_profiles": use_profiles}
        self.report: EnergyReport | None = None
        self.monitor: Monitor | None = None
        self._stack: list[Window] = []
        self._gather = gather
        self._barrier = barrier
        #: the job's report of the latest window (``gather=True``), else None
        self.job: JobReport | None = None

    # -- one window ------------------------------------------------------------------------
    def _open(self) -> Window:
        if self._own:
            monitor, lease = Monitor(self._meters, **self._kwargs).start(), None  # type: ignore[arg-type]
        else:
            lease = _SHARED.acquire()
            monitor = lease.monitor
        try:
            if self._barrier:
                distributed.barrier()
            return Window(monitor, monitor.snapshot(self._sync_cuda), lease)
        except BaseException:
            self._release(monitor, lease)
            raise

    def _close(self, window: Window) -> EnergyReport:
        monitor = window.monitor
        try:
            if self._barrier:
                distributed.barrier()
            report = monitor.report(self.name, window.start, monitor.snapshot(self._sync_cuda),
                                    idle_subtract=self._idle_subtract)
            if self._gather:
                self.job = distributed.gather(report, monitor=monitor, topo=monitor.topology
                                              or distributed.topology())
            return report
        finally:
            self._release(monitor, window.lease)

    @staticmethod
    def _release(monitor: Monitor, lease: Lease | None) -> None:
        if lease is None:
            monitor.close()  # a Monitor of its own, built for this window
        else:
            _SHARED.release(lease)

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> measure:
        window = self._open()
        self._stack.append(window)
        self.monitor = window.monitor
        return self

    def __exit__(self, *exc: object) -> None:
        stack = self._stack
        window = stack.pop()
        try:
            self.report = self._close(window)
        finally:
            self.monitor = stack[-1].monitor if stack else None

    def peek(self) -> EnergyReport:
        """The report of the innermost open window until now; the window stays open."""
        if not self._stack:
            raise InputError(f"measure({self.name!r}).peek(): no window is open")
        monitor, start, _ = self._stack[-1]
        return monitor.report(self.name, start, monitor.snapshot(self._sync_cuda),
                              idle_subtract=self._idle_subtract)

    # -- decorator -------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@measure decorates a function, not {type(fn).__name__}")
        if not self._named:  # @measure / @measure(): the window is named after the function
            self.name = str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "measure"))
        if inspect.iscoroutinefunction(fn):
            return self._wrap_coroutine(fn)
        if inspect.isgeneratorfunction(fn):
            return self._wrap_generator(fn)
        if inspect.isasyncgenfunction(fn):
            return self._wrap_async_generator(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The window lives in this call's frame: concurrent calls (threads) never share it.
            window = self._open()
            report = None
            try:
                return fn(*args, **kwargs)
            finally:
                try:
                    report = self._close(window)
                finally:
                    self.report = report
                    wrapper.energy_report = report  # type: ignore[attr-defined]

        wrapper.energy_report = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    def _wrap_coroutine(self, fn: F) -> F:
        # A coroutine's window spans its whole run (awaits included), not just its creation;
        # other tasks running meanwhile are in it too, as with any wall-clock window.
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            window = self._open()
            report = None
            try:
                return await fn(*args, **kwargs)
            finally:
                try:
                    report = self._close(window)
                finally:
                    self.report = report
                    wrapper.energy_report = report  # type: ignore[attr-defined]

        wrapper.energy_report = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    def _finish(self, wrapper: Any, window: Window) -> None:
        """Close a decorated call's window; its report goes on ``wrapper`` and on self."""
        report = None
        try:
            report = self._close(window)
        finally:
            self.report = report
            wrapper.energy_report = report

    def _wrap_generator(self, fn: F) -> F:
        # Calling a generator function runs none of its body: metering the call would meter
        # nothing (issue 37). The window spans the iteration instead, from the first next()
        # to exhaustion, return, an exception or close() (GeneratorExit).
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            gen = fn(*args, **kwargs)
            window = self._open()
            try:
                return (yield from gen)
            finally:
                gen.close()  # a consumer's close()/throw() reached us first: close it too
                self._finish(wrapper, window)

        wrapper.energy_report = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    def _wrap_async_generator(self, fn: F) -> F:
        # An async generator's window spans its iteration (awaits inside included), from the
        # first __anext__ to exhaustion, an exception or aclose(). asend/athrow are passed on.
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            agen = fn(*args, **kwargs)
            window = self._open()
            try:
                sent: Any = None
                thrown: BaseException | None = None
                while True:
                    try:
                        if thrown is not None:  # the consumer's athrow(): pass it on
                            exc, thrown = thrown, None
                            item = await agen.athrow(exc)
                        else:
                            item = await agen.asend(sent)
                    except StopAsyncIteration:
                        return
                    try:
                        sent = yield item
                    except GeneratorExit:
                        raise
                    except BaseException as exc:  # noqa: BLE001 - handed to the generator
                        thrown = exc
            finally:
                await agen.aclose()
                self._finish(wrapper, window)

        wrapper.energy_report = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]
