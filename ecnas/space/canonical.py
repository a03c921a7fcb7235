"""Canonical forms of NAS-Bench-101 cells, vectorised with numpy (no torch).

A cell with V vertices is coded as NAS-Bench-101's ``generate_graphs`` does: bit
``y*(y-1)/2 + x`` of an integer is the edge x→y, and op labels 0..2 (conv3x3, conv1x1,
max-pool) of the interior vertices read as a base-3 number, vertex 1 most significant
(``itertools.product`` order). NAS-Bench-101 walks V, then the edge code, then the labeling in
ascending order and keeps the first pair of every iso-class; that first pair is the
*canonical* one here:

* the canonical edge code of a DAG is the smallest code among its vertex renumberings that keep
  input first, output last and the matrix upper-triangular;
* the canonical labeling is the smallest labeling in its orbit under the automorphisms of the
  canonical DAG.

Every iso-class has exactly one canonical (code, labeling) pair, which is what makes both the
enumeration (emit canonical pairs) and the sampler (accept a uniform raw pair iff canonical)
exact.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ecnas.errors import InputError
from ecnas.space.spec import ModelSpec

NUM_OPS = 3


@dataclass(frozen=True)
class VertexTables:
    """Precomputed bit and label permutations for cells of ``num_vertices`` vertices."""

    num_vertices: int
    edges: tuple[tuple[int, int], ...]  # (x, y) of each bit, by bit index
    perms: tuple[tuple[int, ...], ...]  # old vertex -> new vertex; identity first
    bad_masks: np.ndarray  # per perm: edges that would point backwards after renumbering
    moves: tuple[tuple[np.ndarray, np.ndarray], ...]  # per perm: (old bits, new bits)
    label_codes: np.ndarray  # all labelings' codes 0..3^(V-2)-1 (= their index)
    label_perm: np.ndarray  # [perm, labeling code] -> code of the renumbered labeling
    out_masks: tuple[int, ...]  # per non-output vertex: bits of its out-edges
    in_masks: tuple[int, ...]  # per non-input vertex: bits of its in-edges

    @property
    def num_bits(self) -> int:
        """Bits of an edge code: the possible edges ``V(V-1)/2``."""
        return len(self.edges)

    @property
    def num_labelings(self) -> int:
        """Labelings of the interior vertices: ``3^(V-2)``."""
        return int(self.label_codes.size)


def bit_index(x: int, y: int) -> int:
    """The bit of an edge code that stands for the edge x→y (x < y): ``y(y-1)/2 + x``."""
    return y * (y - 1) // 2 + x


def vertex_tables(num_vertices: int) -> VertexTables:
    """The renumbering tables for cells of ``num_vertices`` vertices: every permutation of the
    interior vertices, how each moves the edge bits and the labelings, and each vertex's in- and
    out-edge masks."""
    v = num_vertices
    edges = tuple((x, y) for y in range(1, v) for x in range(y))
    interior = list(range(1, v - 1))
    perms = tuple((0, *p, v - 1) for p in itertools.permutations(interior))
    bad, moves = [], []
    for sigma in perms:
        mask = 0
        old, new = [], []
        for b, (x, y) in enumerate(edges):
            sx, sy = sigma[x], sigma[y]
            if sx > sy:
                mask |= 1 << b
            else:
                old.append(b)
                new.append(bit_index(sx, sy))
        bad.append(mask)
        moves.append((np.array(old, dtype=np.int64), np.array(new, dtype=np.int64)))
    k = v - 2
    # k == 0 (input→output only) has exactly one, empty, labeling
    labelings = np.array(list(itertools.product(range(NUM_OPS), repeat=k)), dtype=np.int64)
    labelings = labelings.reshape(NUM_OPS**k, k)
    weights = NUM_OPS ** np.arange(k - 1, -1, -1, dtype=np.int64)
    label_codes = labelings @ weights if k else np.zeros(1, dtype=np.int64)
    label_perm = np.empty((len(perms), label_codes.size), dtype=np.int64)
    for i, sigma in enumerate(perms):
        if k == 0:
            label_perm[i] = 0
            continue
        # the renumbered labeling puts old vertex u's op at position sigma[u]
        permuted = np.empty_like(labelings)
        for u in range(1, v - 1):
            permuted[:, sigma[u] - 1] = labelings[:, u - 1]
        label_perm[i] = permuted @ weights
    out_masks = tuple(
        sum(1 << bit_index(i, j) for j in range(i + 1, v)) for i in range(v - 1)
    )
    in_masks = tuple(sum(1 << bit_index(i, j) for i in range(j)) for j in range(1, v))
    return VertexTables(v, edges, perms, np.array(bad, dtype=np.int64), tuple(moves),
                        label_codes, label_perm, out_masks, in_masks)


def popcount(codes: np.ndarray, num_bits: int) -> np.ndarray:
    """The number of set bits among the low ``num_bits`` bits of each code (edges per DAG)."""
    counts = np.zeros(codes.shape, dtype=np.int64)
    for b in range(num_bits):
        counts += (codes >> b) & 1
    return counts


def full_dag_codes(t: VertexTables, max_edges: int) -> np.ndarray:
    """Edge codes (ascending) of DAGs that prune to themselves, with at most ``max_edges`` edges.

    Upper-triangular by construction; "full" means every vertex but the output has an
    out-edge and every vertex but the input an in-edge, so every vertex lies on an
    input→output path (NAS-Bench-101's ``is_full_dag``).
    """
    codes = np.arange(1 << t.num_bits, dtype=np.int64)
    codes = codes[popcount(codes, t.num_bits) <= max_edges]
    keep = np.ones(codes.shape, dtype=bool)
    for mask in (*t.out_masks, *t.in_masks):
        keep &= (codes & mask) != 0
    return codes[keep]


def permute_codes(codes: np.ndarray, t: VertexTables, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(valid, new codes) after renumbering every DAG in ``codes`` by permutation ``k``."""
    valid = (codes & t.bad_masks[k]) == 0
    old, new = t.moves[k]
    out = np.zeros(codes.shape, dtype=np.int64)
    for b_old, b_new in zip(old.tolist(), new.tolist(), strict=True):
        out |= ((codes >> b_old) & 1) << b_new
    return valid, out


def canonical_codes(codes: np.ndarray, t: VertexTables) -> np.ndarray:
    """Smallest code among the valid renumberings of each DAG."""
    canon = codes.copy()
    for k in range(1, len(t.perms)):
        valid, new = permute_codes(codes, t, k)
        np.minimum(canon, np.where(valid, new, canon), out=canon)
    return canon


def automorphisms(canon: np.ndarray, t: VertexTables) -> np.ndarray:
    """Boolean [perm, dag]: renumbering ``perm`` maps canonical DAG ``dag`` onto itself."""
    out = np.zeros((len(t.perms), canon.size), dtype=bool)
    out[0] = True
    for k in range(1, len(t.perms)):
        valid, new = permute_codes(canon, t, k)
        out[k] = valid & (new == canon)
    return out


def canonical_labelings(aut: np.ndarray, t: VertexTables) -> np.ndarray:
    """Boolean over labeling codes: the labeling is the smallest of its orbit under ``aut``."""
    keep = np.ones(t.num_labelings, dtype=bool)
    for k in np.nonzero(aut)[0].tolist():
        if k:
            keep &= t.label_codes <= t.label_perm[k]
    return keep


def canonical_spec(spec: ModelSpec) -> ModelSpec:
    """The canonical renumbering of a valid cell: the matrix and labeling NAS-Bench-101's
    generator stored for its iso-class (and EC-NAS's ``generated_graphs_*.json`` holds).

    Isomorphic cells share a hash but not always a parameter count: the output channels'
    remainder goes to the *first* vertices feeding output, so renumbering can move a channel
    between ops (14% of the 6-vertex classes). NAS-Bench-101 and EC-NAS record the count of
    this canonical form.
    """
    if not spec.valid:
        raise InputError(f"invalid spec {spec.matrix_str} [{spec.ops_str}]: {spec.invalid_reason}")
    n = spec.num_vertices
    m = spec.matrix.tolist()
    edges = [(x, y) for x in range(n) for y in range(n) if m[x][y]]
    labels = spec.labels
    best: tuple[int, tuple[int, ...]] | None = None
    best_sigma: tuple[int, ...] = tuple(range(n))
    for p in itertools.permutations(range(1, n - 1)):
        sigma = (0, *p, n - 1)
        if any(sigma[x] > sigma[y] for x, y in edges):
            continue
        code = sum(1 << bit_index(sigma[x], sigma[y]) for x, y in edges)
        new_labels = [0] * n
        for v in range(n):
            new_labels[sigma[v]] = labels[v]
        key = (code, tuple(new_labels))
        if best is None or key < best:
            best, best_sigma = key, sigma
    matrix = np.zeros((n, n), dtype=np.int8)
    for x, y in edges:
        matrix[best_sigma[x], best_sigma[y]] = 1
    ops = [""] * n
    for v in range(n):
        ops[best_sigma[v]] = spec.ops[v]
    matrix.setflags(write=False)
    return ModelSpec._from_pruned(matrix, tuple(ops))
