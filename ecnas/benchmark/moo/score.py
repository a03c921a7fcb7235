"""Score any set of architectures exactly as ecnas scores its searches.

The convention: each objective minimized (accuracy as 1 − accuracy), min–max scaled over every
architecture of the benchmark at the budget (:func:`~ecnas.benchmark.moo.objectives.domain`),
hypervolume against the reference 1.1 in every scaled objective, reported also as a fraction of
the hypervolume of the whole table (the true front). Use :func:`score` on your own algorithm's
evaluated architectures to compare it with ``run_search``'s numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ecnas.benchmark.moo.hypervolume import hypervolume
from ecnas.benchmark.moo.objectives import Domain, domain, objectives
from ecnas.errors import InputError

DEFAULT_OBJECTIVES = ("energy", "validation_accuracy")


@dataclass(frozen=True)
class Score:
    """Hypervolume of a set of architectures, of the table's true front, and their ratio."""

    hypervolume: float
    table_hypervolume: float
    architectures: int

    @property
    def fraction(self) -> float:
        """``hypervolume / table_hypervolume`` (1.0: the set holds the true front)."""
        return self.hypervolume / self.table_hypervolume if self.table_hypervolume > 0 else 0.0


def normalized(bench: object, budget: int | None = None,
               objectives_names: tuple[str, ...] | list[str] = DEFAULT_OBJECTIVES) -> Domain:
    """The domain and its normalization (``Domain.normalize``) for ``bench`` at ``budget``
    (default: its largest)."""
    b = max(bench.budgets) if budget is None else int(budget)  # type: ignore[attr-defined]
    return domain(bench, b, objectives(tuple(objectives_names)))


def table_hypervolume(dom: Domain) -> float:
    """Hypervolume of every architecture of the domain: the true front's, the most any search
    can reach."""
    return hypervolume(dom.normalize(dom.values), dom.reference)


def score(bench: object, arch_hashes: Iterable[str], *, budget: int | None = None,
          objectives: tuple[str, ...] | list[str] = DEFAULT_OBJECTIVES) -> Score:
    """Score the architectures ``arch_hashes`` (iso-hashes in ``bench``) at ``budget``: their
    hypervolume, the table's and the fraction, in ecnas's convention."""
    dom = normalized(bench, budget, objectives)
    pos = {int(a): k for k, a in enumerate(dom.indices)}
    rows = []
    for h in arch_hashes:
        a = bench.index_of(h)  # type: ignore[attr-defined]
        if a not in pos:
            raise InputError(f"arch_hashes: {h} lacks an objective at budget "
                             f"{max(bench.budgets) if budget is None else budget}")  # type: ignore[attr-defined]
        rows.append(pos[a])
    pts = dom.normalize(dom.values[rows]) if rows else np.empty((0, dom.values.shape[1]))
    return Score(hypervolume(pts, dom.reference), table_hypervolume(dom), len(set(rows)))
