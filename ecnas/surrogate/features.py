"""Cell features for the surrogates: the network's analytic cost plus the cell's graph.

Everything is computed in numpy for whole batches of cells (grouped by vertex count), so that
the 423k cells of the 7-vertex space featurize in seconds; ``ecnas.space.cost`` computes the
same parameter and FLOP counts one cell at a time (the tests check they agree).

The features describe the work of one training step, so they scale to any cell space without
constants tuned to one data set: multiply-adds per op type, activation elements written
(memory traffic of BN, ReLU, pooling, concatenation), kernel launches (layers), parameters, plus
graph counts (vertices, edges, ops, depth). ``graph_bits`` adds EC-NAS's own encoding (the
upper-triangular adjacency and one-hot ops, padded to 7 vertices) for the learned models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ecnas.errors import InputError
from ecnas.space.cost import NetworkShape, spatial_sizes
from ecnas.space.spec import CONV1X1, CONV3X3, INPUT, MAX_VERTICES, MAXPOOL3X3, OUTPUT, ModelSpec

_OP_CODE = {CONV3X3: 0, CONV1X1: 1, MAXPOOL3X3: 2}
_KERNEL = np.array([3, 1, 0])  # by op code

#: the physics features, in column order (see ``cell_features``)
PHYSICS = (
    "log_params", "log_macs", "log_macs_conv3x3", "log_macs_conv1x1", "log_activations",
    "log_pool_elements", "layers", "vertices", "edges", "n_conv3x3", "n_conv1x1", "n_maxpool",
    "depth", "output_fan_in", "input_fan_out",
)
#: padded graph encoding: 21 adjacency bits + 5 interior vertices x 3 ops
GRAPH_BITS = MAX_VERTICES * (MAX_VERTICES - 1) // 2 + (MAX_VERTICES - 2) * 3


@dataclass(frozen=True)
class CellBatch:
    """Pruned cells as arrays: ``matrices[i]`` (n×n uint8) and ``codes[i]`` (interior op codes)."""

    matrices: list[np.ndarray]
    codes: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.matrices)


def _is_pruned(m: np.ndarray) -> bool:
    # In an upper-triangular DAG, every vertex lies on an input→output path iff every
    # non-input vertex has a predecessor and every non-output vertex has a successor.
    n = m.shape[0]
    if n < 2 or not np.array_equal(m, np.triu(m, 1)):
        return False
    return bool(m[:, 1:].sum(0).all() and m[:-1, :].sum(1).all())


def batch_from_strings(matrices: Sequence[str], ops: Sequence[str]) -> CellBatch:
    """Parse the table's ``matrix``/``ops`` strings; cells that are not pruned go through
    ``ModelSpec`` (slow path) and invalid ones raise ``InputError`` naming the cell."""
    mats: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for mstr, ostr in zip(matrices, ops, strict=True):
        key = (mstr, ostr)
        hit = cache.get(key)
        if hit is None:
            hit = _parse_one(mstr, ostr)
            cache[key] = hit
        mats.append(hit[0])
        codes.append(hit[1])
    return CellBatch(mats, codes)


def _parse_one(mstr: str, ostr: str) -> tuple[np.ndarray, np.ndarray]:
    labels = [s.strip() for s in str(ostr).split(",")]
    n = len(labels)
    mstr = str(mstr)
    if len(mstr) != n * n or set(mstr) - {"0", "1"}:
        raise InputError(f"matrix {mstr!r} is not a {n}x{n} 0/1 string for ops {ostr!r}")
    m = np.frombuffer(mstr.encode(), dtype=np.uint8).reshape(n, n) - ord("0")
    ok = labels[0] == INPUT and labels[-1] == OUTPUT and all(o in _OP_CODE for o in labels[1:-1])
    if not (ok and _is_pruned(m)):
        try:
            spec = ModelSpec(m, labels)
        except InputError as exc:
            raise InputError(f"cell {mstr} [{ostr}]: {exc}") from None
        if not spec.valid:
            raise InputError(f"cell {mstr} [{ostr}] is invalid: {spec.invalid_reason}")
        m, labels = spec.matrix.astype(np.uint8), list(spec.ops)
    return m, np.array([_OP_CODE[o] for o in labels[1:-1]], dtype=np.int64)


def batch_from_specs(specs: Sequence[ModelSpec]) -> CellBatch:
    """Cells from ``ModelSpec`` objects (already pruned); invalid specs raise ``InputError``."""
    mats, codes = [], []
    for s in specs:
        if not s.valid:
            raise InputError(f"invalid spec {s.matrix_str} [{s.ops_str}]: {s.invalid_reason}")
        mats.append(np.asarray(s.matrix, dtype=np.uint8))
        codes.append(np.array([_OP_CODE[o] for o in s.ops[1:-1]], dtype=np.int64))
    return CellBatch(mats, codes)


def _vertex_channels(m: np.ndarray, cin: int, cout: int) -> np.ndarray:
    """NAS-Bench-101's channel rule for a batch ``m`` (N, n, n) → (N, n) channels."""
    big_n, n = m.shape[0], m.shape[1]
    ch = np.zeros((big_n, n), dtype=np.int64)
    ch[:, 0] = cin
    ch[:, n - 1] = cout
    if n == 2:
        return ch
    feeds = m[:, 1 : n - 1, n - 1].astype(np.int64)
    k = np.maximum(feeds.sum(1, keepdims=True), 1)
    rank = np.cumsum(feeds, 1) - 1
    split = cout // k + (rank < cout % k)
    ch[:, 1 : n - 1] = np.where(feeds == 1, split, 0)
    for v in range(n - 2, 0, -1):
        succ = (m[:, v, v + 1 : n - 1] * ch[:, v + 1 : n - 1]).max(1) if v + 1 < n - 1 else 0
        ch[:, v] = np.where(feeds[:, v - 1] == 1, ch[:, v], succ)
    return ch


