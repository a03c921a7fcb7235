"""Fit a device's gain and offset against a reference power meter (wall socket, PDU).

Model, per interval: reference watts = gain × measured watts + offset_w, which is the
profile's rule ``calibrated J = gain × raw J + offset_w × duration`` divided by the duration.
The fit is linear least squares (scipy) with the usual covariance, so ``gain_sd`` and
``offset_sd`` are one-standard-deviation uncertainties. Needs a spread of load (an idle phase
and a load phase): a single power level cannot separate gain from offset.

numpy and scipy are imported inside the functions so ``import ecnas.profiles`` stays light.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecnas.errors import InputError
from ecnas.meters.base import Calibration

TIME_COLUMNS = ("timestamp", "time", "t", "unix_time", "time_s")
WATT_COLUMNS = ("watts", "power_w", "power", "w", "watt")


@dataclass(frozen=True)
class ReferenceSeries:
    """Reference power samples: wall-clock seconds (Unix time) and watts."""

    t: tuple[float, ...]
    watts: tuple[float, ...]
    source: str


@dataclass(frozen=True)
class FitResult:
    """reference W ≈ gain × measured W + offset_w, with 1-sd uncertainties."""

    gain: float
    offset_w: float
    gain_sd: float
    offset_sd: float
    residual_w: float  # RMS residual (W): the spread left after calibration
    n: int  # intervals used
    interval_s: float  # typical interval length
    measured_range_w: tuple[float, float]  # min/max measured mean power over the intervals

    @property
    def calibration(self) -> Calibration:
        return Calibration(gain=self.gain, offset_w=self.offset_w,
                           uncertainty_w=self.residual_w, calibrated=True)

    def to_dict(self) -> dict[str, Any]:
        return {"gain": self.gain, "offset_w": self.offset_w, "gain_sd": self.gain_sd,
                "offset_sd": self.offset_sd, "residual_w": self.residual_w, "n": self.n,
                "interval_s": self.interval_s,
                "measured_range_w": list(self.measured_range_w)}


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    stamp = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if stamp.tzinfo is None:  # a meter logging local time: read it as this host's local time
        stamp = stamp.astimezone()
    return stamp.timestamp()


def read_reference_csv(path: str | Path) -> ReferenceSeries:
    """Read ``timestamp,watts`` rows (header optional; Unix seconds or ISO 8601 times).

    Columns are found by header name (timestamp/time/t, watts/power_w/power/w), else the
    first two columns are taken. Raises ``InputError("FILE: line N: column: reason")``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such reference file") from None
    rows = [(i + 1, r) for i, r in enumerate(csv.reader(text.splitlines()))
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise InputError(f"{path}: empty reference file (expected rows 'timestamp,watts')")
    t_col, w_col = 0, 1
    first = [c.strip().lower() for c in rows[0][1]]
    try:
        float(first[0])
        header = False
    except ValueError:
        header = not _looks_like_time(first[0])
    if header:
        t_col = next((first.index(c) for c in TIME_COLUMNS if c in first), 0)
        w_col = next((first.index(c) for c in WATT_COLUMNS if c in first), 1)
        rows = rows[1:]
    ts: list[float] = []
    ws: list[float] = []
    for line, row in rows:
        if len(row) <= max(t_col, w_col):
            raise InputError(f"{path}: line {line}: expected at least {max(t_col, w_col) + 1} "
                             "columns (timestamp, watts)")
        try:
            t = _parse_time(row[t_col])
        except ValueError:
            raise InputError(f"{path}: line {line}: timestamp: {row[t_col]!r} is neither "
                             "Unix seconds nor an ISO 8601 time") from None
        try:
            w = float(row[w_col])
        except ValueError:
            raise InputError(f"{path}: line {line}: watts: {row[w_col]!r} is not a number") from None
        if not math.isfinite(w) or w < 0:
            raise InputError(f"{path}: line {line}: watts: {w} is not a finite power >= 0")
        if ts and t <= ts[-1]:
            raise InputError(f"{path}: line {line}: timestamp: {row[t_col]!r} does not "
                             "increase (rows must be in time order)")
        ts.append(t)
        ws.append(w)
    if len(ts) < 2:
        raise InputError(f"{path}: needs at least 2 samples, found {len(ts)}")
    return ReferenceSeries(tuple(ts), tuple(ws), str(path))


def _looks_like_time(text: str) -> bool:
    try:
        _parse_time(text)
    except ValueError:
        return False
    return True


def _cumulative_integral(t: Any, w: Any, x: Any) -> Any:
    """Exact integral of the piecewise-linear reference from t[0] to each x (x inside t)."""
    import numpy as np

    dt = np.diff(t)
    area = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * dt)])
    k = np.clip(np.searchsorted(t, x, side="right") - 1, 0, len(t) - 2)
    h = x - t[k]
    slope = (w[k + 1] - w[k]) / dt[k]
    return area[k] + h * w[k] + 0.5 * h * h * slope


