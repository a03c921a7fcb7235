"""scikit-learn conventions of the surrogates: the constructor takes hyperparameters only,
fit() sets what is learned, and a model used before fit() is a NotFittedError (an InputError);
model files keep loading (the state format is unchanged; "unfitted" of older files reads as
not fitted)."""

from __future__ import annotations

import dataclasses

import pytest

from ecnas.errors import InputError, NotFittedError
from ecnas.interop.ecnas_tree import import_results_tree
from ecnas.space import sample_cells
from ecnas.surrogate import ArchitectureSurrogate, DeviceTransfer, Extrapolator, SurrogateModel


@pytest.fixture(scope="module")
def table(ecnas_5v_dir):
    return import_results_tree(ecnas_5v_dir)


def test_constructors_take_hyperparameters_only() -> None:
    init = {f.name for f in dataclasses.fields(ArchitectureSurrogate) if f.init}
    assert init == {"kind", "level", "cal_fraction", "seed", "mlp_epochs", "mlp_members",
                    "shape", "image_size"}
    assert "features" not in init and "models" not in init
    with pytest.raises(TypeError):
        ArchitectureSurrogate(features=(0, 1))  # type: ignore[call-arg]
    init = {f.name for f in dataclasses.fields(Extrapolator) if f.init}
    assert init == {"min_runs", "level", "folds", "seed", "candidates"}
    with pytest.raises(TypeError):
        Extrapolator(method="learned")  # type: ignore[call-arg]
    init = {f.name for f in dataclasses.fields(DeviceTransfer) if f.init}
    assert init == {"source", "alpha", "level", "min_cells"}


def test_unfitted_models_raise_not_fitted(table) -> None:
    cells = sample_cells(3, seed=0)
    with pytest.raises(NotFittedError, match="ArchitectureSurrogate is not fitted"):
        ArchitectureSurrogate().predict(cells, 108)
    with pytest.raises(NotFittedError, match="Extrapolator is not fitted"):
        Extrapolator().predict(table.head(50), 108)
    with pytest.raises(NotFittedError, match="DeviceTransfer is not fitted"):
        DeviceTransfer(ArchitectureSurrogate()).predict(cells, 108)
    assert issubclass(NotFittedError, InputError)  # exit status 2 at the command line
    assert Extrapolator().method == ""  # nothing learned yet: no method


def test_fit_sets_learned_state_and_files_written_before_still_load(table, tmp_path) -> None:
    few = table[table["arch_hash"].isin(sorted(table["arch_hash"].unique())[:12])]
    arch = ArchitectureSurrogate(kind="linear").fit(few)
    ext = Extrapolator().fit(table)
    assert arch.n_archs == 12 and arch.models and arch.budget == 4  # the 5V data: 4 epochs
    assert ext.method in ("learned", "per-run")
    # a state as an older ecnas wrote it for an extrapolator never fitted
    meta, arrays = Extrapolator().state()
    meta["method"] = "unfitted"
    with pytest.raises(NotFittedError):
        Extrapolator.from_state(meta, arrays).predict(table.head(50), 108)
    loaded = SurrogateModel.load(SurrogateModel(ext, arch).save(tmp_path / "m.npz"))
    assert loaded.architecture is not None and loaded.architecture.features == arch.features
    assert loaded.extrapolator is not None and loaded.extrapolator.method == ext.method
