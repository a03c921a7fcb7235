"""Split-conformal prediction intervals on the log scale (relative errors).

For a model predicting ``log y`` and calibration residuals ``r_i = |log y_i − log ŷ_i|`` on
runs or architectures the model did not train on, the interval ``ŷ·exp(±q)`` with ``q`` the
``ceil((n+1)·level)``-th smallest residual covers a new exchangeable point with probability at
least ``level`` (Vovk et al.; Lei et al. 2018). Logs make the width relative, which suits
energies spanning a factor of ten. With fewer than ``ceil(1/(1−level)) − 1`` residuals no
finite quantile exists: the interval is then unbounded and says so.
"""

from __future__ import annotations

import math

import numpy as np

from ecnas.errors import InputError


def conformal_quantile(residuals: np.ndarray, level: float) -> float:
    """The conformal quantile of absolute residuals at ``level`` (inf if too few of them)."""
    if not 0.0 < level < 1.0:
        raise InputError(f"interval level must be in (0, 1), got {level!r}")
    r = np.sort(np.abs(np.asarray(residuals, dtype=np.float64)))
    r = r[np.isfinite(r)]
    n = r.size
    k = math.ceil((n + 1) * level)
    if n == 0 or k > n:
        return math.inf
    return float(r[k - 1])


def bounds(pred: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """Relative interval ``pred·exp(−q) … pred·exp(q)`` (0 … inf when q is inf)."""
    p = np.asarray(pred, dtype=np.float64)
    if not math.isfinite(q):
        return np.zeros_like(p), np.full_like(p, np.inf)
    return p * math.exp(-q), p * math.exp(q)
