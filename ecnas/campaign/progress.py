"""Progress of a campaign: runs done / total, ETA, energy so far (measured vs estimated),
failures; one line of text per event for a ``progress`` callable (stderr in the CLI).

The ETA follows the recent pace, not the session's mean: on a shared machine a run's time
moves with the load (12–20 s quiet, 222–782 s at load 8–11 in issue 37), and a mean over the
whole session answers for a load that is gone. It is the median of the intervals between the
last :data:`RECENT` run completions (robust to one stalled run), times the runs remaining.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

#: run completions the ETA looks back over
RECENT = 5


def process_elapsed_s() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included), from
    ``/proc/self/stat`` and ``/proc/uptime``; None where they cannot be read (not Linux)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            # the command name (field 2) may hold spaces: fields count from after its ')'
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None


def _duration(s: float) -> str:
    s = max(int(round(s)), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _joules(j: float) -> str:
    if j >= 3.6e6:
        return f"{j / 3.6e6:.3f} kWh"
    if j >= 1e3:
        return f"{j / 1e3:.1f} kJ"
    return f"{j:.1f} J"


@dataclass
class Progress:
    """Counts for one coordinator session (mutable: the coordinator updates it)."""

    total: int
    skipped: int  # already in the store when the session started
    done: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    measured_j: float = 0.0  # this session's runs
    estimated_j: float = 0.0
    stored_measured_j: float = 0.0  # the runs already in the store when the session started
    stored_estimated_j: float = 0.0
    started: float = field(default_factory=time.monotonic)
    #: monotonic times of the last run completions (the session's start first)
    _marks: deque = field(default_factory=lambda: deque(maxlen=RECENT + 1))

    @property
    def remaining(self) -> int:
        """Runs neither in the store, done this session, nor given up."""
        return self.total - self.skipped - self.done - self.given_up

    def eta_s(self) -> float | None:
        """Seconds until the remaining runs are done at the recent pace: the median interval
        between the last :data:`RECENT` completions (the first measured from the session's
        start) times the runs remaining; None before the first run finishes."""
        if self.done == 0:
            return None
        marks = list(self._marks) if self._marks else []
        if len(marks) < 2:  # completions recorded before add_run kept marks: the mean pace
            return (time.monotonic() - self.started) / self.done * self.remaining
        gaps = [b - a for a, b in zip(marks[:-1], marks[1:], strict=True)]
        return statistics.median(gaps) * self.remaining

    def mark_done(self, when: float | None = None) -> None:
        """Record a run completion's time for the ETA (``add_run`` calls it)."""
        if not self._marks:
            self._marks.append(self.started)
        self._marks.append(time.monotonic() if when is None else when)

    def add_run(self, energy_j: float, estimated: bool, when: float | None = None) -> None:
        """Count a finished run and add its energy (J) to the measured or the estimated
        total."""
        self.done += 1
        self.mark_done(when)
        if estimated:
            self.estimated_j += energy_j
        else:
            self.measured_j += energy_j

    def line(self, event: str) -> str:
        """The progress line printed after ``event``: runs done of total, energy so far (stored
        runs included), failed attempts and ETA."""
        eta = self.eta_s()
        # "so far" is the campaign's, like the run count: stored runs included
        measured = self.stored_measured_j + self.measured_j
        estimated = self.stored_estimated_j + self.estimated_j
        return (f"[{self.skipped + self.done}/{self.total}] {event} | energy so far "
                f"{_joules(measured)} measured, {_joules(estimated)} estimated | "
                f"{self.failed_attempts} failed attempt(s) | "
                f"ETA {_duration(eta) if eta is not None else '?'}")
