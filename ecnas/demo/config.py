"""What ``ecnas demo`` runs: small enough for a laptop CPU, the whole pipeline nonetheless."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DemoConfig:
    """The embedded default: scaled-down NAS-Bench-101 networks on the embedded dataset.

    ``architectures`` cells are measured at ``measured_budget`` epochs (checkpoints at start,
    halfway and end); a few of them (``full_budget_runs``) are also measured at
    ``full_budget`` so the extrapolation model learns from real long runs; every measured
    run is then extrapolated to ``extrapolate_to``; ``predicted_architectures`` further cells
    that were never trained get architecture-surrogate predictions.
    """

    out_dir: Path = Path("ecnas-demo")
    architectures: int = 12
    max_vertices: int = 5
    measured_budget: int = 4
    full_budget: int = 8
    full_budget_runs: int = 3
    extrapolate_to: tuple[int, ...] = (12, 36, 108)
    predicted_architectures: int = 200
    seed: int = 0
    workers: int = 1
    # scaled-down network and data so that one run takes seconds on a CPU
    stem_channels: int = 16
    num_stacks: int = 2
    cells_per_stack: int = 1
    batch_size: int = 64
    max_train_images: int | None = None
    # multi-objective search
    search_algorithms: tuple[str, ...] = ("random", "semoa")
    search_evaluations: int = 6  # half of the measured cells: the search must choose
    search_seeds: int = 3
    accuracy_loss_points: float = 1.0
    quick: bool = False  # `ecnas demo --quick`: tiny networks; the summary says so
    extra: dict = field(default_factory=dict)

    @property
    def store_path(self) -> Path:
        """The demo's campaign store, ``OUT/store.sqlite``: a second run with the same ``--out``
        reuses its runs."""
        return self.out_dir / "store.sqlite"
