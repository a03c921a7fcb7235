"""The mutation graph of a benchmark: which cells are one edit away from which.

A cell's *forward* mutants are the cells the benchmark holds that one edit of it gives: an
edge flipped, an interior op changed, or a vertex inserted on a path (fed by one earlier
vertex, feeding one later one), each pruned. The graph is directed: removing one edge can
prune several vertices at once (the most accurate 5V cell is one edit from input→output), but
nothing single-step grows them back. A cell's *reverse* mutants are the cells of which it is a
forward mutant: with them a search can walk back up from a small cell to the large cells that
reduce to it, which the forward edits alone reach only through several poor intermediates.

The whole graph is built once per benchmark (a cached, weakly held value) with a pruning on
bit masks instead of ``ModelSpec``, so a 2,532-cell table takes well under a second; a cell
whose pruned form the table stores in another vertex order is resolved through the iso-hash.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecnas.errors import InputError
from ecnas.space import OPS, ModelSpec
from ecnas.space.spec import MAX_EDGES


@dataclass(frozen=True)
class MutationGraph:
    """Per architecture index: its forward mutants and its reverse mutants (sorted indices of
    the benchmark, never the cell itself)."""

    forward: tuple[np.ndarray, ...]
    reverse: tuple[np.ndarray, ...]

    def two_step(self, a: int) -> np.ndarray:
        """Cells two forward edits from ``a`` (``a`` and its forward mutants included)."""
        nb = self.forward[a]
        if not len(nb):
            return nb
        return np.unique(np.concatenate([self.forward[int(b)] for b in nb]))


_GRAPHS: weakref.WeakKeyDictionary[Any, MutationGraph] = weakref.WeakKeyDictionary()


def mutation_graph(bench: Any) -> MutationGraph:
    """The benchmark's mutation graph (see the module's docs), built on first use."""
    got = _GRAPHS.get(bench)
    if got is None:
        got = _GRAPHS[bench] = _build(bench)
    return got


def _build(bench: Any) -> MutationGraph:
    lay = bench.layout
    index = dict(bench._spec_index)  # pruned key -> index; misses resolved once via the hash
    matrices, op_lists = lay.matrix.tolist(), lay.ops.tolist()
    largest = max(str(o).count(",") + 1 for o in op_lists)
    forward: list[np.ndarray] = []
    for a, (matrix, op_text) in enumerate(zip(matrices, op_lists, strict=True)):
        rows, ops = _cell(str(matrix), str(op_text))
        found: set[int] = set()
        for child_rows, child_ops in _edits(rows, ops, largest):
            # an op changed leaves the (pruned) graph as it is: its key needs no pruning
            key = (f"{matrix}|{','.join(child_ops)}" if child_rows is rows
                   else _pruned_key(child_rows, child_ops))
            if key is None:
                continue
            c = index.get(key)
            if c is None:
                c = index[key] = _by_hash(bench, key)
            if c >= 0 and c != a:
                found.add(c)
        forward.append(np.array(sorted(found), dtype=int))
    reverse_sets: list[list[int]] = [[] for _ in forward]
    for a, nb in enumerate(forward):
        for b in nb.tolist():
            reverse_sets[b].append(a)
    reverse = [np.array(sorted(r), dtype=int) for r in reverse_sets]
    return MutationGraph(tuple(forward), tuple(reverse))


def _cell(matrix: str, ops: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """A stored cell as one successor bit mask per vertex and its ops."""
    labels = tuple(ops.split(","))
    n = len(labels)
    rows = tuple(sum(1 << j for j in range(n) if matrix[i * n + j] == "1") for i in range(n))
    return rows, labels


def _edits(rows: tuple[int, ...], ops: tuple[str, ...],
           largest: int) -> Iterator[tuple[tuple[int, ...], tuple[str, ...]]]:
    """Every single edit of a cell (unpruned): edge flips, interior op changes and, below the
    largest cell the benchmark holds, a vertex inserted on a path."""
    n = len(ops)
    for i in range(n):
        for j in range(i + 1, n):
            flipped = list(rows)
            flipped[i] ^= 1 << j
            yield tuple(flipped), ops
    for v in range(1, n - 1):
        for op in OPS:
            if op != ops[v]:
                yield rows, (*ops[:v], op, *ops[v + 1:])
    if n >= largest:
        return
    # a vertex inserted at `pos`, fed by vertex i < pos and feeding vertex j >= pos (old order):
    # single edits of a pruned cell never grow it otherwise (a dangling vertex is pruned)
    for pos in range(1, n):
        shifted = []
        for r in rows:  # successors at or after pos move one place on
            low = r & ((1 << pos) - 1)
            shifted.append(low | ((r >> pos) << (pos + 1)))
        for op in OPS:
            grown_ops = (*ops[:pos], op, *ops[pos:])
            for i in range(pos):
                for j in range(pos, n):
                    grown = shifted[:pos] + [1 << (j + 1)] + shifted[pos:]
                    grown[i] |= 1 << pos
                    yield tuple(grown), grown_ops


def _pruned_key(rows: tuple[int, ...], ops: tuple[str, ...]) -> str | None:
    """The benchmark's spec key ('0'/'1' matrix + "|" + ops) of the pruned cell; None when
    input cannot reach output. Rows are upper-triangular, so one pass each way suffices."""
    n = len(rows)
    reach = 1
    for v in range(n):
        if reach >> v & 1:
            reach |= rows[v]
    if not reach >> (n - 1) & 1:
        return None
    back = 1 << (n - 1)
    for v in range(n - 2, -1, -1):
        if rows[v] & back:
            back |= 1 << v
    both = reach & back
    if both == (1 << n) - 1:  # nothing pruned (most edits): each row's bits, lowest first
        bits = "".join(format(r, f"0{n}b")[::-1] for r in rows)
        return bits + "|" + ",".join(ops)
    keep = [v for v in range(n) if both >> v & 1]
    bits = "".join("1" if rows[i] >> j & 1 else "0" for i in keep for j in keep)
    return bits + "|" + ",".join(ops[v] for v in keep)


def _by_hash(bench: Any, key: str) -> int:
    """Index of a pruned cell the table stores in another vertex order; -1 when the benchmark
    does not hold it (or it breaks the space's rules)."""
    bits, ops = key.split("|")
    if bits.count("1") > MAX_EDGES:  # breaks the space's rules: no need to build it
        return -1
    spec = ModelSpec(bits, ops)
    if not spec.valid:
        return -1
    try:
        return int(bench._arch_index(spec))
    except InputError:
        return -1
