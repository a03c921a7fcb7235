"""syne-tune: an ecnas benchmark bundle as a tabular blackbox, with energy as an objective.

Install the extra: ``pip install ecnas[synetune]``::

    from ecnas.integrations.synetune import register_bundle
    from syne_tune.blackbox_repository import load_blackbox

    register_bundle("bundles/ec-nas-5v", name="ecnas-5v")   # once: written to syne-tune's repo
    bb = load_blackbox("ecnas-5v", local_files_only=True)["nvidia-quadro-rtx-6000"]
    config = {k: v.sample() for k, v in bb.configuration_space.items()}  # a valid cell
    bb.objective_function(config, fidelity={"epochs": 4})    # {"energy_j": …, …}

The blackbox (syne-tune's ``BlackboxTabular``):

* hyperparameter ``cell``: the NAS-Bench-101 cell as ``"<matrix bits>|<op,op,…>"`` (the
  bundle's pruned form). The configuration space is a ``choice`` over the cells the bundle
  holds, so every sample is a valid, benchmarked cell. The blackbox built in-process by
  :func:`to_blackbox` also accepts any other spelling of a cell (unpruned, other vertex order)
  and names the reason when a cell is invalid or not in the benchmark. A second
  hyperparameter, ``space``, has one value (``nasbench101-5V9E`` …): syne-tune's tabular
  lookup needs at least two.
* fidelity ``epochs``: each budget's run at its halfway evaluation (EC-NAS's evaluation 1) and
  at its end; NAS-Bench-101 budgets are separate runs that syne-tune reads as one curve.
* seeds: the bundle's repeats (seed ``s`` is repeat ``s + 1``).
* objectives: ``validation_accuracy``, ``validation_error`` (1 − accuracy, for schedulers that
  minimise), ``test_accuracy``, ``training_time_s`` (cumulative; the simulator's elapsed time)
  and ``energy_j`` (the bundle's joules, float64, PUE excluded: measured or estimated as the
  bundle's ``estimated`` flag says).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.benchmark import Benchmark
from ecnas.benchmark.bundle import DEFAULT_CITATION, space_names
from ecnas.benchmark.layout import METRIC_INDEX
from ecnas.errors import InputError
from ecnas.outputs import atomic_folder

INSTALL_HINT = ("ecnas.integrations.synetune needs syne-tune with its blackbox repository: "
                "pip install ecnas[synetune]")


def _missing(exc: ImportError) -> str:
    """The install hint naming what did not import: syne-tune itself, or a package its
    blackbox repository imports that syne-tune's own install does not bring."""
    name = (exc.name or "").split(".")[0]
    if name in ("", "syne_tune"):
        return f"{INSTALL_HINT} (syne-tune is not installed)"
    return (f"ecnas.integrations.synetune: syne-tune is installed but cannot import "
            f"{exc.name!r} ({exc}): pip install ecnas[synetune] brings it (or pip install "
            f"{name.replace('_', '-')})")


try:
    import pandas as pd
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.blackbox_repository.conversion_scripts.blackbox_recipe import BlackboxRecipe
    from syne_tune.config_space import choice, randint
except ImportError as _exc:
    raise ImportError(_missing(_exc), name=_exc.name) from _exc

__all__ = ["OBJECTIVES", "EcnasBlackbox", "register_bundle", "to_blackbox"]

#: objective name → benchmark metric (final; the halfway fidelity reads the ``half_`` twin)
OBJECTIVES = ("validation_accuracy", "validation_error", "test_accuracy", "training_time_s",
              "energy_j")
FIDELITY = "epochs"
#: written into the blackbox's metadata.json: ecnas only replaces folders that carry it
MARKER = "ecnas.integrations.synetune"


def _cell(matrix: str, ops: str) -> str:
    return f"{matrix}|{ops}"


def _fidelities(bench: Any, halfway: bool) -> list[tuple[float, int, str]]:
    """(epochs, budget index, metric prefix) per fidelity, ascending and distinct."""

    grid = bench.layout.grid()
    out: dict[float, tuple[int, str]] = {}
    for b, budget in enumerate(bench.budgets):
        out.setdefault(float(budget), (b, ""))
        if halfway:
            present = bench.layout.present[:, b]
            half = grid[:, b, :, METRIC_INDEX["half_epoch"]][present]
            # only when every run of the budget was evaluated at one halfway epoch
            if half.size and np.all(half == half.flat[0]) and 0 < half.flat[0] < budget:
                out.setdefault(float(half.flat[0]), (b, "half_"))
    return [(e, *out[e]) for e in sorted(out)]


