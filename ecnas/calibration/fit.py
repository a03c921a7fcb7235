"""Fit a device's gain and offset against a reference power meter (wall socket, PDU).

Model, per interval: reference watts = gain × measured watts + offset_w, which is the
profile's rule ``calibrated J = gain × raw J + offset_w × duration`` divided by the duration.
The fit is linear least squares (scipy) with the usual covariance, so ``gain_sd`` and
``offset_sd`` are one-standard-deviation uncertainties. Needs a spread of load (an idle phase
and a load phase): a single power level cannot separate gain from offset.

numpy and scipy are imported inside the functions so ``import ecnas.profiles`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.calibration.reference import (  # noqa: F401 - re-exported: the fit's inputs
    ReferenceIntegral,
    ReferenceSeries,
    check_reference_path,
    read_reference_csv,
)
from ecnas.errors import InputError
from ecnas.meters.base import Calibration
from ecnas.profiles.bounds import gain_problem, offset_problem


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
        """The fit as the profile's per-domain calibration; the RMS residual (W) becomes its
        uncertainty."""
        return Calibration(gain=self.gain, offset_w=self.offset_w,
                           uncertainty_w=self.residual_w, calibrated=True)

    def to_dict(self) -> dict[str, Any]:
        """The fit as plain data (the ``fit`` entry of ``--json`` and of the run's report)."""
        return {"gain": self.gain, "offset_w": self.offset_w, "gain_sd": self.gain_sd,
                "offset_sd": self.offset_sd, "residual_w": self.residual_w, "n": self.n,
                "interval_s": self.interval_s,
                "measured_range_w": list(self.measured_range_w)}


def _intervals(t: Any, e: Any, interval_s: float) -> tuple[Any, Any, Any]:
    """Merge consecutive cumulative-energy samples into intervals of at least interval_s."""
    edges = [0]
    for i in range(1, len(t)):
        if t[i] - t[edges[-1]] >= interval_s:
            edges.append(i)
    idx = np.asarray(edges)
    a, b = t[idx[:-1]], t[idx[1:]]
    power = (e[idx[1:]] - e[idx[:-1]]) / (b - a)
    return a, b, power


def _row_intervals(t: Any, v: Any, integral: ReferenceIntegral, interval_s: float
                   ) -> tuple[Any, Any, Any, Any]:
    """Intervals on the reference's own rows (merged to about interval_s) inside the
    measurement: the reference's mean over each is exact, and the measured energy, sampled
    much finer, is interpolated at the same edges. Both sides then average the same window;
    intervals cut across rows would smooth the reference against the measurement and pull
    the gain low."""
    edges = integral.t[(integral.t >= t[0]) & (integral.t <= t[-1])]
    if len(edges) < 2:
        return (np.empty(0),) * 4
    # A meter's period jitters around its nominal value: a row a little short of
    # interval_s still makes an interval of its own.
    a, b, _ = _intervals(edges, edges, interval_s - 0.25 * float(np.median(np.diff(integral.t))))
    x = (np.interp(b, t, v) - np.interp(a, t, v)) / (b - a)
    return a, b, x, integral.mean_power(a, b)


def measured_energy(measured: tuple[Sequence[float], Sequence[float]],
                    measured_is: str = "joules") -> tuple[Any, Any]:
    """``(t, cumulative joules)`` as float arrays, checked; watts samples are integrated."""
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
    return t, v


def fit_reference(measured: tuple[Sequence[float], Sequence[float]],
                  reference: str | Path | ReferenceSeries, *, measured_is: str = "joules",
                  interval_s: float = 1.0, time_shift_s: float = 0.0) -> FitResult:
    """Fit gain and offset of ``measured`` against a reference power meter.

    ``measured`` is ``(t, values)`` with ``t`` in Unix seconds (this host's clock) and
    ``values`` cumulative joules (``measured_is="joules"``, e.g. meter readings) or watts
    samples (``"watts"``, e.g. polled power). ``reference`` is a CSV path (see
    :func:`read_reference_csv`; rows read as means) or a :class:`ReferenceSeries`.
    ``time_shift_s`` is added to the reference's timestamps to put them on this host's clock
    (:func:`ecnas.calibration.timeshift.estimate_time_shift` finds it from the data).
    Only intervals fully covered by the reference are used.
    """
    from scipy.optimize import least_squares

    ref = reference if isinstance(reference, ReferenceSeries) else read_reference_csv(reference)
    t, v = measured_energy(measured, measured_is)
    integral = ReferenceIntegral(ref, time_shift_s)
    inside = (t >= integral.start) & (t <= integral.end)
    if int(inside.sum()) < 3:
        raise InputError(f"{ref.source}: the reference does not cover the measurement "
                         f"(reference {integral.start:.1f}..{integral.end:.1f} s, measured "
                         f"{measured[0][0]:.1f}..{measured[0][-1]:.1f} s Unix time after a "
                         f"time shift of {time_shift_s:+g} s)")
    if ref.rows == "mean":
        a, b, x, y = _row_intervals(t, v, integral, interval_s)
    else:
        a, b, x = _intervals(t[inside], v[inside], interval_s)
        y = integral.mean_power(a, b)
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

    problem = gain_problem(gain) or offset_problem(offset)
    if problem:  # a unit error or a log of another device: never written into a profile
        raise InputError(f"{ref.source}: the fit gives {problem}; check the log's units and "
                         "that it metered this device")
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
