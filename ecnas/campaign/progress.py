"""Progress of a campaign: runs done / total, ETA, energy so far (measured vs estimated),
failures; one line of text per event for a ``progress`` callable (stderr in the CLI)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


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

    @property
    def remaining(self) -> int:
        """Runs neither in the store, done this session, nor given up."""
        return self.total - self.skipped - self.done - self.given_up

    def eta_s(self) -> float | None:
        """Seconds until the remaining runs are done at this session's mean pace so far; None
        before the first run finishes."""
        if self.done == 0:
            return None
        return (time.monotonic() - self.started) / self.done * self.remaining

    def add_run(self, energy_j: float, estimated: bool) -> None:
        """Count a finished run and add its energy (J) to the measured or the estimated
        total."""
        self.done += 1
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
