"""Multi-objective NAS over a benchmark, under an evaluation budget.

Every evaluation is a charged ``Benchmark.query`` (so the budget counters see the search's
training time and energy). Algorithms:

- ``random``: uniform over the architectures the benchmark holds at the budget.
- ``semoa``: steady-state (μ + 1) evolution, mutation only; the individual with the smallest
  hypervolume contribution in the worst non-dominated front leaves (SMS-EMOA/SEMOA style).
- ``nsga2``: (μ + μ) with binary tournaments on rank and crowding distance; offspring by
  mutation only (edge flips and op changes: crossover of two cells is rarely a valid cell).
- ``sh_emoa``: successive halving over the benchmark's budgets: many candidates at the
  smallest budget, the best 1/η (rank, then crowding) promoted to the next, the final front at
  the search's budget. Each query at any budget counts as one evaluation.

Mutation flips one edge or changes one interior op and keeps the cell valid and in the
benchmark's domain; after 20 failed tries it falls back to a random in-domain architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ecnas.benchmark.moo.hypervolume import contributions, hypervolume
from ecnas.benchmark.moo.objectives import Domain, Objective, domain, objectives
from ecnas.benchmark.moo.pareto import crowding_distance, nondominated_sort, pareto_mask
from ecnas.errors import InputError
from ecnas.space import OPS, ModelSpec

ALGORITHMS = ("random", "semoa", "nsga2", "sh_emoa")
MUTATION_TRIES = 20


@dataclass(frozen=True)
class SearchResult:
    """One search run: the algorithm, seed, budget (epochs) and objectives, the architectures
    evaluated in order with their normalized points, and the hypervolume of the final set and of
    the initial population against ``reference``."""

    algorithm: str
    seed: int
    budget: int
    objectives: tuple[str, ...]
    evaluated: tuple[str, ...]  # architecture hashes in evaluation order
    points: np.ndarray  # normalized minimized objectives of evaluated[i] at the budget
    hypervolume: float
    initial_hypervolume: float  # of the initial population (first `initial` evaluations)
    initial: int
    reference: tuple[float, ...]
    evaluations: int

    @property
    def front(self) -> np.ndarray:
        """The non-dominated points among everything evaluated (normalized, minimized)."""
        return self.points[pareto_mask(self.points)]

    def to_dict(self) -> dict:
        """The run as plain data for ``--json``: settings, hypervolumes and the front's size
        (not the points)."""
        return {"algorithm": self.algorithm, "seed": self.seed, "budget": self.budget,
                "objectives": list(self.objectives), "evaluations": self.evaluations,
                "hypervolume": self.hypervolume, "initial_hypervolume": self.initial_hypervolume,
                "initial_population": self.initial, "reference": list(self.reference),
                "front_size": int(len(self.front))}


class _Search:
    """Shared state: the domain, charged queries, mutation."""

    def __init__(self, bench: object, budget: int, objs: tuple[Objective, ...],
                 rng: np.random.Generator) -> None:
        self.bench, self.budget, self.objs, self.rng = bench, budget, objs, rng
        self.dom: Domain = domain(bench, budget, objs)
        self.allowed = set(self.dom.indices.tolist())
        self.hashes = bench.arrays(budget)["arch_hash"]  # type: ignore[attr-defined]
        self.evaluated: list[int] = []
        self.cache: dict[tuple[int, int], np.ndarray] = {}

    def evaluate(self, a: int, budget: int | None = None) -> np.ndarray:
        b = self.budget if budget is None else budget
        spec = self.bench.spec_of(self.hashes[a])  # type: ignore[attr-defined]
        r = self.bench.query(spec, epochs=b, repeat="mean")  # type: ignore[attr-defined]
        v = np.array([o.minimized(np.array(float(r[o.query_key]))) for o in self.objs])
        if b == self.budget:
            self.evaluated.append(a)
        self.cache[(a, b)] = self.dom.normalize(v)
        return self.cache[(a, b)]

    def random_arch(self) -> int:
        return int(self.rng.choice(self.dom.indices))

    def mutate(self, a: int) -> int:
        spec = self.bench.spec_of(self.hashes[a])  # type: ignore[attr-defined]
        for _ in range(MUTATION_TRIES):
            m = spec.matrix.copy()
            ops = list(spec.ops)
            n = len(ops)
            if n > 2 and self.rng.random() < 0.5:
                v = int(self.rng.integers(1, n - 1))
                ops[v] = str(self.rng.choice([o for o in OPS if o != ops[v]]))
            else:
                i, j = sorted(self.rng.choice(n, size=2, replace=False).tolist())
                m[i, j] = 1 - m[i, j]
            child = ModelSpec(m, ops)
            if not child.valid or not self.bench.is_valid(child):  # type: ignore[attr-defined]
                continue
            c = self.bench.index_of(child.hash())  # type: ignore[attr-defined]
            if c in self.allowed and c != a:
                return c
        return self.random_arch()

    def points(self) -> np.ndarray:
        return np.array([self.cache[(a, self.budget)] for a in self.evaluated])


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


def _random(s: _Search, n: int, mu: int) -> None:
    pool = s.rng.permutation(s.dom.indices)[:n]
    for a in pool:
        s.evaluate(int(a))


def _semoa(s: _Search, n: int, mu: int) -> None:
    pop = [s.random_arch() for _ in range(mu)]
    for a in pop:
        s.evaluate(a)
    for _ in range(n - mu):
        child = s.mutate(pop[int(s.rng.integers(len(pop)))])
        s.evaluate(child)
        pop.append(child)
        pts = np.array([s.cache[(a, s.budget)] for a in pop])
        ranks = nondominated_sort(pts)
        worst = np.nonzero(ranks == ranks.max())[0]
        contrib = contributions(pts[worst], s.dom.reference) if len(worst) > 1 else np.zeros(1)
        pop.pop(int(worst[int(np.argmin(contrib))]))


def _nsga2(s: _Search, n: int, mu: int) -> None:
    pop = [s.random_arch() for _ in range(mu)]
    for a in pop:
        s.evaluate(a)
    left = n - mu
    while left > 0:
        pts = np.array([s.cache[(a, s.budget)] for a in pop])
        ranks, cd = nondominated_sort(pts), np.zeros(len(pop))
        for r in np.unique(ranks):
            cd[ranks == r] = crowding_distance(pts[ranks == r])
        kids = []
        for _ in range(min(mu, left)):
            i, j = s.rng.integers(len(pop), size=2)
            win = i if (ranks[i], -cd[i]) <= (ranks[j], -cd[j]) else j
            kids.append(s.mutate(pop[int(win)]))
        for a in kids:
            s.evaluate(a)
        left -= len(kids)
        union = pop + kids
        keep = _select(np.array([s.cache[(a, s.budget)] for a in union]), mu)
        pop = [union[k] for k in keep]


def _sh_emoa(s: _Search, n: int, mu: int, eta: int = 3) -> None:
    budgets = [b for b in s.bench.budgets if b <= s.budget]  # type: ignore[attr-defined]
    if len(budgets) < 2:  # one budget: nothing to halve over
        _random(s, n, mu)
        return
    # candidates c with c·(1 + 1/η + 1/η² + …) ≈ n evaluations
    rungs = len(budgets)
    c = max(2, int(n / sum(eta ** -k for k in range(rungs))))
    cands = s.rng.permutation(s.dom.indices)[:c].tolist()
    used = 0
    for k, b in enumerate(budgets):
        pts = []
        keep_c = []
        for a in cands:
            if used >= n:
                break
            try:
                pts.append(s.evaluate(a, b))
            except InputError:  # no run at this budget: drop the candidate
                continue
            keep_c.append(a)
            used += 1
        cands = keep_c
        if k + 1 < rungs and cands:
            sel = _select(np.array(pts), max(1, len(cands) // eta))
            cands = [cands[i] for i in sel]
    for a in cands:  # the last rung may have been cut short by the budget
        if (a, s.budget) not in s.cache and used < n:
            s.evaluate(a)
            used += 1


_ALGOS: dict[str, Callable[..., None]] = {
    "random": _random, "semoa": _semoa, "nsga2": _nsga2, "sh_emoa": _sh_emoa,
}


def run_search(bench: object, algorithm: str, evaluations: int, seed: int, *,
               objectives_: tuple[str, ...] = ("energy", "validation_accuracy"),
               budget: int | None = None, population: int | None = None) -> SearchResult:
    """Run one search; hypervolume is over everything evaluated at the search's budget."""
    if algorithm not in _ALGOS:
        raise InputError(f"unknown algorithm {algorithm!r}; choose from {', '.join(ALGORITHMS)}")
    if evaluations < 2:
        raise InputError(f"--evaluations {evaluations}: need at least 2")
    objs = objectives(objectives_)
    b = max(bench.budgets) if budget is None else int(budget)  # type: ignore[attr-defined]
    s = _Search(bench, b, objs, np.random.default_rng(seed))
    n = min(evaluations, len(s.dom.indices))
    mu = population or max(2, min(10, n // 4))
    _ALGOS[algorithm](s, n, mu)
    if not s.evaluated:
        raise InputError(f"{algorithm}: no architecture was evaluated at budget {b}")
    pts = s.points()
    init = min(mu, len(pts))
    ref = s.dom.reference
    return SearchResult(algorithm, seed, b, tuple(o.name for o in objs),
                        tuple(str(s.hashes[a]) for a in s.evaluated), pts,
                        hypervolume(pts, ref), hypervolume(pts[:init], ref), init,
                        tuple(ref.tolist()), len(pts))
