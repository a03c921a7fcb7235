"""NAS-Bench-101 cell specs: adjacency + op labels, pruning and validity. No torch inside."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ecnas.errors import InputError

INPUT = "input"
OUTPUT = "output"
CONV3X3 = "conv3x3-bn-relu"
CONV1X1 = "conv1x1-bn-relu"
MAXPOOL3X3 = "maxpool3x3"
OPS = (CONV3X3, CONV1X1, MAXPOOL3X3)
#: integer labels used by NAS-Bench-101's hash and EC-NAS's graphs JSON
LABELS = {INPUT: -1, OUTPUT: -2, CONV3X3: 0, CONV1X1: 1, MAXPOOL3X3: 2}
OP_OF_LABEL = {v: k for k, v in LABELS.items()}

MAX_VERTICES = 7
MAX_EDGES = 9


def _as_matrix(matrix: object) -> np.ndarray:
    if isinstance(matrix, str):
        text = matrix.strip()
        n = int(round(len(text) ** 0.5))
        if n * n != len(text) or set(text) - {"0", "1"}:
            raise InputError(
                f"matrix {matrix!r} is not a row-major 0/1 string of a square adjacency"
            )
        return np.array([int(c) for c in text], dtype=np.int8).reshape(n, n)
    try:
        arr = np.asarray(matrix, dtype=np.int8)
    except (TypeError, ValueError) as exc:
        raise InputError(f"matrix is not a 0/1 array: {exc}") from None
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InputError(f"matrix must be square, got shape {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise InputError("matrix entries must be 0 or 1")
    return arr


def _as_ops(ops: object) -> list[str]:
    out: list[Any]  # checked against LABELS below
    if isinstance(ops, str):
        out = [o.strip() for o in ops.split(",")]
    else:
        out = [OP_OF_LABEL[int(o)] if isinstance(o, (int, np.integer)) and o in OP_OF_LABEL
               else o for o in cast("Iterable[object]", ops)]
    for op in out:
        if op not in LABELS:
            raise InputError(
                f"unknown op {op!r}; expected one of {', '.join(LABELS)} (or labels -1, -2, 0, 1, 2)"
            )
    return list(out)


def prune(matrix: np.ndarray, ops: Sequence[str]) -> tuple[np.ndarray, list[str]] | None:
    """Remove vertices not on an input→output path. None if input cannot reach output."""
    n = matrix.shape[0]
    if n == 0:
        return None
    fwd = {0}
    stack = [0]
    while stack:
        v = stack.pop()
        for w in np.nonzero(matrix[v])[0]:
            if int(w) not in fwd:
                fwd.add(int(w))
                stack.append(int(w))
    bwd = {n - 1}
    stack = [n - 1]
    while stack:
        v = stack.pop()
        for u in np.nonzero(matrix[:, v])[0]:
            if int(u) not in bwd:
                bwd.add(int(u))
                stack.append(int(u))
    if n - 1 not in fwd:
        return None
    keep = sorted(fwd & bwd)
    return matrix[np.ix_(keep, keep)].copy(), [ops[i] for i in keep]


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A cell: upper-triangular 0/1 adjacency and op labels (``input`` first, ``output`` last).

    ``original_*`` keep what was given; ``matrix``/``ops`` are pruned. ``valid`` is False when
    the spec breaks the space's rules; ``invalid_reason`` then says which.
    """

    original_matrix: np.ndarray
    original_ops: tuple[str, ...]
    matrix: np.ndarray = field(repr=False)
    ops: tuple[str, ...] = field(repr=False)
    valid: bool = True
    invalid_reason: str = ""

    def __init__(self, matrix: object, ops: object, *, max_vertices: int = MAX_VERTICES,
                 max_edges: int = MAX_EDGES) -> None:
        m = _as_matrix(matrix)
        o = _as_ops(ops)
        if len(o) != m.shape[0]:
            raise InputError(f"matrix has {m.shape[0]} vertices but {len(o)} ops were given")
        set_ = object.__setattr__
        set_(self, "original_matrix", m)
        set_(self, "original_ops", tuple(o))
        reason = _rule_violation(m, o)
        pruned = None if reason else prune(m, o)
        if not reason and pruned is None:
            reason = "input and output are not connected"
        if pruned is None:
            set_(self, "matrix", m)
            set_(self, "ops", tuple(o))
        else:
            set_(self, "matrix", pruned[0])
            set_(self, "ops", tuple(pruned[1]))
            n, e = pruned[0].shape[0], int(pruned[0].sum())
            if n > max_vertices:
                reason = f"{n} vertices after pruning (at most {max_vertices})"
            elif e > max_edges:
                reason = f"{e} edges after pruning (at most {max_edges})"
        set_(self, "valid", not reason)
        set_(self, "invalid_reason", reason)

    @classmethod
    def _from_pruned(cls, matrix: np.ndarray, ops: tuple[str, ...]) -> ModelSpec:
        """A spec already known valid and pruned (the enumeration's canonical cells).

        Skips the checks ``__init__`` runs: building 423k cells must take seconds, not minutes.
        ``matrix`` should be read-only; it is shared as both original and pruned matrix.
        """
        spec = object.__new__(cls)
        set_ = object.__setattr__
        set_(spec, "original_matrix", matrix)
        set_(spec, "original_ops", ops)
        set_(spec, "matrix", matrix)
        set_(spec, "ops", ops)
        set_(spec, "valid", True)
        set_(spec, "invalid_reason", "")
        return spec

    # -- views used by the table contract and the CLI
    @property
    def num_vertices(self) -> int:
        """Vertices of the pruned cell, input and output included."""
        return int(self.matrix.shape[0])

    @property
    def num_edges(self) -> int:
        """Edges of the pruned cell."""
        return int(self.matrix.sum())

    @property
    def matrix_str(self) -> str:
        """The pruned matrix as a row-major 0/1 string (the table's ``matrix`` column)."""
        return "".join(str(int(x)) for x in self.matrix.reshape(-1))

    @property
    def ops_str(self) -> str:
        """The pruned ops joined by commas (the table's ``ops`` column)."""
        return ",".join(self.ops)

    @property
    def labels(self) -> list[int]:
        """The pruned ops as NAS-Bench-101's integer labels (input -1, output -2, conv3x3 0,
        conv1x1 1, max-pool 2), as the iso-hash and EC-NAS's graphs use them."""
        return [LABELS[o] for o in self.ops]

    def hash(self) -> str:
        """NAS-Bench-101 iso-hash of the pruned cell (raises InputError if invalid)."""
        if not self.valid:
            raise InputError(f"invalid spec: {self.invalid_reason}")
        from ecnas.space.hashing import iso_hash

        return iso_hash(self.matrix, self.labels)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelSpec):
            return NotImplemented
        return self.ops == other.ops and np.array_equal(self.matrix, other.matrix)

    def __hash__(self) -> int:
        return hash((self.matrix_str, self.ops))

    def __repr__(self) -> str:
        return f"ModelSpec(matrix={self.matrix_str!r}, ops={self.ops_str!r}, valid={self.valid})"


def _rule_violation(m: np.ndarray, ops: list[str]) -> str:
    n = m.shape[0]
    if n < 2:
        return "a cell needs at least input and output"
    if np.any(np.tril(m)):
        return "matrix must be upper-triangular (a DAG in topological order)"
    if ops[0] != INPUT or ops[-1] != OUTPUT:
        return "ops must start with 'input' and end with 'output'"
    inner = ops[1:-1]
    if INPUT in inner or OUTPUT in inner:
        return "'input' and 'output' may appear only first and last"
    return ""
