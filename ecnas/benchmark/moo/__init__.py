"""Multi-objective search over an energy-aware benchmark: non-dominated sorting, exact 2-D/3-D
hypervolume, the normalization every score uses (:func:`score`, :func:`normalized`), knee point,
energy saved at ≤ X points of accuracy lost, and random search, SEMOA, NSGA-II, SH-EMOA (over
fidelities, :func:`with_fidelities`) and Optuna's TPE under an evaluation budget, with
trajectories. Plotting imports matplotlib when called."""

from ecnas.benchmark.moo.fidelity import ECNAS_BUDGETS, fidelity_origins, with_fidelities
from ecnas.benchmark.moo.hypervolume import contributions, hypervolume
from ecnas.benchmark.moo.knee import energy_saved_at, knee_index
from ecnas.benchmark.moo.objectives import OBJECTIVES, Domain, domain
from ecnas.benchmark.moo.pareto import crowding_distance, nondominated_sort, pareto_mask
from ecnas.benchmark.moo.plot import FrontResult, pareto_front, plot_front
from ecnas.benchmark.moo.score import Score, normalized, score, table_hypervolume
from ecnas.benchmark.moo.search import ALGORITHMS, SearchResult, run_search
from ecnas.benchmark.moo.trajectory import CHECKPOINTS, Checkpoint, Trajectory, checkpoints

__all__ = [
    "ALGORITHMS", "CHECKPOINTS", "ECNAS_BUDGETS", "OBJECTIVES", "Checkpoint", "Domain",
    "FrontResult", "Score", "SearchResult", "Trajectory", "checkpoints", "contributions",
    "crowding_distance", "domain", "energy_saved_at", "fidelity_origins", "hypervolume",
    "knee_index", "nondominated_sort", "normalized", "pareto_front", "pareto_mask", "plot_front",
    "run_search", "score", "table_hypervolume", "with_fidelities",
]
