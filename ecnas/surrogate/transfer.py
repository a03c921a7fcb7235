"""Cross-device transfer: device A's surrogate + a few cells measured on device B → device B.

For each cell, device A's energy and training time at B's budget (measured when A's table
holds the cell, else A's architecture surrogate) are mapped to device B by a ridge model in
log space: ``log y_B = c + w·[log E_A, log T_A, log MACs, log activations]``. Few features and a
strong penalty keep it stable with ten cells; the analytic features let the map bend where the
two devices scale differently with network size. Intervals: conformal on leave-one-out errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError, NotFittedError
from ecnas.surrogate.architecture import TARGETS, ArchitectureSurrogate, _batch, training_set
from ecnas.surrogate.features import PHYSICS, CellBatch, cell_features
from ecnas.surrogate.intervals import bounds, conformal_quantile
from ecnas.surrogate.learners import LinearModel

MIN_CELLS = 10
_CELL_COLS = (PHYSICS.index("log_macs"), PHYSICS.index("log_activations"))


@dataclass
class DeviceTransfer:
    """``fit(source, target_table, source_table=None)``, then ``predict(specs_or_table, budget)``."""

    source: ArchitectureSurrogate
    alpha: float = 0.05
    level: float = 0.9
    min_cells: int = MIN_CELLS
    # learned by fit(), never passed to __init__ (scikit-learn's convention)
    budget: int = field(default=0, init=False)
    device: str = field(default="", init=False)
    startup_share: dict[str, float] = field(default_factory=dict, init=False)
    models: dict[str, LinearModel] = field(default_factory=dict, init=False)
    quantile: dict[str, float] = field(default_factory=dict, init=False)
    lookup: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict, init=False)

    def _source_values(self, batch: CellBatch, keys: list[tuple[str, str]]) -> np.ndarray:
        a = self.source.predict_arrays(batch, self.budget)
        e, t = a["energy_j"].copy(), a["training_time_s"].copy()
        for i, k in enumerate(keys):
            hit = self.lookup.get(k)
            if hit is not None:
                e[i], t[i] = hit
        feats = cell_features(batch, shape=self.source.shape,
                              image_size=self.source.image_size)[:, list(_CELL_COLS)]
        x = np.c_[np.log(e), np.log(t), feats]
        if "training_time_s" not in self.source.models:  # A learned energy only: no time input
            x[:, 1] = 0.0
        return x

    def fit(self, target_table: pd.DataFrame, source_table: pd.DataFrame | None = None,
            budget: int | None = None) -> DeviceTransfer:
        """Fit the map from device A to device B on the cells ``target_table`` (B) holds at
        ``budget``: A's values come from ``source_table`` where it holds the cell, else from A's
        surrogate. Fewer than ``min_cells`` cells is an :class:`~ecnas.errors.InputError`;
        intervals come from leave-one-out errors. Returns the transfer."""
        ts = training_set(target_table, budget)
        if len(ts.matrix) < self.min_cells:
            raise InputError(f"device {ts.device}: {len(ts.matrix)} architecture(s) measured to "
                             f"budget {ts.budget}; transfer needs at least {self.min_cells}")
        self.budget, self.device, self.startup_share = ts.budget, ts.device, ts.startup_share
        self.lookup = {}
        if source_table is not None:
            try:
                src = training_set(source_table, ts.budget)
            except InputError:
                src = None  # A has no run at B's budget: its surrogate (scaled) stands in
            if src is not None:
                for mat, o, e, t in zip(src.matrix, src.ops, src.y["energy_j"],
                                        src.y["training_time_s"], strict=True):
                    self.lookup[(mat, o)] = (float(np.exp(e)), float(np.exp(t)))
        batch, _ = _batch(pd.DataFrame({"matrix": ts.matrix, "ops": ts.ops}))
        x = self._source_values(batch, list(zip(ts.matrix, ts.ops, strict=True)))
        for name in TARGETS:
            have = np.isfinite(ts.y[name])  # device B's table may hold energy only
            if have.sum() < self.min_cells:
                continue
            y, xt = ts.y[name][have], x[have]
            resid = []
            for i in range(len(y)):
                keep = np.arange(len(y)) != i
                m = LinearModel(alpha=self.alpha).fit(xt[keep], y[keep])
                resid.append(abs(float(m.predict(xt[i : i + 1])[0]) - y[i]))
            self.quantile[name] = conformal_quantile(np.array(resid), self.level)
            self.models[name] = LinearModel(alpha=self.alpha).fit(xt, y)
        return self

    def predict(self, specs_or_table: Any, budget: float) -> pd.DataFrame:
        """Device B's energy and training time at ``budget`` (epochs) with intervals for cells
        (specs or a table with ``matrix`` and ``ops``), as ``surrogate`` rows marked estimated;
        a target B never measured is NaN."""
        if not self.models:
            raise NotFittedError("DeviceTransfer is not fitted")
        batch, ids = _batch(specs_or_table)
        keys = list(zip(ids["matrix"].astype(str), ids["ops"].astype(str), strict=True))
        x = self._source_values(batch, keys)
        out = ids.copy()
        out["budget_epochs"] = int(round(budget))
        out["epoch"] = float(budget)
        out["device"] = self.device
        for name in TARGETS:
            if name not in self.models:  # not measured on device B: unknown
                out[name] = out[f"{name}_low"] = out[f"{name}_high"] = np.nan
                continue
            share = self.startup_share.get(name, 0.0)
            scale = share + (1.0 - share) * budget / self.budget
            pred = np.exp(self.models[name].predict(x)) * scale
            out[name] = pred
            out[f"{name}_low"], out[f"{name}_high"] = bounds(pred, self.quantile.get(name, math.inf))
        out["wall_time_s"] = out["training_time_s"]
        out["estimated"] = True
        out["source"] = "surrogate"
        feats = cell_features(batch, shape=self.source.shape, image_size=self.source.image_size)
        params = np.rint(np.exp(feats[:, 0])).astype(np.int64)
        out["trainable_params"] = params
        return out