def _objectives(bench: Any, fids: list[tuple[float, int, str]]) -> np.ndarray:
    """[architectures, repeats, fidelities, objectives], NaN where the bundle has no run."""

    grid = bench.layout.grid()  # [A, B, R, M]
    present = bench.layout.present
    a, _, r, _ = grid.shape
    out = np.full((a, r, len(fids), len(OBJECTIVES)), np.nan)
    for f, (_, b, prefix) in enumerate(fids):
        block = np.where(present[:, b, :, None], grid[:, b], np.nan)  # [A, R, M]
        for o, name in enumerate(OBJECTIVES):
            metric = "validation_accuracy" if name == "validation_error" else name
            vals = block[:, :, METRIC_INDEX[prefix + metric]]
            out[:, :, f, o] = 1.0 - vals if name == "validation_error" else vals
    return out


class EcnasBlackbox(BlackboxTabular):
    """``BlackboxTabular`` whose lookup accepts any spelling of a cell (pruned and matched by
    its iso-hash, as ``Benchmark.query`` does) and says why a cell has no entry."""

    def __init__(self, bench: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bench = bench
        self._stored = self.hyperparameters["cell"].tolist()
        self._space = str(self.hyperparameters["space"].iloc[0])

    def _objective_function(self, configuration: dict | int, fidelity: dict | None = None,
                            seed: int | None = None) -> Any:
        if isinstance(configuration, dict):
            configuration = {**configuration, "cell": self.resolve(configuration.get("cell")),
                             "space": self._space}
        return super()._objective_function(configuration, fidelity, seed)

    def resolve(self, cell: Any) -> str:
        """The stored spelling of ``cell``; ValueError (syne-tune's lookup error type) with the
        reason when the cell is malformed, invalid or not benchmarked."""
        if not isinstance(cell, str) or cell.count("|") != 1:
            raise ValueError(f"cell {cell!r}: expected '<matrix bits>|<op,op,…>'")
        matrix, ops = cell.split("|")
        try:
            # Benchmark.query's own resolution: pruned-string lookup, then the iso-hash
            return self._stored[self._bench._arch_index((matrix, ops.split(",")))]
        except InputError as exc:
            raise ValueError(f"cell {cell!r}: {exc}") from None


def to_blackbox(bundle: Any, *, device: str | None = None, halfway: bool = True) -> EcnasBlackbox:
    """A bundle folder (or a loaded :class:`ecnas.benchmark.Benchmark`) as a syne-tune
    blackbox for ``device`` (default: the bundle's first device)."""

    bench = bundle if isinstance(bundle, Benchmark) else Benchmark.load(bundle, device=device)
    fids = _fidelities(bench, halfway)
    cells = [_cell(m, o) for m, o in zip(bench.layout.matrix.tolist(), bench.layout.ops.tolist(),
                                         strict=True)]
    top = int(np.ceil(fids[-1][0]))

    space = "nasbench101-" + space_names(pd.DataFrame({"ops": bench.layout.ops}))[0]
    return EcnasBlackbox(
        bench,
        # "space" has one value: syne-tune's tabular lookup needs two or more hyperparameters
        hyperparameters=pd.DataFrame({"cell": cells, "space": space}),
        configuration_space={"cell": choice(cells), "space": choice([space])},
        fidelity_space={FIDELITY: randint(1, top)},
        objectives_evaluations=_objectives(bench, fids),
        fidelity_values=np.array([e for e, _, _ in fids]),
        objectives_names=list(OBJECTIVES),
    )


# ----------------------------------------------------------------- syne-tune's repository
def repository_path() -> Path:
    """Where syne-tune's ``load_blackbox`` looks (``~/.blackbox-repository`` unless changed)."""
    from syne_tune.blackbox_repository import repository

    return Path(repository.repository_path)


class EcnasBundleRecipe(BlackboxRecipe):
    """syne-tune's recipe for an ecnas bundle: generating it writes the blackbox into
    syne-tune's local repository (there is nothing to download or upload)."""

    def __init__(self, name: str, bundle: str | Path, device: str | None = None,
                 halfway: bool = True) -> None:

        super().__init__(name=name, cite_reference=DEFAULT_CITATION)
        self.bundle, self.device, self.halfway = Path(bundle), device, halfway

    def generate(self, upload_on_hub: bool = False) -> None:
        """Write the bundle into syne-tune's local blackbox repository; ``upload_on_hub`` is
        refused with an :class:`~ecnas.errors.InputError` (an ecnas bundle is registered locally
        only)."""
        if upload_on_hub:
            raise InputError(f"{self.name}: an ecnas bundle is registered locally, not uploaded")
        self._generate_on_disk()

    def _generate_on_disk(self) -> None:
        write_blackbox(self.bundle, repository_path() / self.name, device=self.device,
                       halfway=self.halfway)


def write_blackbox(bundle: str | Path, target: Path, *, device: str | None = None,
                   halfway: bool = True) -> Path:
    """Write the bundle in syne-tune's tabular-blackbox format (one task: the device) into
    ``target``, atomically; a folder there is replaced only when ecnas wrote it."""
    from syne_tune.blackbox_repository.serialize import serialize_configspace

    _check_target(target)
    bb = to_blackbox(bundle, device=device, halfway=halfway)
    task = bb._bench.device
    target.parent.mkdir(parents=True, exist_ok=True)
    # the old folder stays whole until the new one is in place; it is replaced only when
    # every file in it is one ecnas writes here
    with atomic_folder(target, owned=_owned_blackbox_files) as tmp:
        serialize_configspace(tmp, bb.configuration_space, bb.fidelity_space)
        # float64 objectives (syne-tune's own serialize casts to float32): the energies a
        # scheduler sees are the bundle's joules exactly
        np.save(tmp / "objectives_evaluations.npy", bb.objectives_evaluations[None],
                allow_pickle=False)
        np.save(tmp / "fidelities_values.npy", bb.fidelity_values, allow_pickle=False)
        bb.hyperparameters.to_parquet(tmp / "hyperparameters.parquet", index=False)
        meta = {"objectives_names": bb.objectives_names, "task_names": [task],
                MARKER: {"bundle": str(Path(bundle).resolve()), "device": task,
                         "energy": "joules, PUE excluded; see the bundle's 'estimated' flags"}}
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=1))
    return target


