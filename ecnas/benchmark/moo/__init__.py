"""Multi-objective search over an energy-aware benchmark: non-dominated sorting, exact 2-D/3-D
hypervolume, knee point, energy saved at ≤ X points of accuracy lost, and random search, SEMOA,
NSGA-II and SH-EMOA under an evaluation budget. Plotting imports matplotlib when called."""

from ecnas.benchmark.moo.hypervolume import contributions, hypervolume
from ecnas.benchmark.moo.knee import energy_saved_at, knee_index
from ecnas.benchmark.moo.objectives import OBJECTIVES
from ecnas.benchmark.moo.pareto import crowding_distance, nondominated_sort, pareto_mask
from ecnas.benchmark.moo.plot import FrontResult, pareto_front, plot_front
from ecnas.benchmark.moo.search import ALGORITHMS, SearchResult, run_search

__all__ = [
    "ALGORITHMS", "OBJECTIVES", "FrontResult", "SearchResult", "contributions",
    "crowding_distance", "energy_saved_at", "hypervolume", "knee_index", "nondominated_sort",
    "pareto_front", "pareto_mask", "plot_front", "run_search",
]
