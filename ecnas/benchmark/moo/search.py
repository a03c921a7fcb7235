"""Multi-objective NAS over a benchmark, under an evaluation (or training-time) budget.

**What counts as an evaluation.** An evaluation is a query of an architecture not yet
evaluated *at that training budget in this run*. A proposal of an architecture already
evaluated at that budget is re-drawn (mutation: uniformly among the parent's single-step mutants not
yet evaluated, and a fresh architecture never evaluated in this run when none is left); initial populations and random search draw
without replacement. When every architecture of the domain has been evaluated the run stops
and says so (``SearchResult.stopped``); it never reports work it did not do. NAS-Bench-101's
own API counts every ``query`` call, repeats included; here a repeat is never asked.

Each evaluation is charged its own budget's training time and energy (the mean over the
benchmark's repeats, as ``Benchmark.query(..., repeat="mean")``); the charges belong to the
run (``SearchResult.charged_time_s``/``charged_energy_j``), the benchmark's counters are left
alone. Algorithms:

- ``random``: uniform over the domain, without replacement.
- ``semoa``: steady-state (μ + 1) evolution, mutation only; the individual with the smallest
  hypervolume contribution in the worst non-dominated front leaves (SMS-EMOA style).
- ``nsga2``: (μ + μ) with binary tournaments on rank and crowding distance; offspring by
  mutation only (crossing two cells is rarely a valid cell).
- ``sh_emoa``: successive halving over the benchmark's budgets (brackets repeated while the
  budget lasts): candidates at the smallest budget, the best 1/η (rank, then crowding)
  promoted to the next. Needs two budgets or more (:func:`~ecnas.benchmark.moo.fidelity.
  with_fidelities` adds them to a one-budget benchmark).
- ``tpe``: Optuna's multi-objective TPE (optional extra ``ecnas[search]``), see
  :mod:`ecnas.benchmark.moo.model_based`.
- ``optuna_nsga2``: Optuna's NSGA-II sampler on the same encoding, a cross-check of ``nsga2``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import numpy as np

from ecnas.benchmark.moo.hypervolume import contributions, hypervolume
from ecnas.benchmark.moo.mutation import mutation_graph
from ecnas.benchmark.moo.objectives import Domain, Objective, domain, objectives
from ecnas.benchmark.moo.pareto import crowding_distance, nondominated_sort, pareto_mask
from ecnas.benchmark.moo.score import table_hypervolume
from ecnas.benchmark.moo.trajectory import Trajectory
from ecnas.errors import InputError

ALGORITHMS = ("random", "semoa", "nsga2", "sh_emoa", "tpe", "optuna_nsga2")
_MODEL_BASED = "ecnas.benchmark.moo.model_based"


class _Stop(Exception):
    """The run ends: the evaluation or time budget is spent, or the domain is exhausted."""

    def __init__(self, why: str | None) -> None:
        super().__init__(why)
        self.why = why


@dataclass(frozen=True)
class SearchResult:
    """One search run: settings, the architectures evaluated at the search's budget in order
    with their normalized points, hypervolumes (final, initial population, the table's), the
    run's own charges, why it stopped early (``stopped``; None when it did what was asked) and
    its trajectory (every evaluation, at every budget)."""

    algorithm: str
    seed: int
    budget: int
    objectives: tuple[str, ...]
    evaluated: tuple[str, ...]  # architecture hashes evaluated at `budget`, in order
    points: np.ndarray  # normalized minimized objectives of evaluated[i] at the budget
    hypervolume: float
    initial_hypervolume: float  # of the initial population (first `initial` evaluations)
    initial: int
    reference: tuple[float, ...]
    evaluations: int  # evaluations done, at every budget (== len(trajectory))
    requested: int
    table_hypervolume: float
    charged_time_s: float
    charged_energy_j: float
    stopped: str | None
    trajectory: Trajectory = field(repr=False)

    @property
    def fraction(self) -> float:
        """Final hypervolume as a fraction of the table's true front."""
        return self.hypervolume / self.table_hypervolume if self.table_hypervolume > 0 else 0.0

    @property
    def front(self) -> np.ndarray:
        """The non-dominated points among everything evaluated (normalized, minimized)."""
        return self.points[pareto_mask(self.points)] if len(self.points) else self.points

    def to_dict(self) -> dict:
        """The run as plain data for ``--json``: settings, hypervolumes, charges and the
        front's size (not the points)."""
        return {"algorithm": self.algorithm, "seed": self.seed, "budget": self.budget,
                "objectives": list(self.objectives), "evaluations": self.evaluations,
                "requested_evaluations": self.requested, "stopped": self.stopped,
                "distinct_architectures": len(set(self.evaluated)),
                "hypervolume": self.hypervolume, "table_hypervolume": self.table_hypervolume,
                "fraction": self.fraction,
                "initial_hypervolume": self.initial_hypervolume,
                "initial_population": self.initial, "reference": list(self.reference),
                "charged_training_time_s": self.charged_time_s,
                "charged_energy_j": self.charged_energy_j,
                "front_size": int(len(self.front))}


class _Search:
    """Shared state of one run: the domain, the no-repeat bookkeeping, charges, mutation."""

    def __init__(self, bench: Any, budget: int, objs: tuple[Objective, ...],
                 rng: np.random.Generator, n: int, max_time_s: float | None) -> None:
        self.bench, self.budget, self.objs, self.rng = bench, budget, objs, rng
        self.n, self.max_time_s = n, max_time_s
        self.dom: Domain = domain(bench, budget, objs)
        self.ref = self.dom.reference
        self.table_hv = table_hypervolume(self.dom)
        n_a = len(bench)
        self.allowed = np.zeros(n_a, dtype=bool)
        self.allowed[self.dom.indices] = True
        self.hashes = bench.arrays(budget)["arch_hash"]
        self._arrays: dict[int, dict[str, np.ndarray]] = {}
        self._norm: dict[int, np.ndarray] = {}
        self._raw: dict[int, np.ndarray] = {}
        self.seen: dict[int, np.ndarray] = {}
        self.order = rng.permutation(self.dom.indices)
        self.pos = 0
        self.evaluated: list[int] = []  # at the search's budget
        self.traj = Trajectory.builder(tuple(o.name for o in objs))
        self.time_s = 0.0
        self.energy_j = 0.0
        self.archive = np.empty((0, len(objs)))
        self.archive_idx: list[int] = []  # architectures of the front found so far
        self.hv = 0.0
        self.origins = _origins(bench)

    def values(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw objective values (as the user reads them) and normalized minimized points of
        every architecture at budget ``b`` (NaN where missing)."""
        if b not in self._norm:
            arr = self.bench.arrays(b)
            self._arrays[b] = arr
            raw = np.column_stack([np.asarray(arr[o.array_key], dtype=float) for o in self.objs])
            mins = np.column_stack([o.minimized(raw[:, k]) for k, o in enumerate(self.objs)])
            self._raw[b], self._norm[b] = raw, self.dom.normalize(mins)
            self.seen[b] = np.zeros(len(raw), dtype=bool)
        return self._raw[b], self._norm[b]

    def is_seen(self, a: int, b: int | None = None) -> bool:
        b = self.budget if b is None else b
        self.values(b)
        return bool(self.seen[b][a])

    def evaluate(self, a: int, b: int | None = None) -> np.ndarray | None:
        """Evaluate ``a`` at ``b`` (default: the search's budget), charging its time and energy;
        None (nothing charged) when the benchmark has no value there."""
        b = self.budget if b is None else b
        raw, norm = self.values(b)
        if self.seen[b][a]:  # the proposers never ask twice; this guards the rule
            raise AssertionError(f"architecture {a} evaluated twice at {b} epochs")
        if len(self.traj) >= self.n:
            raise _Stop(None)
        p = norm[a]
        if not np.all(np.isfinite(p)):
            return None
        arr = self._arrays[b]
        t, e = float(arr["training_time_s"][a]), float(arr["energy_j"][a])
        t, e = (t if t == t else 0.0), (e if e == e else 0.0)
        if self.max_time_s is not None and self.time_s + t > self.max_time_s:
            raise _Stop(None)
        self.seen[b][a] = True
        self.time_s += t
        self.energy_j += e
        if b == self.budget:
            self.evaluated.append(a)
            self._update_front(a, p)
        self.traj.add(str(self.hashes[a]), b, raw[a], self.time_s, self.energy_j, self.hv,
                      self.hv / self.table_hv if self.table_hv > 0 else 0.0,
                      self.origins(a, b))
        if len(self.traj) >= self.n:
            raise _Stop(None)
        return p

    def _update_front(self, a: int, p: np.ndarray) -> None:
        if not np.all(p < self.ref):
            return
        ar = self.archive
        if len(ar) and np.any(np.all(ar <= p, axis=1)):
            return  # dominated or equal: the hypervolume does not change
        keep = ~np.all(p <= ar, axis=1) if len(ar) else np.zeros(0, dtype=bool)
        self.archive = np.vstack([ar[keep], p])
        self.archive_idx = [x for x, k in zip(self.archive_idx, keep, strict=True) if k] + [a]
        self.hv = hypervolume(self.archive, self.ref)

    def fresh(self) -> int:
        """An architecture of the domain never evaluated at the search's budget in this run."""
        self.values(self.budget)
        seen = self.seen[self.budget]
        while self.pos < len(self.order):
            a = int(self.order[self.pos])
            self.pos += 1
            if not seen[a]:
                return a
        raise _Stop(f"every one of the {len(self.dom.indices)} architectures in the domain at "
                    f"{self.budget} epochs was evaluated")

    def mutate(self, a: int) -> int:
        """A mutant of ``a`` in the domain and not yet evaluated, drawn uniformly from the first
        non-empty ring: ``a``'s forward mutants (one edit), its reverse mutants (cells one edit
        reduces to ``a``), its two-step mutants, then the forward (else the reverse) mutants of a
        member of the front found so far (Pareto local search); a fresh architecture when every ring
        is spent. Widening ring by ring keeps the search local while there is anything new
        nearby, and the reverse ring lets it climb back to large cells (see ``mutation``)."""
        g = mutation_graph(self.bench)
        self.values(self.budget)
        fresh = self.allowed & ~self.seen[self.budget]
        for ring in (g.forward[a], g.reverse[a], g.two_step(a)):
            nb = ring[fresh[ring]]
            if len(nb):
                return int(nb[int(self.rng.integers(len(nb)))])
        for f in self.rng.permutation(self.archive_idx):
            for ring in (g.forward[int(f)], g.reverse[int(f)]):
                nb = ring[fresh[ring]]
                if len(nb):
                    return int(nb[int(self.rng.integers(len(nb)))])
        return self.fresh()

    def pop_points(self, pop: list[int]) -> np.ndarray:
        return self._norm[self.budget][pop]


def _origins(bench: Any) -> Callable[[int, int], str]:
    """Per (architecture, budget): ``measured`` (or imported), ``scaled`` or ``predicted``."""
    lay = bench.layout
    from_src = {"measured": "measured", "imported": "measured", "extrapolated": "scaled",
                "surrogate": "predicted"}
    codes = lay.source[:, :, 0]
    names = np.array(["measured", "imported", "extrapolated", "surrogate"])
    bidx = {b: i for i, b in enumerate(bench.budgets)}

    def origin(a: int, b: int) -> str:
        return from_src.get(str(names[codes[a, bidx[b]]]), "measured")

    return origin


def _select(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best by non-dominated rank, then crowding distance."""
    ranks = nondominated_sort(points)
    chosen: list[int] = []
    for r in range(ranks.max() + 1):
        front = np.nonzero(ranks == r)[0]
        if len(chosen) + len(front) <= k:
            chosen += front.tolist()
        else:
            cd = crowding_distance(points[front])
            chosen += front[np.argsort(-cd, kind="stable")][: k - len(chosen)].tolist()
            break
    return np.array(chosen, dtype=int)


def _random(s: _Search, mu: int) -> None:
    while True:
        s.evaluate(s.fresh())


def _initial(s: _Search, mu: int) -> list[int]:
    pop = []
    for _ in range(mu):
        a = s.fresh()
        pop.append(a)
        s.evaluate(a)
    return pop


def _semoa(s: _Search, mu: int) -> None:
    pop = _initial(s, mu)
    while True:
        child = s.mutate(pop[int(s.rng.integers(len(pop)))])
        pop.append(child)
        s.evaluate(child)
        pts = s.pop_points(pop)
        ranks = nondominated_sort(pts)
        worst = np.nonzero(ranks == ranks.max())[0]
        contrib = contributions(pts[worst], s.ref) if len(worst) > 1 else np.zeros(1)
        pop.pop(int(worst[int(np.argmin(contrib))]))


def _nsga2(s: _Search, mu: int) -> None:
    pop = _initial(s, mu)
    while True:
        pts = s.pop_points(pop)
        ranks, cd = nondominated_sort(pts), np.zeros(len(pop))
        for r in np.unique(ranks):
            cd[ranks == r] = crowding_distance(pts[ranks == r])
        kids: list[int] = []
        for _ in range(mu):
            i, j = s.rng.integers(len(pop), size=2)
            win = i if (ranks[i], -cd[i]) <= (ranks[j], -cd[j]) else j
            kid = s.mutate(pop[int(win)])
            kids.append(kid)
            s.evaluate(kid)
        union = pop + kids
        keep = _select(s.pop_points(union), mu)
        pop = [union[k] for k in keep]


def _sh_emoa(s: _Search, mu: int, eta: int = 3) -> None:
    budgets = [b for b in s.bench.budgets if b <= s.budget]
    rungs = len(budgets)
    # candidates per bracket: η^(rungs-1), so the last rung holds one or more
    c = max(eta ** (rungs - 1), 2 * mu)
    while True:
        cands: list[int] = []
        for _ in range(c):
            try:
                # after the first bracket, half the candidates are mutants of the front found
                # at the search's budget (the evolutionary part of SH-EMOA)
                if s.archive_idx and s.rng.random() < 0.5:
                    a = s.mutate(s.archive_idx[int(s.rng.integers(len(s.archive_idx)))])
                else:
                    a = s.fresh()
            except _Stop:
                if not cands:
                    raise
                break
            if a not in cands:
                cands.append(a)
        for k, b in enumerate(budgets):
            kept, pts = [], []
            for a in cands:
                # already evaluated at this budget in an earlier bracket: compete on its
                # known value, not re-charged
                p = s._norm[b][a] if s.is_seen(a, b) else s.evaluate(a, b)
                if p is not None:
                    kept.append(a)
                    pts.append(s._norm[b][a])
            cands = kept
            if not cands:
                break
            if k + 1 < rungs:
                sel = _select(np.array(pts), max(1, len(cands) // eta))
                cands = [cands[i] for i in sel]


_ALGOS: dict[str, Callable[..., None]] = {
    "random": _random, "semoa": _semoa, "nsga2": _nsga2, "sh_emoa": _sh_emoa,
}


def run_search(bench: Any, algorithm: str, evaluations: int, seed: int, *,
               objectives: tuple[str, ...] | list[str] = ("energy", "validation_accuracy"),
               budget: int | None = None, population: int | None = None,
               max_training_time_s: float | None = None,
               objectives_: tuple[str, ...] | None = None) -> SearchResult:
    """Run one search of ``evaluations`` evaluations (distinct architectures per budget, see
    the module's docs) with ``seed``; optionally stop when the charged training time would pass
    ``max_training_time_s``. Hypervolume is over everything evaluated at ``budget`` (default:
    the benchmark's largest). ``objectives_`` is the old spelling of ``objectives``."""
    if algorithm not in ALGORITHMS:
        raise InputError(f"algorithm={algorithm!r}: choose from {', '.join(ALGORITHMS)}")
    if isinstance(evaluations, bool) or not isinstance(evaluations, (int, np.integer)) \
            or evaluations < 2:
        raise InputError(f"evaluations={evaluations!r}: need an integer of at least 2")
    if population is not None and (not isinstance(population, (int, np.integer))
                                   or population < 2):
        raise InputError(f"population={population!r}: need an integer of at least 2")
    if max_training_time_s is not None and not max_training_time_s > 0:
        raise InputError(f"max_training_time_s={max_training_time_s!r}: need a positive number")
    names = tuple(objectives_ if objectives_ is not None else objectives)
    objs = _objectives(names)
    b = max(bench.budgets) if budget is None else int(budget)
    if b not in bench.budgets:
        raise InputError(f"budget={budget!r} is not a budget of the benchmark "
                         f"(budgets: {', '.join(map(str, bench.budgets))})")
    if algorithm == "sh_emoa" and len([x for x in bench.budgets if x <= b]) < 2:
        raise InputError(f"algorithm='sh_emoa' needs two training budgets or more; the benchmark "
                         f"holds {', '.join(map(str, bench.budgets))} epoch(s): add fidelities "
                         "with ecnas.benchmark.moo.with_fidelities (or `ecnas search "
                         "--fidelities`), or use semoa")
    s = _Search(bench, b, objs, np.random.default_rng(seed), int(evaluations),
                max_training_time_s)
    mu = int(population or max(2, min(10, int(evaluations) // 4)))
    stopped: str | None = None
    try:
        if algorithm == "tpe":
            _model_based(algorithm).tpe_search(s, mu)
        elif algorithm == "optuna_nsga2":
            _model_based(algorithm).nsga2_search(s, mu)
        else:
            _ALGOS[algorithm](s, mu)
    except _Stop as why:
        stopped = why.why
    if not s.evaluated:
        raise InputError(f"{algorithm}: no architecture was evaluated at budget {b}")
    pts = s.pop_points(s.evaluated)
    init = min(mu, len(pts))
    if stopped is None and max_training_time_s is None and len(s.traj) < evaluations:
        stopped = "the domain is exhausted"
    return SearchResult(algorithm, seed, b, names,
                        tuple(str(s.hashes[a]) for a in s.evaluated), pts,
                        s.hv, hypervolume(pts[:init], s.ref), init, tuple(s.ref.tolist()),
                        len(s.traj), int(evaluations), s.table_hv, s.time_s, s.energy_j,
                        stopped, s.traj.build())


def _model_based(algorithm: str) -> Any:
    try:
        return import_module(_MODEL_BASED)
    except ImportError as e:
        raise InputError(f"algorithm={algorithm!r} needs Optuna ({e}): "
                         "pip install 'ecnas[search]'") from None


def _objectives(names: tuple[str, ...]) -> tuple[Objective, ...]:
    try:
        return objectives(names)
    except InputError as e:
        raise InputError(f"objectives={list(names)!r}: {e}") from None
