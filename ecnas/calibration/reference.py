"""A reference power meter's log (wall socket, PDU): reading it and integrating it.

A log is ``timestamp,watts`` rows. What a row's watts stand for decides how the log is
integrated, so :class:`ReferenceSeries` carries it as ``rows``:

* ``"mean"`` (the default): the mean power over the period that *ends* at the row's
  timestamp, which is what wall meters and PDUs log (they integrate voltage × current over
  their update period) and what any log derived from an energy counter holds. The power is a
  step function.
* ``"instant"``: a sample of the power at the timestamp; the power is linear between rows.

Reading a log a meter is still writing is expected (``ecnas calibrate`` reads the log after it
measured): a last line without its newline that does not parse is a row being written, and is
left out. numpy is imported inside the functions so ``import ecnas.profiles`` stays light.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import math
import stat as _stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.errors import InputError

#: the largest log read (a 1 Hz log of 12 days is ~30 MiB); a bigger one is refused unread,
#: so a wrong file (a trace, a dump) never takes the machine's memory
MAX_BYTES = 32 * 1024 * 1024
#: a wall meter or PDU's physical range: a reading above it is a unit error (mW) or garbage
MAX_WATTS = 100_000.0
#: timestamps: seconds from 0 (a log counting from its start) to 2100-01-01 in Unix time
TIME_RANGE = (0.0, 4_102_444_800.0)

TIME_COLUMNS = ("timestamp", "time", "t", "unix_time", "time_s")
WATT_COLUMNS = ("watts", "power_w", "power", "w", "watt")
ROWS = ("mean", "instant")


@dataclass(frozen=True)
class ReferenceSeries:
    """Reference power rows: timestamps (Unix seconds, the meter's clock) and watts."""

    t: tuple[float, ...]
    watts: tuple[float, ...]
    source: str
    rows: str = "mean"  # "mean" over the period ending at t, or an "instant" sample

    def __post_init__(self) -> None:
        if self.rows not in ROWS:
            raise InputError(f"reference rows: {self.rows!r} is not one of: " + ", ".join(ROWS))

    @property
    def period_s(self) -> float:
        """The median time between rows."""
        return float(sorted(b - a for a, b in zip(self.t, self.t[1:], strict=False))
                     [(len(self.t) - 2) // 2])


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    stamp = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if stamp.tzinfo is None:  # a meter logging local time: read it as this host's local time
        stamp = stamp.astimezone()
    return stamp.timestamp()


def _looks_like_time(text: str) -> bool:
    try:
        _parse_time(text)
    except ValueError:
        return False
    return True


class _Lines:
    """A log's lines, read one at a time (never the whole text in memory), remembering
    whether the line last handed out ended with its newline."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.complete = True
        self.lines = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._fh.readline()
        if not line:
            raise StopIteration
        self.complete = line.endswith(("\n", "\r"))
        self.lines += 1
        return line


def _parse(path: Path, source: Any) -> tuple[list[float], list[float], int]:
    """The rows of a log (an open text file, or its text), checked; ``InputError("FILE: line
    N: column: reason")``. Also returns how many non-comment rows there were, header included.
    A last line without its newline that does not parse is a row being written: left out."""

    lines = _Lines(io.StringIO(source) if isinstance(source, str) else source)
    t_col, w_col = 0, 1
    ts: list[float] = []
    ws: list[float] = []
    seen = 0
    reader = csv.reader(lines)
    for row in reader:
        if not row or not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        try:
            seen += 1
            if seen == 1:
                first = [c.strip().lower() for c in row]
                try:
                    float(first[0])
                    header = False
                except ValueError:
                    header = not _looks_like_time(first[0])
                if header:
                    t_col = next((first.index(c) for c in TIME_COLUMNS if c in first), 0)
                    w_col = next((first.index(c) for c in WATT_COLUMNS if c in first), 1)
                    continue
            t, w = _row(path, reader.line_num, row, t_col, w_col)
        except InputError:
            if not lines.complete:
                break  # the meter is still writing this row
            raise
        if ts and t <= ts[-1]:
            if not lines.complete:
                break
            raise InputError(f"{path}: line {reader.line_num}: timestamp: {row[t_col]!r} does "
                             "not increase (rows must be in time order)")
        ts.append(t)
        ws.append(w)
    return ts, ws, seen


def _row(path: Path, line: int, row: list[str], t_col: int, w_col: int) -> tuple[float, float]:
    if len(row) <= max(t_col, w_col):
        raise InputError(f"{path}: line {line}: expected at least {max(t_col, w_col) + 1} "
                         "columns (timestamp, watts)")
    try:
        t = _parse_time(row[t_col])
    except (ValueError, OverflowError):
        raise InputError(f"{path}: line {line}: timestamp: {row[t_col]!r} is neither "
                         "Unix seconds nor an ISO 8601 time") from None
    if not TIME_RANGE[0] <= t <= TIME_RANGE[1]:  # inf and nan fail this too
        raise InputError(f"{path}: line {line}: timestamp: {row[t_col]!r} is not a time "
                         "from 0 to 2100-01-01 (Unix seconds or ISO 8601)")
    try:
        w = float(row[w_col])
    except ValueError:
        raise InputError(f"{path}: line {line}: watts: {row[w_col]!r} is not a number") from None
    if not math.isfinite(w) or w < 0:
        raise InputError(f"{path}: line {line}: watts: {w} is not a finite power >= 0")
    if w > MAX_WATTS:
        raise InputError(f"{path}: line {line}: watts: {w:g} is above {MAX_WATTS:g} W, "
                         "beyond a wall meter's range (a log in mW?)")
    return t, w


def _read(path: Path) -> tuple[list[float], list[float], int]:
    """Check the file (a regular file, at most MAX_BYTES) and parse it, streaming."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such reference file") from None

    if _stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a folder, not a reference log")
    if not _stat.S_ISREG(st.st_mode):
        # a FIFO or device would block or never end: a log is a regular file
        raise InputError(f"{path}: not a regular file (a reference log is a file)")
    if st.st_size > MAX_BYTES:
        raise InputError(f"{path}: {st.st_size / 2**20:.0f} MiB is more than a reference log "
                         f"holds (at most {MAX_BYTES // 2**20} MiB, a 1 Hz log of 12 days); "
                         "cut it to the calibration's time")
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return _parse(path, fh)
    except FileNotFoundError:
        raise InputError(f"{path}: no such reference file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None


def read_reference_csv(path: str | Path, *, rows: str = "mean") -> ReferenceSeries:
    """Read ``timestamp,watts`` rows (header optional; Unix seconds or ISO 8601 times).

    Columns are found by header name (timestamp/time/t, watts/power_w/power/w), else the
    first two columns are taken. ``rows`` says what a row's watts are (see the module doc).
    Raises ``InputError("FILE: line N: column: reason")``.
    """
    path = Path(path)
    ts, ws, seen = _read(path)
    if not seen:
        raise InputError(f"{path}: empty reference file (expected rows 'timestamp,watts')")
    if len(ts) < 2:
        raise InputError(f"{path}: needs at least 2 samples, found {len(ts)}")
    return ReferenceSeries(tuple(ts), tuple(ws), str(path), rows)


def check_reference_path(path: str | Path) -> str:
    """What can be checked before measuring: the rows a log holds so far when it exists (a
    live log may hold none yet), its folder when it does not. Returns what was checked."""
    path = Path(path)
    if path.exists():
        ts, _, _ = _read(path)
        return f"{path}: {len(ts)} rows so far, format ok"
    if not path.parent.is_dir():
        raise InputError(f"--reference: {path}: no such file, and its folder {path.parent} "
                         "does not exist")
    return f"{path}: not there yet; read after measuring"


class ReferenceIntegral:
    """Energy of a reference log between any two times: ``energy(x)`` is the integral of its
    power from the log's start to each ``x`` (host seconds, after ``shift_s`` is added to the
    log's timestamps); ``power(x)`` is the power at ``x``. ``start``/``end`` bound what the log
    covers."""

    def __init__(self, ref: ReferenceSeries, shift_s: float = 0.0) -> None:
        self.t = np.asarray(ref.t, dtype=float) + shift_s
        self.w = np.asarray(ref.watts, dtype=float)
        self.rows = ref.rows
        dt = np.diff(self.t)
        if ref.rows == "mean":
            # Row i holds the mean over (t[i-1], t[i]]. The first row's period is not known
            # for sure, so the log covers t[0]..t[-1] either way.
            self.area = np.concatenate([[0.0], np.cumsum(self.w[1:] * dt)])
        else:
            self.area = np.concatenate([[0.0], np.cumsum(0.5 * (self.w[1:] + self.w[:-1]) * dt)])
        self.start = float(self.t[0])
        self.end = float(self.t[-1])

    def energy(self, x: Any) -> Any:
        """Joules from the log's start to host time(s) ``x``: exact for both row kinds (linear
        for ``mean`` rows, quadratic between ``instant`` samples)."""
        if self.rows == "mean":  # a step function: its integral is linear between rows
            return np.interp(x, self.t, self.area)
        t, w = self.t, self.w
        k = np.clip(np.searchsorted(t, x, side="right") - 1, 0, len(t) - 2)
        h = x - t[k]
        slope = (w[k + 1] - w[k]) / (t[k + 1] - t[k])
        return self.area[k] + h * w[k] + 0.5 * h * h * slope

    def power(self, x: Any) -> Any:
        """Watts at host time(s) ``x``: the row whose period holds ``x`` for ``mean`` rows,
        linear interpolation between ``instant`` samples."""
        if self.rows == "mean":
            k = np.clip(np.searchsorted(self.t, x, side="left"), 1, len(self.w) - 1)
            return self.w[k]
        return np.interp(x, self.t, self.w)

    def mean_power(self, a: Any, b: Any) -> Any:
        """Mean reference power over each interval [a, b]."""
        return (self.energy(b) - self.energy(a)) / (b - a)
