"""Find how far a reference meter's clock is from this host's, from the data alone.

A wall meter's clock is rarely in sync with the host it measures. The calibration's load
steps (idle → probe → load → a fixed, irregular sequence of load levels) show in both the
host's counter and the meter's log, so the shift that lines them up can be found:

1. **search** — for every candidate shift ``d`` within ±``max_shift_s`` (a grid of half a
   reference period) the two power series are correlated over common windows about one
   reference period long: the log's own rows moved by ``d`` (rows read as means: each row's
   mean is exact and the measured energy, read much finer, is interpolated at the moved row
   edges), or the measured intervals (rows read as instant samples: the log is integrated
   over each, see :class:`ReferenceIntegral`);
2. **refine** — the best grid point is refined between its neighbours (bounded Brent search
   on the correlation, which is continuous in ``d``), so the shift is not limited to the grid;
3. **uncertainty** — the 1-sd of the shift comes from the peak's curvature: the covariance of
   the joint least-squares model ``reference = gain × measured + offset`` at shift ``d``
   (Jacobian in gain, offset and ``d``), its variance scaled up for residuals correlated from
   one interval to the next (AR(1) factor), as timing errors are.

It refuses, with the reason, when the shift cannot be identified: measured power without a
step, a reference that follows the measurement at no shift, two shifts that fit about equally
well (a periodic load), a best shift at the edge of what can be searched, or a peak too broad
to place the shift within ``max_sd_s``.

Convention: ``shift_s`` is *added* to the reference's timestamps to put them on this host's
clock — a meter whose clock runs 3 s ahead of the host has ``shift_s = -3``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.calibration.fit import _intervals, measured_energy
from ecnas.calibration.reference import ReferenceIntegral, ReferenceSeries, read_reference_csv
from ecnas.errors import InputError

MAX_SHIFT_S = 60.0
MIN_CORRELATION = 0.7
MAX_SD_S = 0.5
AMBIGUITY = 2.0  # a rival alignment must leave this many times the unexplained variance


@dataclass(frozen=True)
class ShiftEstimate:
    """The reference's clock shift: add ``shift_s`` to its timestamps to get host time."""

    shift_s: float
    sd_s: float | None  # 1-sd (None when the shift was given, not estimated)
    source: str  # "estimated" (from the data) or "given" (--time-shift-s)
    correlation: float | None = None  # measured vs reference power at the shift
    runner_up_s: float | None = None  # best shift outside the main peak
    runner_up_correlation: float | None = None
    n: int = 0  # intervals compared
    interval_s: float = 0.0
    search_s: float = 0.0  # searched ± this many seconds

    @classmethod
    def given(cls, shift_s: float) -> ShiftEstimate:
        """A shift the user gave (``--time-shift-s``), with no uncertainty."""
        return cls(shift_s=float(shift_s), sd_s=None, source="given")

    def describe(self) -> str:
        """The shift in words for the report: which clock is ahead, by how much, and how it was
        found."""
        ahead = "ahead of" if self.shift_s < 0 else "behind"
        clock = f"reference clock {abs(self.shift_s):.3f} s {ahead} this host's"
        if self.source == "given":
            return f"{clock} (time shift {self.shift_s:+.3f} s, given)"
        return (f"{clock} (time shift {self.shift_s:+.3f} ± {self.sd_s:.3f} s, estimated from "
                f"the data: r = {self.correlation:.4f} over {self.n} intervals of "
                f"{self.interval_s:.2g} s, searched ±{self.search_s:g} s)")

    def to_dict(self) -> dict[str, Any]:
        """The estimate's fields as plain data."""
        return dict(self.__dict__)


def _corr(x: np.ndarray, y: np.ndarray) -> float:

    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float(xc @ xc) * float(yc @ yc))
    return float(xc @ yc) / den if den > 0 else float("nan")


def _refuse(ref: ReferenceSeries, why: str) -> InputError:
    return InputError(f"{ref.source}: cannot find the reference's clock shift: {why}; "
                      "pass --time-shift-s if you know it")