def _intervals(t: Any, e: Any, interval_s: float) -> tuple[Any, Any, Any]:
    """Merge consecutive cumulative-energy samples into intervals of at least interval_s."""
    import numpy as np

    edges = [0]
    for i in range(1, len(t)):
        if t[i] - t[edges[-1]] >= interval_s:
            edges.append(i)
    idx = np.asarray(edges)
    a, b = t[idx[:-1]], t[idx[1:]]
    power = (e[idx[1:]] - e[idx[:-1]]) / (b - a)
    return a, b, power


def fit_reference(measured: tuple[Sequence[float], Sequence[float]],
                  reference: str | Path | ReferenceSeries, *, measured_is: str = "joules",
                  interval_s: float = 1.0, time_shift_s: float = 0.0) -> FitResult:
    """Fit gain and offset of ``measured`` against a reference power meter.

    ``measured`` is ``(t, values)`` with ``t`` in Unix seconds (the reference's clock) and
    ``values`` cumulative joules (``measured_is="joules"``, e.g. meter readings) or watts
    samples (``"watts"``, e.g. polled power). ``reference`` is a CSV path (see
    :func:`read_reference_csv`) or a :class:`ReferenceSeries`. ``time_shift_s`` is added to
    the reference's timestamps (a known clock offset between the two instruments).
    Only intervals fully covered by the reference are used.
    """
    import numpy as np
    from scipy.optimize import least_squares

    ref = reference if isinstance(reference, ReferenceSeries) else read_reference_csv(reference)
    t = np.asarray(measured[0], dtype=float)
    v = np.asarray(measured[1], dtype=float)
    if t.shape != v.shape or t.ndim != 1 or len(t) < 3:
        raise InputError("measured series: need matching 1-D time and value arrays with >= 3 "
                         f"samples, got {t.shape} and {v.shape}")
    if np.any(np.diff(t) <= 0):
        raise InputError("measured series: timestamps must increase")
    if measured_is == "watts":
        v = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(t))])
    elif measured_is != "joules":
        raise InputError(f"measured_is: {measured_is!r} is not 'joules' or 'watts'")

    rt = np.asarray(ref.t, dtype=float) + time_shift_s
    rw = np.asarray(ref.watts, dtype=float)
    inside = (t >= rt[0]) & (t <= rt[-1])
    t, v = t[inside], v[inside]
    if len(t) < 3:
        raise InputError(f"{ref.source}: the reference does not cover the measurement "
                         f"(reference {rt[0]:.1f}..{rt[-1]:.1f} s, measured "
                         f"{measured[0][0]:.1f}..{measured[0][-1]:.1f} s Unix time; clocks in sync?)")
    a, b, x = _intervals(t, v, interval_s)
    y = (_cumulative_integral(rt, rw, b) - _cumulative_integral(rt, rw, a)) / (b - a)
    n = len(x)
    if n < 3:
        raise InputError(f"{ref.source}: only {n} intervals of >= {interval_s:g} s overlap the "
                         "measurement; measure longer or use a shorter interval")
    spread = float(np.ptp(x))
    if spread <= 1e-6 * max(1.0, float(np.max(np.abs(x)))):
        raise InputError(f"{ref.source}: measured power is constant ({float(x[0]):.3g} W): gain "
                         "and offset need an idle and a load phase")

    def residual(p: Any) -> Any:
        return p[0] * x + p[1] - y

    sol = least_squares(residual, x0=np.array([1.0, 0.0]), method="lm")
    gain, offset = (float(p) for p in sol.x)
    res = sol.fun
    dof = max(n - 2, 1)
    s2 = float(res @ res) / dof
    jac = sol.jac
    cov = np.linalg.inv(jac.T @ jac) * s2
    return FitResult(
        gain=gain, offset_w=offset,
        gain_sd=float(math.sqrt(max(cov[0, 0], 0.0))),
        offset_sd=float(math.sqrt(max(cov[1, 1], 0.0))),
        residual_w=float(math.sqrt(float(res @ res) / n)), n=n,
        interval_s=float(np.median(b - a)),
        measured_range_w=(float(np.min(x)), float(np.max(x))),
    )