def _depth(m: np.ndarray) -> np.ndarray:
    """Longest input→output path, in edges, for a batch (N, n, n)."""
    big_n, n = m.shape[0], m.shape[1]
    d = np.full((big_n, n), -(10**6), dtype=np.int64)
    d[:, 0] = 0
    for v in range(1, n):
        d[:, v] = np.where(m[:, :v, v] == 1, d[:, :v] + 1, -(10**6)).max(1)
    return d[:, n - 1]


def _group_features(m: np.ndarray, codes: np.ndarray, shape: NetworkShape,
                    image_size: int) -> np.ndarray:
    big_n, n = m.shape[0], m.shape[1]
    sizes = spatial_sizes(image_size, shape.num_stacks)
    mi = m.astype(np.int64)
    interior = slice(1, n - 1)
    kernel = _KERNEL[codes] if n > 2 else np.zeros((big_n, 0), dtype=np.int64)
    k2 = kernel * kernel
    is_conv = (kernel > 0).astype(np.int64)
    proj = mi[:, 0, interior]  # 1x1 projections of the cell input into interior vertices
    out_proj = mi[:, 0, n - 1]
    params = np.full(big_n, 9 * shape.in_channels * shape.stem_channels + 2 * shape.stem_channels,
                     dtype=np.float64)
    stem_pix = image_size * image_size
    macs3 = np.full(big_n, 9.0 * shape.in_channels * shape.stem_channels * stem_pix)
    macs1 = np.zeros(big_n)
    acts = np.full(big_n, float(shape.stem_channels * stem_pix))
    pool = np.zeros(big_n)
    memo: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
    for cin, cout, stack in shape.cell_channels():
        key = (cin, cout)
        if key not in memo:
            ch = _vertex_channels(mi, cin, cout)[:, interior]
            p = (proj * (cin * ch + 2 * ch)).sum(1) + (k2 * ch * ch + 2 * ch * is_conv).sum(1)
            p = p + out_proj * (cin * cout + 2 * cout)
            m3 = (np.where(kernel == 3, 9 * ch * ch, 0)).sum(1)
            m1 = (np.where(kernel == 1, ch * ch, 0)).sum(1) + (proj * cin * ch).sum(1)
            m1 = m1 + out_proj * cin * cout
            # elements written per pixel: vertex outputs, projections, the cell output
            a = ch.sum(1) + (proj * ch).sum(1) + out_proj * cout + cout
            pl = np.where(kernel == 0, ch, 0).sum(1)
            memo[key] = (p, m3, m1, a, pl)
        p, m3, m1, a, pl = memo[key]
        pix = sizes[stack] * sizes[stack]
        params += p
        macs3 += m3 * pix
        macs1 += m1 * pix
        acts += a * pix
        pool += pl * pix
    params += shape.final_channels * shape.num_classes + shape.num_classes
    macs = macs3 + macs1 + shape.final_channels * shape.num_classes
    n_ops = [(codes == c).sum(1) if n > 2 else np.zeros(big_n, dtype=np.int64) for c in range(3)]
    cells = shape.num_stacks * shape.cells_per_stack
    layers = cells * (n - 2 + proj.sum(1) + out_proj) + 2
    edges = mi.sum((1, 2))
    cols = [
        np.log(params), np.log(macs), np.log1p(macs3), np.log1p(macs1), np.log(acts),
        np.log1p(pool), layers, np.full(big_n, n), edges, n_ops[0], n_ops[1], n_ops[2],
        _depth(mi), mi[:, :, n - 1].sum(1), mi[:, 0, :].sum(1),
    ]
    return np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1)


