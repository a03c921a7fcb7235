"""Seeded sampling of cells, exactly uniform over the unique cells (iso-classes), no torch.

Rejection sampling over raw encodings: draw (V, edge code, labeling) uniformly from all
``full DAG × labeling`` triples with ≤ max_vertices vertices and ≤ max_edges edges, and keep a
draw iff it is the canonical encoding of its class (:mod:`ecnas.space.canonical`). Every class
has exactly one canonical encoding, so each kept draw is uniform over the classes, whatever
their number of automorphisms or vertex orderings. About a third of draws are kept in the
7-vertex space. Nothing is enumerated.
"""

from __future__ import annotations

import numpy as np

from ecnas.errors import InputError
from ecnas.space.canonical import (
    VertexTables,
    automorphisms,
    canonical_codes,
    full_dag_codes,
    vertex_tables,
)
from ecnas.space.enumeration import (
    check_limits,
    count_cells,
    decode_matrices,
    decode_ops,
)
from ecnas.space.spec import MAX_EDGES, MAX_VERTICES, ModelSpec

#: draws per batch; fixed so that the first k of n samples do not depend on n
BATCH = 4096


def _canonical_mask(codes: np.ndarray, labels: np.ndarray, t: VertexTables) -> np.ndarray:
    """True where (edge code, labeling) is its class's canonical encoding."""
    keep = canonical_codes(codes, t) == codes
    if not keep.any():
        return keep
    idx = np.nonzero(keep)[0]
    aut = automorphisms(codes[idx], t)
    lab = labels[idx]
    ok = np.ones(idx.size, dtype=bool)
    for k in range(1, len(t.perms)):
        ok &= ~aut[k] | (lab <= t.label_perm[k][lab])
    keep[idx] = ok
    return keep


def sample_cells(
    n: int, seed: int, max_vertices: int = MAX_VERTICES, max_edges: int = MAX_EDGES
) -> list[ModelSpec]:
    """``n`` distinct cells drawn uniformly at random, without replacement, from the unique
    valid cells with ≤ ``max_vertices`` vertices and ≤ ``max_edges`` edges.

    Distribution: each draw is exactly uniform over the iso-classes (the cells
    ``enumerate_cells`` lists, every class equally likely, not weighted by how many matrices
    encode it); repeats are skipped, which makes the result a uniform sample without
    replacement. The same ``seed`` gives the same cells in the same order, and the first k
    cells of ``sample_cells(n, seed)`` are ``sample_cells(k, seed)``. Cells are returned in
    their canonical (NAS-Bench-101) form.
    """
    max_vertices, max_edges = check_limits(max_vertices, max_edges)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise InputError(f"n must be a non-negative integer, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InputError(f"seed must be an integer, got {seed!r}")
    if n == 0:
        return []
    total = count_cells(max_vertices, max_edges)
    if n > total:
        raise InputError(
            f"asked for {n} distinct cells but the space (≤{max_vertices} vertices, "
            f"≤{max_edges} edges) has only {total}"
        )
    tables = [vertex_tables(v) for v in range(2, max_vertices + 1)]
    fulls = [full_dag_codes(t, max_edges) for t in tables]
    raw = np.array([f.size * t.num_labelings for f, t in zip(fulls, tables, strict=True)],
                   dtype=np.int64)
    bounds = np.cumsum(raw)
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, int, int]] = set()
    out: list[ModelSpec] = []
    while len(out) < n:
        draws = rng.integers(0, int(bounds[-1]), size=BATCH)
        group = np.searchsorted(bounds, draws, side="right")
        offset = draws - np.concatenate(([0], bounds[:-1]))[group]
        accepted = np.zeros(BATCH, dtype=bool)
        codes = np.zeros(BATCH, dtype=np.int64)
        labels = np.zeros(BATCH, dtype=np.int64)
        for g, (t, full) in enumerate(zip(tables, fulls, strict=True)):
            sel = np.nonzero(group == g)[0]
            if sel.size == 0:
                continue
            codes[sel] = full[offset[sel] // t.num_labelings]
            labels[sel] = offset[sel] % t.num_labelings
            accepted[sel] = _canonical_mask(codes[sel], labels[sel], t)
        for i in np.nonzero(accepted)[0].tolist():  # keep draw order: prefix-stable results
            key = (int(group[i]), int(codes[i]), int(labels[i]))
            if key in seen:
                continue
            seen.add(key)
            t = tables[key[0]]
            matrix = decode_matrices(np.array([key[1]], dtype=np.int64), t)[0]
            matrix.setflags(write=False)
            out.append(ModelSpec._from_pruned(matrix, decode_ops(key[2], t.num_vertices)))
            if len(out) == n:
                break
    return out
