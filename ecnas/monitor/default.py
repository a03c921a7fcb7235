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
from typing import Any, TypeVar

from ecnas.meters.base import Meter
from ecnas.monitor.monitor import Monitor, Snapshot
from ecnas.monitor.report import EnergyReport

F = TypeVar("F", bound=Callable[..., Any])

#: Environment variables that change what the default Monitor reads or how it calibrates.
WATCHED_ENV = ("ECNAS_SYSFS_ROOT", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
               "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ECNAS_PROFILE_PATH",
               "ECNAS_NVML_BACKGROUND")


def _env_reader() -> Callable[[], tuple[object, ...]]:
    """A function returning the watched variables' current values, for comparison only.

    It reads the mapping behind ``os.environ`` (``_data``, kept in step by every
    ``os.environ[...] = ...``, ``monkeypatch.setenv`` included): ``os.environ.get`` costs
    ~0.7 µs a name here, which would be 4 µs of a 30 µs window. Where that mapping is not
    there, it falls back to ``os.environ.get``.
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


class SharedMonitor:
    """Holds the process's default :class:`Monitor` (one per process; see the module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._monitor: Monitor | None = None
        self._key: tuple[object, ...] = ()  # the watched variables, as _env_key reads them
        self._exit_hook = False

    def get(self) -> Monitor:
        """The default Monitor, started; re-discovered first if the watched variables changed."""
        monitor = self._monitor
        if monitor is not None and self._key == _env_key():
            return monitor
        with self._lock:
            key = _env_key()
            monitor = self._monitor
            if monitor is None or self._key != key:
                new = Monitor().start()
                self._monitor, self._key = new, key
                if not self._exit_hook:
                    atexit.register(self.close)
                    self._exit_hook = True
                if monitor is not None:
                    monitor._retire()
                monitor = new
            return monitor

    def acquire(self) -> Monitor:
        """:meth:`get`, counted as in use until :meth:`Monitor._leave_use` (a replaced Monitor
        stays open until then)."""
        while True:
            monitor = self._monitor  # get()'s first lines, inlined: every window calls this
            if monitor is None or self._key != _env_key():
                monitor = self.get()
            monitor._enter_use()
            if not monitor._retired:
                return monitor
            monitor._leave_use()  # replaced meanwhile: take the new one

    def refresh(self) -> None:
        """Forget the current Monitor; the next window starts a freshly discovered one."""
        with self._lock:
            monitor, self._monitor, self._key = self._monitor, None, ()
        if monitor is not None:
            monitor._retire()

    def close(self) -> None:
        """Close the default Monitor now (at interpreter exit; open windows end with it)."""
        with self._lock:
            monitor, self._monitor, self._key = self._monitor, None, ()
        if monitor is not None:
            monitor.close()

    def _after_fork_in_child(self) -> None:
        # The lock may have been held by a thread that does not exist here; the Monitor's
        # threads are gone and its NVML handle is the parent's: start afresh.
        self._lock = threading.Lock()
        self._monitor, self._key = None, ()


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

    As a decorator (``@measure``, ``@measure()`` or ``@measure("step")``, on functions, methods
    and coroutine functions) every call is one window, named after the function unless a name
    is given; the latest report is on the wrapped function (``.energy_report``) and on the
    decorator object (``.report``).
    Windows are on the process's default Monitor unless ``meters``, ``profile_paths`` or
    ``use_profiles=False`` ask for a Monitor of their own (built and closed per window).
    """

    # Slots: a measure() is built for every window of ``with measure():``.
    __slots__ = ("name", "_named", "_idle_subtract", "_sync_cuda", "_own", "_meters", "_kwargs",
                 "report", "monitor", "_stack")

    def __new__(cls, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        # Bare ``@measure``: Python calls measure(fn); answer with the decorated function.
        # (A str name first, and object.__new__: every ``with measure():`` window pays this.)
        if name.__class__ is not str and callable(name) and not args and not kwargs:
            return cls()(name)
        return object.__new__(cls)

    def __init__(self, name: str | None = None, meters: Sequence[Meter] | None = None, *,
                 idle_subtract: bool = False, profile_paths: Sequence[str | Path] = (),
                 sync_cuda: bool = True, use_profiles: bool = True) -> None:
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
        self._stack: list[tuple[Monitor, Snapshot]] = []

    # -- one window ------------------------------------------------------------------------
    def _open(self) -> tuple[Monitor, Snapshot]:
        monitor = (Monitor(self._meters, **self._kwargs).start()  # type: ignore[arg-type]
                   if self._own else _SHARED.acquire())
        try:
            return monitor, monitor.snapshot(self._sync_cuda)
        except BaseException:
            self._release(monitor)
            raise

    def _close(self, monitor: Monitor, start: Snapshot) -> EnergyReport:
        try:
            return monitor.report(self.name, start, monitor.snapshot(self._sync_cuda),
                                  idle_subtract=self._idle_subtract)
        finally:
            self._release(monitor)

    def _release(self, monitor: Monitor) -> None:
        if self._own:
            monitor.close()
        else:
            monitor._leave_use()

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> measure:
        opened = self._open()
        self._stack.append(opened)
        self.monitor = opened[0]
        return self

    def __exit__(self, *exc: object) -> None:
        stack = self._stack
        monitor, start = stack.pop()
        try:
            self.report = self._close(monitor, start)
        finally:
            self.monitor = stack[-1][0] if stack else None

    def peek(self) -> EnergyReport:
        """The report of the innermost open window until now; the window stays open."""
        if not self._stack:
            from ecnas.errors import InputError

            raise InputError(f"measure({self.name!r}).peek(): no window is open")
        monitor, start = self._stack[-1]
        return monitor.report(self.name, start, monitor.snapshot(self._sync_cuda),
                              idle_subtract=self._idle_subtract)

    # -- decorator -------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@measure decorates a function, not {type(fn).__name__}")
        if not self._named:  # @measure / @measure(): the window is named after the function
            self.name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "measure")
        if inspect.iscoroutinefunction(fn):
            return self._wrap_coroutine(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The window lives in this call's frame: concurrent calls (threads) never share it.
            monitor, start = self._open()
            report = None
            try:
                return fn(*args, **kwargs)
            finally:
                try:
                    report = self._close(monitor, start)
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
            monitor, start = self._open()
            report = None
            try:
                return await fn(*args, **kwargs)
            finally:
                try:
                    report = self._close(monitor, start)
                finally:
                    self.report = report
                    wrapper.energy_report = report  # type: ignore[attr-defined]

        wrapper.energy_report = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]