def _sd_from(x: np.ndarray, y: np.ndarray, dres: np.ndarray, *, times_gain: bool) -> float:
    """1-sd of the shift from the joint model ``y = gain × x + offset``'s covariance: columns
    ``x`` and 1 for gain and offset, ``dres`` for the shift (the residual's derivative in it,
    times the gain when ``x`` is what moves); the variance scaled up when residuals are
    correlated from one interval to the next (AR(1))."""
    design = np.column_stack([x, np.ones_like(x)])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    res = design @ coef - y
    jac = np.column_stack([x, np.ones_like(x), coef[0] * dres if times_gain else dres])
    n = len(x)
    s2 = float(res @ res) / max(n - 3, 1)
    rho = _corr(res[:-1], res[1:]) if n > 3 else 0.0
    if math.isfinite(rho) and rho > 0:
        s2 *= (1 + rho) / (1 - rho) if rho < 0.99 else 199.0
    try:
        cov = np.linalg.inv(jac.T @ jac) * s2
    except np.linalg.LinAlgError:
        return float("inf")
    return float(math.sqrt(max(cov[2, 2], 0.0)))


class _Alignment:
    """Measured intervals against a reference log (rows read as samples) moved by a
    candidate shift: the log is integrated over each measured interval."""

    def __init__(self, t: np.ndarray, e: np.ndarray, step_s: float, ref: ReferenceSeries) -> None:
        self.a, self.b, self.x = _intervals(t, e, step_s)
        self.ref = ReferenceIntegral(ref)
        self.n = len(self.x)

    def covered(self, lo: float, hi: float) -> np.ndarray:
        """Intervals the log covers for every shift in [lo, hi]."""
        return (self.a - hi >= self.ref.start) & (self.b - lo <= self.ref.end)

    def corr(self, d: float, mask: np.ndarray) -> float:
        y = self.ref.mean_power(self.a[mask] - d, self.b[mask] - d)
        return _corr(self.x[mask], y)

    def sd(self, d: float, mask: np.ndarray) -> float:
        a, b, x = self.a[mask], self.b[mask], self.x[mask]
        y = self.ref.mean_power(a - d, b - d)
        # res = gain·x + offset - y(d), and dy/dd = -(p(b - d) - p(a - d)) / (b - a)
        dres = (self.ref.power(b - d) - self.ref.power(a - d)) / (b - a)
        return _sd_from(x, y, dres, times_gain=False)


class _RowAlignment:
    """The log's own rows (read as means over the period each ends; merged to at least one
    step) against the measured energy moved by a candidate shift: each row's mean is exact,
    and the measured energy, sampled much finer, is interpolated at the moved row edges. A
    window cut across rows would assume the power flat within each row, which a coarse
    (1 Hz) log is not at a load step, and would bias the shift."""

    def __init__(self, t: np.ndarray, e: np.ndarray, step_s: float, ref: ReferenceSeries) -> None:
        self.t, self.e = t, e
        integral = ReferenceIntegral(ref)
        period = float(np.median(np.diff(integral.t)))
        self.a, self.b, _ = _intervals(integral.t, integral.t, step_s - 0.25 * period)
        self.y = integral.mean_power(self.a, self.b)
        self.slope = np.diff(e) / np.diff(t)  # measured power between samples
        self.n = max(int((t[-1] - t[0]) / step_s), 1)

    def covered(self, lo: float, hi: float) -> np.ndarray:
        return (self.a + lo >= self.t[0]) & (self.b + hi <= self.t[-1])

    def _x(self, d: float, mask: np.ndarray) -> np.ndarray:
        a, b = self.a[mask] + d, self.b[mask] + d
        return (np.interp(b, self.t, self.e) - np.interp(a, self.t, self.e)) / (b - a)

    def corr(self, d: float, mask: np.ndarray) -> float:
        return _corr(self._x(d, mask), self.y[mask])

    def _power(self, x: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(self.t, x, side="right") - 1, 0, len(self.slope) - 1)
        return self.slope[k]

    def sd(self, d: float, mask: np.ndarray) -> float:
        a, b = self.a[mask] + d, self.b[mask] + d
        dx = (self._power(b) - self._power(a)) / (b - a)
        return _sd_from(self._x(d, mask), self.y[mask], dx, times_gain=True)


