"""Enumeration of every unique valid NAS-Bench-101 cell up to V vertices and E edges.

Unique by exact isomorphism (input and output fixed), computed with canonical forms
(:mod:`ecnas.space.canonical`) rather than by hashing every labelled matrix as
NAS-Bench-101's ``generate_graphs`` does. The result is the same set in the same order:
the iso-hash is isomorphism-invariant, and the counts agree (2,532 cells for V ≤ 5, the
EC-NAS 5V set; 423,624 for V ≤ 7, NAS-Bench-101's count), so every cell has its own hash.
Order: vertices, then edge code, then labeling, ascending — NAS-Bench-101's insertion order —
and each cell is the first matrix/labeling NAS-Bench-101 met for its class, so the matrices
equal those in EC-NAS's ``generated_graphs_*.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecnas.errors import InputError
from ecnas.space.canonical import (
    VertexTables,
    automorphisms,
    canonical_codes,
    canonical_labelings,
    full_dag_codes,
    vertex_tables,
)
from ecnas.space.spec import INPUT, MAX_EDGES, MAX_VERTICES, OPS, OUTPUT, ModelSpec


@dataclass(frozen=True)
class CanonicalCells:
    """The unique cells with one vertex count, as parallel arrays (ascending order)."""

    num_vertices: int
    edge_codes: np.ndarray  # canonical edge code per cell
    label_codes: np.ndarray  # canonical labeling code per cell

    def __len__(self) -> int:
        return int(self.edge_codes.size)


def check_limits(max_vertices: object, max_edges: object) -> tuple[int, int]:
    """``(max_vertices, max_edges)`` as ints when both are integers within the NAS-Bench-101
    space (2..7 vertices, 1..9 edges); else an :class:`~ecnas.errors.InputError`."""
    for name, value, lo, hi in (
        ("max_vertices", max_vertices, 2, MAX_VERTICES),
        ("max_edges", max_edges, 1, MAX_EDGES),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise InputError(
                f"{name} must be an integer from {lo} to {hi} (the NAS-Bench-101 space), got {value!r}"
            )
    return int(max_vertices), int(max_edges)  # type: ignore[call-overload]


def canonical_cells(t: VertexTables, max_edges: int) -> CanonicalCells:
    """Every unique cell with exactly ``t.num_vertices`` vertices and ≤ ``max_edges`` edges."""
    full = full_dag_codes(t, max_edges)
    dags = np.unique(canonical_codes(full, t))  # unique unlabelled classes, ascending
    aut = automorphisms(dags, t)
    kept: dict[bytes, np.ndarray] = {}  # many DAGs share one automorphism group
    edge_parts, label_parts = [], []
    for j in range(dags.size):
        key = aut[:, j].tobytes()
        if key not in kept:
            kept[key] = t.label_codes[canonical_labelings(aut[:, j], t)]
        labels = kept[key]
        edge_parts.append(np.full(labels.size, dags[j], dtype=np.int64))
        label_parts.append(labels)
    if not edge_parts:
        empty = np.zeros(0, dtype=np.int64)
        return CanonicalCells(t.num_vertices, empty, empty)
    return CanonicalCells(t.num_vertices, np.concatenate(edge_parts), np.concatenate(label_parts))


def decode_matrices(codes: np.ndarray, t: VertexTables) -> np.ndarray:
    """[cell, V, V] int8 adjacency matrices of edge codes."""
    v = t.num_vertices
    mats = np.zeros((codes.size, v, v), dtype=np.int8)
    for b, (x, y) in enumerate(t.edges):
        mats[:, x, y] = (codes >> b) & 1
    return mats


def decode_ops(label_code: int, num_vertices: int) -> tuple[str, ...]:
    """The ops of a cell with ``num_vertices`` vertices from its labeling code (base 3, vertex 1
    most significant), input and output included."""
    k = num_vertices - 2
    inner = []
    for _ in range(k):
        label_code, digit = divmod(label_code, len(OPS))
        inner.append(OPS[digit])
    return (INPUT, *reversed(inner), OUTPUT)


def specs_of(cells: CanonicalCells, t: VertexTables) -> list[ModelSpec]:
    """The cells as :class:`ModelSpec` s, in order; each distinct DAG's matrix is decoded once
    and shared, read-only, by its labelings."""
    dags, inverse = np.unique(cells.edge_codes, return_inverse=True)
    mats = decode_matrices(dags, t)
    mats.setflags(write=False)  # shared by every labeling of a DAG
    ops_of: dict[int, tuple[str, ...]] = {}
    out = []
    for i, lab in zip(inverse.tolist(), cells.label_codes.tolist(), strict=True):
        ops = ops_of.get(lab)
        if ops is None:
            ops = ops_of[lab] = decode_ops(lab, t.num_vertices)
        out.append(ModelSpec._from_pruned(mats[i], ops))
    return out


def enumerate_cells(max_vertices: int = MAX_VERTICES, max_edges: int = MAX_EDGES) -> list[ModelSpec]:
    """All unique valid cells with ≤ ``max_vertices`` vertices and ≤ ``max_edges`` edges.

    Deterministic, in NAS-Bench-101's order; every spec is pruned and valid and no two share an
    iso-hash. ``enumerate_cells(5, 9)`` gives EC-NAS's 2,532 5V cells in milliseconds;
    ``enumerate_cells()`` gives NAS-Bench-101's 423,624 cells in a few seconds (see
    docs/space.md for measured times).
    """
    max_vertices, max_edges = check_limits(max_vertices, max_edges)
    out: list[ModelSpec] = []
    for v in range(2, max_vertices + 1):
        t = vertex_tables(v)
        out.extend(specs_of(canonical_cells(t, max_edges), t))
    return out


def count_cells(max_vertices: int = MAX_VERTICES, max_edges: int = MAX_EDGES) -> int:
    """How many cells ``enumerate_cells`` returns, without building them (well under a second)."""
    max_vertices, max_edges = check_limits(max_vertices, max_edges)
    return sum(len(canonical_cells(vertex_tables(v), max_edges)) for v in range(2, max_vertices + 1))
