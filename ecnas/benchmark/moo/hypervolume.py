"""Exact hypervolume (minimization) in 2-D and 3-D, and each point's contribution."""

from __future__ import annotations

import numpy as np

from ecnas.benchmark.moo.pareto import pareto_mask
from ecnas.errors import InputError


def _clip(points: np.ndarray, ref: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=float).reshape(-1, len(ref))
    p = p[np.all(p < ref, axis=1)]  # points outside the reference box add nothing
    return p[pareto_mask(p)] if len(p) else p


def _hv2(p: np.ndarray, ref: np.ndarray) -> float:
    if len(p) == 0:
        return 0.0
    p = p[np.lexsort((p[:, 1], p[:, 0]))]
    volume, best_y = 0.0, ref[1]
    for x, y in p:
        if y < best_y:
            volume += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(volume)


def _hv3(p: np.ndarray, ref: np.ndarray) -> float:
    if len(p) == 0:
        return 0.0
    p = p[np.argsort(p[:, 2], kind="stable")]
    volume = 0.0
    for i in range(len(p)):
        z_next = p[i + 1, 2] if i + 1 < len(p) else ref[2]
        if z_next > p[i, 2]:
            volume += _hv2(p[: i + 1, :2], ref[:2]) * (z_next - p[i, 2])
    return float(volume)


def hypervolume(points: np.ndarray, ref: np.ndarray | tuple[float, ...]) -> float:
    """Volume dominated by ``points`` and bounded by ``ref`` (2 or 3 objectives)."""
    r = np.asarray(ref, dtype=float)
    if r.ndim != 1 or len(r) not in (2, 3):
        raise InputError(f"hypervolume: exact in 2-D and 3-D only, got {r.size} objectives")
    p = _clip(points, r)
    return _hv2(p, r) if len(r) == 2 else _hv3(p, r)


def _contributions_2d_front(p: np.ndarray, ref: np.ndarray) -> np.ndarray | None:
    """Exclusive contributions of mutually non-dominated, distinct 2-D points inside the
    reference box, by one sort (SMS-EMOA's case); None where that shortcut does not apply."""
    if p.shape[1] != 2 or not np.all(p < ref) or not pareto_mask(p).all():
        return None
    order = np.lexsort((p[:, 1], p[:, 0]))
    q = p[order]
    if len(q) > 1 and (np.any(np.diff(q[:, 0]) <= 0) or np.any(np.diff(q[:, 1]) >= 0)):
        return None  # ties: leave them to the general definition
    x_next = np.append(q[1:, 0], ref[0])
    y_prev = np.insert(q[:-1, 1], 0, ref[1])
    out = np.empty(len(p))
    out[order] = (x_next - q[:, 0]) * (y_prev - q[:, 1])
    return out


def contributions(points: np.ndarray, ref: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Exclusive hypervolume contribution of each point (0 for dominated ones)."""
    p = np.asarray(points, dtype=float)
    fast = _contributions_2d_front(p, np.asarray(ref, dtype=float)) if p.ndim == 2 and len(p) \
        else None
    if fast is not None:
        return fast
    total = hypervolume(p, ref)
    out = np.empty(len(p))
    for i in range(len(p)):
        out[i] = total - hypervolume(np.delete(p, i, axis=0), ref)
    return out
