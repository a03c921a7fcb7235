"""The two pieces every meter with background work shares: an event log that a window edge
can ask "anything since t?" for nothing, and a named daemon thread that polls until stopped.

Standard library only: ``import ecnas.meters`` must stay light.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

#: how long :meth:`Poller.stop` waits for the thread: a poll is a few device reads (ms), so a
#: thread still running after this is stuck in a driver call, and waiting longer would hang
#: the caller's close() with it
JOIN_TIMEOUT_S = 10.0


class EventLog:
    """Timestamped messages (monotonic s) a meter reports as warnings: counter resets, a
    counter that stopped reading, a poller that died. Bounded: the oldest go first."""

    __slots__ = ("_events", "_lock", "_newest")

    def __init__(self, maxlen: int = 256) -> None:
        self._events: deque[tuple[float, str]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._newest = -math.inf  # the latest event time: lets since() answer without the lock

    def add(self, message: str, t: float | None = None) -> None:
        """Log ``message`` as of ``t`` (monotonic s; now when None)."""
        if t is None:
            t = time.monotonic()
        with self._lock:
            # newest first: a reader that sees the old value ran before this event; one that
            # sees the new value takes the lock and waits for the append
            self._newest = max(self._newest, t)
            self._events.append((t, message))

    def since(self, t: float) -> tuple[str, ...]:
        """The messages logged at ``t`` or later, oldest first."""
        if self._newest < t:  # the usual window (and an empty log): no lock at a window edge
            return ()
        with self._lock:
            return tuple(msg for at, msg in self._events if at >= t)

    def __len__(self) -> int:
        return len(self._events)


def stopped(what: str, exc: BaseException) -> str:
    """Why a poller ended: ``"<what> stopped (<type>: <message>)"``."""
    return f"{what} stopped ({type(exc).__name__}: {exc})"


class Poller:
    """A named daemon thread that calls ``poll`` every ``period_s`` until :meth:`stop`.

    ``poll`` may return the seconds to wait before its next call (a poll that times its own
    work keeps a start-to-start period that way); None waits ``period_s``. It waits on an
    Event, so stop() ends it within one poll. An exception ends the thread, never silently:
    ``on_error`` (if given) gets it, then ``log`` gets "<what> stopped (<why>); <after>".
    One-shot: start it once; a meter that restarts its polling builds a new one.
    """

    def __init__(self, name: str, poll: Callable[[], float | None], period_s: float,
                 log: EventLog, *, what: str, after: str,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self.name = name
        self.period_s = float(period_s)
        self._poll = poll
        self._log = log
        self._what = what
        self._after = after
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread: its first poll comes one period from now."""
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the thread runs (False before start, after stop, after a failed poll)."""
        return self._thread.is_alive()

    def stop(self, timeout_s: float = JOIN_TIMEOUT_S) -> bool:
        """Ask the thread to end and wait for it (at most ``timeout_s``): whether it ended.
        One still polling then (stuck in a driver call) is left behind, daemon, and logged."""
        self._stop.set()
        thread = self._thread
        if thread.ident is None or thread is threading.current_thread():
            return True  # never started, or asked from its own poll: it ends after this poll
        thread.join(timeout_s)
        if thread.is_alive():
            self._log.add(f"{self._what} did not stop within {timeout_s:g} s (stuck in a "
                          "read); left running in the background")
            return False
        return True

    def _run(self) -> None:
        stop, poll, period = self._stop, self._poll, self.period_s
        wait = period
        try:
            while not stop.wait(wait):
                asked = poll()
                wait = period if asked is None else asked
        except Exception as exc:  # never die silently: the reports must say energy is off
            try:
                if self._on_error is not None:
                    self._on_error(exc)
            finally:
                self._log.add(f"{stopped(self._what, exc)}; {self._after}")
