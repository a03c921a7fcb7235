"""Knee of a 2-D front and "energy saved at ≤ X points of accuracy lost"."""

from __future__ import annotations

import math

import numpy as np

from ecnas.errors import InputError


def knee_index(front: np.ndarray) -> int:
    """Index (into ``front``, minimized, 2-D) of the point farthest from the line between the
    front's extremes, after scaling each objective to [0, 1]."""
    f = np.asarray(front, dtype=float)
    if len(f) <= 2:
        return 0
    span = np.ptp(f, axis=0)
    g = (f - f.min(axis=0)) / np.where(span > 0, span, 1.0)
    a, b = g[np.argmin(g[:, 0])], g[np.argmin(g[:, 1])]
    d = b - a
    norm = math.hypot(*d) or 1.0
    dist = np.abs(d[0] * (g[:, 1] - a[1]) - d[1] * (g[:, 0] - a[0])) / norm
    return int(np.argmax(dist))


def energy_saved_at(points: np.ndarray, max_accuracy_loss: float) -> float:
    """Fraction of energy saved by the cheapest point within ``max_accuracy_loss`` accuracy
    points of the most accurate one. ``points``: rows of (accuracy in points 0–100, energy)."""
    if not (math.isfinite(max_accuracy_loss) and max_accuracy_loss >= 0):
        raise InputError(f"max accuracy loss {max_accuracy_loss}: must be a finite number of "
                         "accuracy points >= 0")
    p = np.asarray(points, dtype=float)
    p = p[np.all(np.isfinite(p), axis=1)]
    if len(p) == 0:
        return math.nan
    best = int(np.argmax(p[:, 0] - 1e-12 * p[:, 1]))  # most accurate; cheapest among ties
    ok = p[:, 0] >= p[best, 0] - max_accuracy_loss
    return float(1.0 - p[ok, 1].min() / p[best, 1]) if p[best, 1] > 0 else math.nan
