"""Architecture-only surrogate: energy and training time at a budget from the cell alone.

Features are the analytic costs of the network (``features.PHYSICS``: multiply-adds per op
type, activation elements, layers, parameters, graph counts), computed from the cell alone;
targets are log energy and log training time of runs measured to their full budget, averaged
over repeats. Each target is learned from the rows that hold it: a table of energies without
times (EC-NAS's surrogate data as published) gives an energy model, and predictions leave the
training time unknown (NaN), with a note. The learner is
chosen on measured merit: with enough architectures both a ridge model and a small MLP
ensemble are fitted and the one with the lower error on the held-out calibration
architectures is kept (docs/surrogate.md has the numbers behind this choice). Tiny tables get
ridge only, with fewer features, and a note.

Other budgets: ``y(B) = ŷ(b)·(f + (1 − f)·B/b)`` with ``f`` the start-up share (the median of
``y(0)/y(b)`` over the table's runs), the same start-up + rate physics as the extrapolator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError, NotFittedError
from ecnas.space.cost import NetworkShape
from ecnas.space.spec import ModelSpec
from ecnas.surrogate.features import (
    PHYSICS,
    CellBatch,
    batch_from_specs,
    batch_from_strings,
    cell_features,
)
from ecnas.surrogate.intervals import bounds, conformal_quantile
from ecnas.surrogate.learners import (
    LinearModel,
    MLPEnsemble,
    learner_from_state,
    model_arrays,
    pack_models,
)

TARGETS = ("energy_j", "training_time_s")
#: feature subsets by table size (indices into PHYSICS)
SMALL_FEATURES = tuple(PHYSICS.index(n) for n in ("log_macs", "log_activations", "log_params"))
ALL_FEATURES = tuple(range(len(PHYSICS)))
MIN_MLP_ARCHS = 200
MIN_SPLIT_ARCHS = 30

Learner = LinearModel | MLPEnsemble


@dataclass(frozen=True)
class TrainingSet:
    """Per-architecture targets at one budget, with the cells they belong to."""

    matrix: list[str]
    ops: list[str]
    y: dict[str, np.ndarray]  # log of the repeat-mean at the budget; NaN where a cell lacks it
    budget: int
    device: str
    startup_share: dict[str, float]
    wall_per_train_s: float


def training_set(table: pd.DataFrame, budget: int | None = None) -> TrainingSet:
    """Architectures measured to ``budget`` (default: the budget with most full runs). Cells
    need an energy; a target a cell's runs do not hold (training time) is NaN for it."""
    need = ("matrix", "ops", "budget_epochs", "epoch", "energy_j")
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise InputError(f"table lacks column(s) {', '.join(missing)} needed to fit the surrogate")
    full = table[np.isclose(table["epoch"].to_numpy(float), table["budget_epochs"].to_numpy(float))]
    full = full[full["energy_j"] > 0]
    if "training_time_s" not in full.columns:
        full = full.assign(training_time_s=np.nan)
    if full.empty:
        raise InputError("table has no run measured to its full budget (epoch == budget_epochs)")
    if budget is None:
        counts = full["budget_epochs"].value_counts()
        budget = int(max(counts[counts == counts.max()].index))
    full = full[full["budget_epochs"] == budget]
    if full.empty:
        raise InputError(f"table has no run measured to budget {budget}")
    device = "unknown"
    if "device" in full.columns:
        devices = full["device"].astype(str).value_counts()
        device = str(devices.index[0])
        full = full[full["device"].astype(str) == device]
    grouped = full.groupby(["matrix", "ops"], sort=True)
    agg = grouped[list(TARGETS)].agg(_geometric_mean)
    mats = [str(m) for m, _ in agg.index]
    ops = [str(o) for _, o in agg.index]
    startup = {}
    zero = table[(table["budget_epochs"] == budget) & (table["epoch"] == 0)]
    for name in TARGETS:
        share = 0.0
        if not zero.empty and "repeat" in table.columns:
            keys = ["matrix", "ops", "repeat"]
            m = zero.merge(full, on=keys, suffixes=("_0", "_b"))
            ratio = (m[f"{name}_0"] / m[f"{name}_b"]).to_numpy(float)
            ratio = ratio[np.isfinite(ratio)]
            if ratio.size:
                share = float(np.clip(np.median(ratio), 0.0, 0.99))
        startup[name] = share
    wall = (full["wall_time_s"] / full["training_time_s"]).to_numpy(float) if "wall_time_s" in full else np.array([])
    wall = wall[np.isfinite(wall) & (wall > 0)]
    return TrainingSet(mats, ops, {k: np.log(agg[k].to_numpy(float)) for k in TARGETS}, int(budget),
                       device, startup, float(np.median(wall)) if wall.size else 1.0)