def estimate_time_shift(measured: tuple[Sequence[float], Sequence[float]],
                        reference: str | Path | ReferenceSeries, *,
                        measured_is: str = "joules", max_shift_s: float = MAX_SHIFT_S,
                        min_correlation: float = MIN_CORRELATION,
                        max_sd_s: float = MAX_SD_S) -> ShiftEstimate:
    """Estimate the shift to add to the reference's timestamps (see the module doc).

    ``measured`` is ``(t, cumulative joules)`` on this host's Unix clock (or watts samples
    with ``measured_is="watts"``). Raises ``InputError`` with the reason when the shift cannot
    be identified.
    """
    from scipy.optimize import minimize_scalar

    ref = reference if isinstance(reference, ReferenceSeries) else read_reference_csv(reference)
    if not max_shift_s > 0:
        raise InputError(f"max shift: must be > 0 s, got {max_shift_s}")
    t, e = measured_energy(measured, measured_is)
    step_s = max(float(np.median(np.diff(t))), ref.period_s)
    _, _, x = _intervals(t, e, step_s)
    n = len(x)
    if n < 8:
        raise _refuse(ref, f"only {n} intervals of {step_s:.2g} s were measured (need 8)")
    if float(np.ptp(x)) <= 1e-6 * max(1.0, float(np.max(np.abs(x)))):
        raise _refuse(ref, f"the measured power is constant ({float(x[0]):.3g} W), so it "
                           "has no step to line the reference up with")
    align = (_RowAlignment if ref.rows == "mean" else _Alignment)(t, e, step_s, ref)
    h = max(min(step_s, ref.period_s) / 2, 1e-3)
    grid = np.arange(-max_shift_s, max_shift_s + h / 2, h)
    need = max(8, math.ceil(0.5 * n))  # compare alignments on at least half the intervals
    scores = np.full(len(grid), np.nan)
    for k, d in enumerate(grid):
        mask = align.covered(d, d)
        if int(mask.sum()) >= need:  # a flat reference correlates with nothing: r = 0
            r = align.corr(d, mask)
            scores[k] = r if math.isfinite(r) else 0.0
    valid = np.flatnonzero(np.isfinite(scores))
    if not len(valid):
        raise _refuse(ref, f"the log ({ref.t[0]:.1f}..{ref.t[-1]:.1f} s Unix time) overlaps "
                           f"the measurement ({t[0]:.1f}..{t[-1]:.1f} s) by less than half "
                           f"at every shift within ±{max_shift_s:g} s")
    best = int(valid[np.argmax(scores[valid])])
    r_best = float(scores[best])
    if r_best < min_correlation:
        raise _refuse(ref, f"the reference follows the measured power at no shift within "
                           f"±{max_shift_s:g} s (best correlation r = {r_best:.2f} at "
                           f"{grid[best]:+.2f} s; need r >= {min_correlation:g})")
    if best in (valid[0], valid[-1]):
        raise _refuse(ref, f"the best alignment ({grid[best]:+.2f} s) lies at the edge of "
                           "what can be searched (start the meter's log before the run and "
                           "keep it running after it, or widen the search)")
    # The main peak: contiguous candidates above halfway between the best and the median.
    floor = float(np.median(scores[valid]))
    half = r_best - 0.5 * (r_best - floor)
    lo = hi = best
    while lo - 1 >= 0 and np.isfinite(scores[lo - 1]) and scores[lo - 1] > half:
        lo -= 1
    while hi + 1 < len(grid) and np.isfinite(scores[hi + 1]) and scores[hi + 1] > half:
        hi += 1
    rivals = valid[(valid < lo - 1) | (valid > hi + 1)]
    runner_up = runner_r = None
    if len(rivals):
        k = int(rivals[np.argmax(scores[rivals])])
        runner_up, runner_r = float(grid[k]), float(scores[k])
        if runner_r > 0 and 1 - runner_r ** 2 < AMBIGUITY * (1 - r_best ** 2):
            raise _refuse(ref, f"two shifts fit about equally well ({grid[best]:+.2f} s, "
                               f"r = {r_best:.3f}; {runner_up:+.2f} s, r = {runner_r:.3f}): "
                               "the measured power has no single identifiable step")
    # Sub-grid refinement on the intervals covered across the bracket.
    d0, d1 = float(grid[best] - h), float(grid[best] + h)
    mask = align.covered(d0, d1)
    if int(mask.sum()) < need:
        mask = align.covered(float(grid[best]), float(grid[best]))
        d0 = d1 = float(grid[best])
    shift = float(grid[best])
    if d1 > d0:
        sol = minimize_scalar(lambda d: -align.corr(d, mask), bounds=(d0, d1),
                              method="bounded", options={"xatol": 1e-4})
        if sol.success and -sol.fun >= align.corr(shift, mask):
            shift = float(sol.x)
    sd = align.sd(shift, mask)
    if not sd <= max_sd_s:
        raise _refuse(ref, f"the best shift {shift:+.2f} s is uncertain by ± {sd:.2f} s "
                           f"(more than {max_sd_s:g} s): the load steps are not sharp enough "
                           "for this reference")
    return ShiftEstimate(shift_s=shift, sd_s=sd, source="estimated",
                         correlation=align.corr(shift, mask), runner_up_s=runner_up,
                         runner_up_correlation=runner_r, n=int(mask.sum()),
                         interval_s=step_s, search_s=max_shift_s)
