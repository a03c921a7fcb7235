"""NAS-Bench-101's iso-hash: isomorphic cells share one key, equal to NAS-Bench-101's/EC-NAS's."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def iso_hash(matrix: np.ndarray, labels: Sequence[int]) -> str:
    """Weisfeiler-Lehman-style hash of a pruned cell with integer labels (-1 in, -2 out, 0..2)."""
    m = np.asarray(matrix)
    n = m.shape[0]
    out_deg = m.sum(axis=1).tolist()
    in_deg = m.sum(axis=0).tolist()
    hashes = [_md5(str((out_deg[v], in_deg[v], int(labels[v])))) for v in range(n)]
    preds = [np.nonzero(m[:, v])[0].tolist() for v in range(n)]
    succs = [np.nonzero(m[v, :])[0].tolist() for v in range(n)]
    for _ in range(n):
        hashes = [
            _md5(
                "".join(sorted(hashes[u] for u in preds[v]))
                + "|"
                + "".join(sorted(hashes[w] for w in succs[v]))
                + "|"
                + hashes[v]
            )
            for v in range(n)
        ]
    return _md5(str(sorted(hashes)))
