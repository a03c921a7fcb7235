"""NAS-Bench-101's iso-hash: isomorphic cells share one key, equal to NAS-Bench-101's/EC-NAS's."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def iso_hash(matrix: np.ndarray | Sequence[Sequence[int]], labels: Sequence[int]) -> str:
    """Weisfeiler-Lehman-style hash of a pruned cell with integer labels (-1 in, -2 out, 0..2)."""
    # Plain lists, not numpy: this runs once per cell over spaces of 423k cells.
    m = matrix.tolist() if isinstance(matrix, np.ndarray) else [list(r) for r in matrix]
    n = len(m)
    preds = [[u for u in range(n) if m[u][v]] for v in range(n)]
    succs = [[w for w in range(n) if m[v][w]] for v in range(n)]
    hashes = [_md5(str((len(succs[v]), len(preds[v]), int(labels[v])))) for v in range(n)]
    for _ in range(n):
        hashes = [
            _md5(
                "".join(sorted([hashes[u] for u in preds[v]]))
                + "|"
                + "".join(sorted([hashes[w] for w in succs[v]]))
                + "|"
                + hashes[v]
            )
            for v in range(n)
        ]
    return _md5(str(sorted(hashes)))
