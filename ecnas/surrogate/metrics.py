"""Accuracy metrics of a prediction against measured values (plain numpy/scipy functions)."""

from __future__ import annotations

import numpy as np

from ecnas.errors import InputError


def _pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.shape != t.shape or p.size == 0:
        raise InputError(f"metrics need two equal, non-empty arrays, got {p.shape} and {t.shape}")
    return p, t


def mape(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t) / np.abs(t)) * 100.0)


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error, in the values' unit."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t)))


def r2(pred: np.ndarray, true: np.ndarray) -> float:
    """Coefficient of determination of ``pred`` against ``true`` (NaN when ``true`` is
    constant)."""
    p, t = _pair(pred, true)
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    return float("nan") if ss_tot == 0 else 1.0 - float(np.sum((p - t) ** 2)) / ss_tot


def kendall_tau(pred: np.ndarray, true: np.ndarray) -> float:
    """Kendall's τ-b (ties handled), the rank agreement NAS benchmarks report."""
    from scipy.stats import kendalltau

    p, t = _pair(pred, true)
    if p.size < 2:
        return float("nan")
    return float(kendalltau(p, t).statistic)


def coverage(low: np.ndarray, high: np.ndarray, true: np.ndarray) -> float:
    """Fraction of measured values inside [low, high], in percent."""
    lo, t = _pair(low, true)
    hi, _ = _pair(high, true)
    return float(np.mean((t >= lo) & (t <= hi)) * 100.0)