#: what write_blackbox puts in a blackbox folder (and so may replace there)
BLACKBOX_FILES = ("configspace.json", "fidelityspace.json", "objectives_evaluations.npy",
                  "fidelities_values.npy", "hyperparameters.parquet", "metadata.json")


def _owned_blackbox_files(folder: Path) -> tuple[str, ...]:
    _check_target(folder)  # raises when ecnas did not write the folder
    return BLACKBOX_FILES


def _check_target(target: Path) -> None:
    if not target.exists():
        return
    try:
        meta = json.loads((target / "metadata.json").read_text())
    except (OSError, ValueError):
        meta = {}
    if not isinstance(meta, dict) or MARKER not in meta:
        raise InputError(f"{target}: exists and was not written by ecnas; choose another name")


def register_bundle(bundle: str | Path, *, name: str | None = None, device: str | None = None,
                    halfway: bool = True, write: bool = True) -> str:
    """Register ``bundle`` with syne-tune's blackbox repository as ``name`` (``ecnas-…``,
    default ``ecnas-<bundle folder name>``) and write it there, so syne-tune's own
    ``load_blackbox(name)`` and ``BlackboxRepositoryBackend(blackbox_name=name)`` load it
    offline. Returns the name. Registration lasts for the process; the files stay."""
    from syne_tune.blackbox_repository.conversion_scripts.recipes import generate_blackbox_recipes

    path = Path(bundle)
    if not (path / "manifest.json").is_file():
        raise InputError(f"{path}: not an ecnas bundle folder (no manifest.json)")
    name = name or f"ecnas-{path.resolve().name}"
    if not name.startswith("ecnas-") or "/" in name or name != name.strip():
        raise InputError(f"blackbox name {name!r}: use 'ecnas-<something>' without '/'")
    recipe = EcnasBundleRecipe(name, path, device=device, halfway=halfway)
    if write:
        recipe.generate()
    generate_blackbox_recipes[name] = recipe  # load_blackbox accepts registered names only
    return name