def _geometric_mean(s: pd.Series) -> float:
    """Over the repeats that hold the value (NaN when none does)."""
    v = s.to_numpy(dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.log(v).mean())) if v.size else math.nan


def _batch(specs_or_table: Any) -> tuple[CellBatch, pd.DataFrame]:
    """Cells and the identifying columns of each output row."""
    if isinstance(specs_or_table, pd.DataFrame):
        t = specs_or_table
        for c in ("matrix", "ops"):
            if c not in t.columns:
                raise InputError(f"table lacks column {c!r}")
        keys = [c for c in ("arch_hash", "matrix", "ops", "repeat") if c in t.columns]
        ids = t[keys].drop_duplicates().reset_index(drop=True)
        if "repeat" not in ids.columns:
            ids["repeat"] = 1
        return batch_from_strings(ids["matrix"].astype(str).tolist(), ids["ops"].astype(str).tolist()), ids
    specs = list(specs_or_table)
    if specs and not isinstance(specs[0], ModelSpec):
        raise InputError("predict expects a table (DataFrame) or a sequence of ModelSpec")
    batch = batch_from_specs(specs)
    ids = pd.DataFrame({"matrix": [s.matrix_str for s in specs], "ops": [s.ops_str for s in specs]})
    ids["repeat"] = 1
    return batch, ids