def _group_bits(m: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """EC-NAS's encoding padded to 7 vertices: output moved to the last slot."""
    big_n, n = m.shape[0], m.shape[1]
    full = np.zeros((big_n, MAX_VERTICES, MAX_VERTICES), dtype=np.float64)
    idx = list(range(n - 1)) + [MAX_VERTICES - 1]
    full[:, np.ix_(idx, idx)[0], np.ix_(idx, idx)[1]] = m
    iu = np.triu_indices(MAX_VERTICES, 1)
    adj = full[:, iu[0], iu[1]]
    onehot = np.zeros((big_n, MAX_VERTICES - 2, 3))
    for v in range(n - 2):
        onehot[np.arange(big_n), v, codes[:, v]] = 1.0
    return np.concatenate([adj, onehot.reshape(big_n, -1)], axis=1)


def cell_features(batch: CellBatch, *, shape: NetworkShape | None = None, image_size: int = 32,
                  graph_bits: bool = False) -> np.ndarray:
    """(N, len(PHYSICS) [+ GRAPH_BITS]) float64 features, in the order of ``PHYSICS``."""
    shape = shape or NetworkShape()
    width = len(PHYSICS) + (GRAPH_BITS if graph_bits else 0)
    out = np.empty((len(batch), width), dtype=np.float64)
    by_n: dict[int, list[int]] = {}
    for i, mat in enumerate(batch.matrices):
        by_n.setdefault(mat.shape[0], []).append(i)
    for n, rows in by_n.items():
        if n > MAX_VERTICES:
            raise InputError(f"cell with {n} vertices: at most {MAX_VERTICES} are supported")
        m = np.stack([batch.matrices[i] for i in rows])
        c = (np.stack([batch.codes[i] for i in rows]) if n > 2
             else np.zeros((len(rows), 0), dtype=np.int64))
        feats = _group_features(m, c, shape, image_size)
        if graph_bits:
            feats = np.concatenate([feats, _group_bits(m, c)], axis=1)
        out[rows] = feats
    return out


def params_and_flops(batch: CellBatch, *, shape: NetworkShape | None = None,
                     image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Trainable parameters (int) and forward FLOPs per image (2 per multiply-add)."""
    f = cell_features(batch, shape=shape, image_size=image_size)
    params = np.rint(np.exp(f[:, 0])).astype(np.int64)
    return params, 2.0 * np.rint(np.exp(f[:, 1]))
