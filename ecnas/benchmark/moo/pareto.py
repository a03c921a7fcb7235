"""Non-dominated sorting (all objectives minimized)."""

from __future__ import annotations

import numpy as np


def nondominated_sort(points: np.ndarray) -> np.ndarray:
    """Front rank of every point (0 = non-dominated), by repeated peeling; O(n² · fronts)."""
    p = np.asarray(points, dtype=float)
    n = len(p)
    ranks = np.full(n, -1, dtype=int)
    if n == 0:
        return ranks
    # dom[i, j]: i dominates j
    le = np.all(p[:, None, :] <= p[None, :, :], axis=2)
    lt = np.any(p[:, None, :] < p[None, :, :], axis=2)
    dom = le & lt
    remaining = np.ones(n, dtype=bool)
    rank = 0
    while remaining.any():
        dominated = (dom[remaining][:, remaining]).any(axis=0)
        idx = np.nonzero(remaining)[0][~dominated]
        ranks[idx] = rank
        remaining[idx] = False
        rank += 1
    return ranks


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """True for the non-dominated points (the first front only: no peeling)."""
    p = np.asarray(points, dtype=float)
    if len(p) == 0:
        return np.zeros(0, dtype=bool)
    if p.shape[1] == 2:  # sort by x (then y): a point is on the front iff its y beats all before
        order = np.lexsort((p[:, 1], p[:, 0]))
        y = p[order, 1]
        best_before = np.concatenate(([np.inf], np.minimum.accumulate(y)[:-1]))
        keep = y < best_before
        # exact duplicates of a front point are not dominated either
        same = np.concatenate(([False], np.all(p[order][1:] == p[order][:-1], axis=1)))
        for i in range(1, len(keep)):
            if same[i] and keep[i - 1]:
                keep[i] = True
        mask = np.zeros(len(p), dtype=bool)
        mask[order] = keep
        return mask
    le = np.all(p[:, None, :] <= p[None, :, :], axis=2)
    lt = np.any(p[:, None, :] < p[None, :, :], axis=2)
    return ~(le & lt).any(axis=0)


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance within one front (boundary points get infinity)."""
    p = np.asarray(points, dtype=float)
    n, m = p.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(p[:, k], kind="stable")
        span = p[order[-1], k] - p[order[0], k]
        d[order[0]] = d[order[-1]] = np.inf
        if span > 0:
            d[order[1:-1]] += (p[order[2:], k] - p[order[:-2], k]) / span
    return d