@dataclass
class ArchitectureSurrogate:
    """Cell → energy and training time at a budget (scikit-learn style)."""

    kind: str = "auto"  # auto | mlp | linear
    level: float = 0.9
    cal_fraction: float = 0.1
    seed: int = 0
    mlp_epochs: int = 60
    mlp_members: int = 3
    #: the network the table's runs trained (tables do not record it; the demo's is smaller)
    shape: NetworkShape = field(default_factory=NetworkShape)
    image_size: int = 32
    # Learned by fit() (or read by from_state), never passed to __init__: the constructor takes
    # hyperparameters only, as in scikit-learn.
    budget: int = field(default=0, init=False)
    device: str = field(default="", init=False)
    features: tuple[int, ...] = field(default=ALL_FEATURES, init=False)
    models: dict[str, Learner] = field(default_factory=dict, init=False)
    quantile: dict[str, float] = field(default_factory=dict, init=False)
    startup_share: dict[str, float] = field(default_factory=dict, init=False)
    wall_per_train_s: float = field(default=1.0, init=False)
    selection: dict[str, dict[str, float]] = field(default_factory=dict, init=False)
    n_archs: int = field(default=0, init=False)
    notes: list[str] = field(default_factory=list, init=False)

    def fit(self, table: pd.DataFrame, budget: int | None = None) -> ArchitectureSurrogate:
        """Learn log energy and log training time at ``budget`` (default: the budget with most
        runs measured to it) from the table's cells, choosing ridge or the MLP ensemble on
        held-out cells (ridge on fewer features below 30 cells). A target no cell holds is not
        learned and stays NaN in predictions, with a note. Returns the surrogate."""
        if self.kind not in ("auto", "mlp", "linear"):
            raise InputError(f"surrogate kind must be auto, mlp or linear, got {self.kind!r}")
        ts = training_set(table, budget)
        self.budget, self.device = ts.budget, ts.device
        self.startup_share, self.wall_per_train_s = ts.startup_share, ts.wall_per_train_s
        self.n_archs = n = len(ts.matrix)
        self.notes = []
        batch = batch_from_strings(ts.matrix, ts.ops)
        x_all = cell_features(batch, shape=self.shape, image_size=self.image_size)
        self._check_shape(table, batch, ts)
        self.features = ALL_FEATURES if n >= MIN_SPLIT_ARCHS else SMALL_FEATURES
        if n < MIN_SPLIT_ARCHS:
            self.notes.append(f"{n} architecture(s) measured to budget {ts.budget}: ridge on "
                              "multiply-adds, activations and parameters only")
        x = x_all[:, list(self.features)]
        rng = np.random.default_rng(self.seed)
        self.models, self.quantile, self.selection = {}, {}, {}
        for name in TARGETS:
            have = np.isfinite(ts.y[name])
            if not have.any():  # every cell has an energy; the table may hold no times
                self.notes.append(f"{name}: {int(have.sum())} architecture(s) hold it at budget "
                                  f"{ts.budget}: not learned, predictions leave it unknown (NaN)")
                continue
            y, xt = ts.y[name][have], x[have]
            if have.sum() >= MIN_SPLIT_ARCHS:
                self.models[name], self.quantile[name] = self._fit_split(xt, y, rng, name)
            else:
                self.models[name], self.quantile[name] = self._fit_small(xt, y)
        return self

    def _check_shape(self, table: pd.DataFrame, batch: CellBatch, ts: TrainingSet) -> None:
        """Say so when the table's parameter counts are not those of ``shape``'s network."""
        if "trainable_params" not in table.columns:
            return
        recorded = (table.groupby(["matrix", "ops"])["trainable_params"].first()
                    .reindex(list(zip(ts.matrix, ts.ops, strict=True))).to_numpy(float))
        ours = np.exp(cell_features(batch, shape=self.shape, image_size=self.image_size)[:, 0])
        ok = np.isfinite(recorded) & (recorded > 0)
        if ok.any() and not np.allclose(ours[ok], recorded[ok], rtol=1e-6):
            self.notes.append("the table's trainable_params differ from the analytic count of "
                              f"the network {asdict(self.shape)}: pass the trained network's "
                              "shape (features describe the network they are computed for)")

    def _candidates(self, n: int) -> list[str]:
        if self.kind != "auto":
            return [self.kind]
        return ["linear", "mlp"] if n >= MIN_MLP_ARCHS else ["linear"]

    def _make(self, kind: str) -> Learner:
        if kind == "mlp":
            return MLPEnsemble(epochs=self.mlp_epochs, members=self.mlp_members, seed=self.seed)
        return LinearModel(alpha=1e-3)

    def _fit_split(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                   name: str) -> tuple[Learner, float]:
        n = len(y)
        perm = rng.permutation(n)
        n_cal = max(int(round(self.cal_fraction * n)), 20)
        cal, train = perm[:n_cal], perm[n_cal:]
        best: tuple[float, Learner, np.ndarray] | None = None
        scores = {}
        for kind in self._candidates(n):
            model = self._make(kind).fit(x[train], y[train])
            resid = np.abs(model.predict(x[cal]) - y[cal])
            scores[kind] = float(resid.mean())
            if best is None or scores[kind] < best[0]:
                best = (scores[kind], model, resid)
        assert best is not None
        self.selection[name] = scores
        return best[1], conformal_quantile(best[2], self.level)

    def _fit_small(self, x: np.ndarray, y: np.ndarray) -> tuple[Learner, float]:
        n = len(y)
        alpha = 1e-1  # few points: shrink slopes hard
        resid = []
        for i in range(n if n >= 3 else 0):  # leave-one-out residuals for the interval
            keep = np.arange(n) != i
            m = LinearModel(alpha=alpha).fit(x[keep], y[keep])
            resid.append(abs(float(m.predict(x[i : i + 1])[0]) - y[i]))
        q = conformal_quantile(np.array(resid), self.level)
        if not math.isfinite(q):
            self.notes.append(f"too few architectures ({n}) for a {self.level:.0%} interval: "
                              "bounds are unbounded")
        return LinearModel(alpha=alpha).fit(x, y), q

    def predict_arrays(self, batch: CellBatch, budget: float) -> dict[str, np.ndarray]:
        """Predictions (and bounds) as arrays, in the order of ``batch``."""
        if not self.models:
            raise NotFittedError("ArchitectureSurrogate is not fitted: call fit(table) first")
        if not budget > 0:
            raise InputError(f"budget must be positive, got {budget!r}")
        feats = cell_features(batch, shape=self.shape, image_size=self.image_size)
        x = feats[:, list(self.features)]
        out: dict[str, np.ndarray] = {}
        for name in TARGETS:
            if name not in self.models:  # not in the table it learned from: unknown
                for key in (name, f"{name}_low", f"{name}_high"):
                    out[key] = np.full(len(x), np.nan)
                continue
            share = self.startup_share.get(name, 0.0)
            scale = share + (1.0 - share) * budget / self.budget
            pred = np.exp(self.models[name].predict(x)) * scale
            low, high = bounds(pred, self.quantile.get(name, math.inf))
            out[name], out[f"{name}_low"], out[f"{name}_high"] = pred, low, high
        out["trainable_params"] = np.rint(np.exp(feats[:, 0])).astype(np.int64)
        out["flops"] = 2.0 * np.rint(np.exp(feats[:, 1]))
        return out

    def predict(self, specs_or_table: pd.DataFrame | Sequence[ModelSpec], budget: float) -> pd.DataFrame:
        """One row per (architecture, repeat) of a table, or per spec; contract columns plus
        ``energy_j_low``/``energy_j_high`` and ``training_time_s_low``/``_high``."""
        batch, ids = _batch(specs_or_table)
        a = self.predict_arrays(batch, budget)
        n = len(ids)
        out = ids.copy()
        out["budget_epochs"] = np.full(n, int(round(budget)), dtype=np.int64)
        out["epoch"] = float(budget)
        out["device"] = self.device
        out["training_time_s"] = a["training_time_s"]
        out["wall_time_s"] = a["training_time_s"] * max(self.wall_per_train_s, 1.0)
        out["energy_j"] = a["energy_j"]
        out["estimated"] = True
        out["source"] = "surrogate"
        out["trainable_params"] = a["trainable_params"]
        out["flops"] = a["flops"]
        for name in TARGETS:
            out[f"{name}_low"] = a[f"{name}_low"]
            out[f"{name}_high"] = a[f"{name}_high"]
        return out

    # -- storage
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted surrogate as (JSON-able settings, named arrays) for the model file;
        :meth:`from_state` reads it back."""
        meta: dict[str, Any] = {
            "kind": self.kind, "level": self.level, "cal_fraction": self.cal_fraction,
            "seed": self.seed, "mlp_epochs": self.mlp_epochs, "mlp_members": self.mlp_members,
            "network": asdict(self.shape), "image_size": self.image_size,
            "budget": self.budget, "device": self.device, "features": [PHYSICS[i] for i in self.features],
            "quantile": {k: (None if not math.isfinite(v) else v) for k, v in self.quantile.items()},
            "startup_share": self.startup_share, "wall_per_train_s": self.wall_per_train_s,
            "selection": self.selection, "n_archs": self.n_archs, "notes": list(self.notes),
            "models": {},
        }
        meta["models"], arrays = pack_models(self.models)
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> ArchitectureSurrogate:
        """A surrogate from :meth:`state`'s output; unknown features or learners whose input
        width does not match the features are an :class:`~ecnas.errors.InputError`."""
        models = {}
        for name, m_meta in meta.get("models", {}).items():
            models[name] = learner_from_state(m_meta, model_arrays(arrays, name))
        unknown = [f for f in meta["features"] if f not in PHYSICS]
        if unknown:
            raise InputError(f"model file: unknown feature(s) {', '.join(unknown)}")
        for name, m in models.items():
            if np.asarray(m.mu).shape != (len(meta["features"]),):
                raise InputError(f"model file: learner {name!r} takes {np.asarray(m.mu).shape} "
                                 f"inputs, the model names {len(meta['features'])} features")
        out = cls(kind=str(meta["kind"]), level=float(meta["level"]),
                  cal_fraction=float(meta["cal_fraction"]), seed=int(meta["seed"]),
                  mlp_epochs=int(meta["mlp_epochs"]), mlp_members=int(meta["mlp_members"]),
                  shape=NetworkShape(**{k: int(v) for k, v in meta["network"].items()}),
                  image_size=int(meta["image_size"]))
        out.budget, out.device = int(meta["budget"]), str(meta["device"])
        out.features = tuple(PHYSICS.index(f) for f in meta["features"])
        out.models = models
        out.quantile = {k: (math.inf if v is None else float(v))
                        for k, v in meta["quantile"].items()}
        out.startup_share = {k: float(v) for k, v in meta["startup_share"].items()}
        out.wall_per_train_s = float(meta["wall_per_train_s"])
        out.selection = meta.get("selection", {})
        out.n_archs, out.notes = int(meta["n_archs"]), list(meta.get("notes", []))
        return out
