"""``SurrogateModel``: the extrapolator and the architecture surrogate together, as one file.

``predict(table, budget)`` is what ``ecnas surrogate predict`` prints: every (architecture,
repeat) of the table gets its value at ``budget`` from its own short checkpoints when it has
any (``source='extrapolated'``), and from the cell alone otherwise (``source='surrogate'``).
Runs already measured to ``budget`` keep their measured row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError, NotFittedError
from ecnas.surrogate.architecture import ArchitectureSurrogate
from ecnas.surrogate.extrapolation import Extrapolator, Prediction
from ecnas.surrogate.modelfile import read_model, write_model
from ecnas.tables.metadata import get_metadata


@dataclass
class SurrogateModel:
    """The model ``ecnas surrogate fit`` writes: an :class:`Extrapolator` for runs with short
    checkpoints, an :class:`ArchitectureSurrogate` for cells without, and ``info`` (notes, rows
    fitted on, the table's PUE, whether any input row was estimated)."""

    extrapolator: Extrapolator | None = None
    architecture: ArchitectureSurrogate | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def fit(self, table: pd.DataFrame, budget: int | None = None, *, kind: str = "auto",
            level: float = 0.9, seed: int = 0) -> SurrogateModel:
        """Fit both parts (parts given at construction keep their own settings). Each learns
        every target from the rows that hold it. The architecture part needs runs measured to
        a full budget; a table without any gets only the extrapolator, with a note
        (``info['notes']``)."""
        notes: list[str] = []
        ext = self.extrapolator or Extrapolator(level=level, seed=seed)
        self.extrapolator = ext.fit(table)
        notes += ext.notes
        arch = self.architecture or ArchitectureSurrogate(kind=kind, level=level, seed=seed)
        try:
            self.architecture = arch.fit(table, budget)
            notes += arch.notes
        except InputError as exc:
            self.architecture = None
            notes.append(f"no architecture surrogate: {exc}")

        meta = get_metadata(table)
        self.info = {"notes": notes, "rows": int(len(table)),
                     "pue": (meta.get("pue") or {}).get("factor"),
                     "estimated_input": bool(table["estimated"].any()) if "estimated" in table else None}
        return self

    def predict(self, table: pd.DataFrame, budget: float) -> pd.DataFrame:
        """The prediction table at ``budget`` (epochs) for every cell and repeat of ``table``;
        :meth:`predict_with_notes` also gives the notes."""
        return self.predict_with_notes(table, budget).table

    def predict_with_notes(self, table: pd.DataFrame, budget: float) -> Prediction:
        """``predict`` plus the notes of this prediction (the model's own notes first); the
        fitted model is left unchanged."""
        if self.extrapolator is None and self.architecture is None:
            raise NotFittedError("SurrogateModel is not fitted")
        notes = [str(n) for n in self.info.get("notes", [])]
        parts = []
        done: set[tuple[str, int]] = set()
        has_runs = all(c in table.columns for c in ("epoch", "budget_epochs", "energy_j",
                                                    "repeat", "device", "arch_hash"))
        if has_runs:
            measured = table[np.isclose(table["epoch"].to_numpy(float), float(budget))
                             & (table["budget_epochs"] == int(round(budget)))]
            if not measured.empty:
                parts.append(measured)
                done |= set(zip(measured["arch_hash"].astype(str), measured["repeat"].astype(int),
                                strict=True))
            if self.extrapolator is not None:
                rest = table[[(h, r) not in done for h, r in
                              zip(table["arch_hash"].astype(str), table["repeat"].astype(int), strict=True)]]
                ext = self.extrapolator.predict_with_notes(rest, budget)
                notes += [n for n in ext.notes if n not in notes]
                if not ext.table.empty:
                    parts.append(ext.table)
                    done |= set(zip(ext.table["arch_hash"].astype(str),
                                    ext.table["repeat"].astype(int), strict=True))
        if self.architecture is not None:
            left = table
            if done and "arch_hash" in table.columns and "repeat" in table.columns:
                left = table[[(h, r) not in done for h, r in
                              zip(table["arch_hash"].astype(str), table["repeat"].astype(int), strict=True)]]
            if not left.empty:
                parts.append(self.architecture.predict(left, budget))
        elif has_runs and len(done) < table[["arch_hash", "repeat"]].drop_duplicates().shape[0]:
            notes.append("some cells have no usable checkpoint and there is no architecture surrogate")
        if not parts:
            raise InputError("nothing to predict: the table has no usable checkpoints and the "
                             "model has no architecture surrogate")
        out = pd.concat([p for p in parts if not p.empty], ignore_index=True)
        if "energy_j_low" in out.columns:
            exact = out["source"].isin(["measured", "imported"])
            for c in ("energy_j", "training_time_s"):
                out.loc[exact, f"{c}_low"] = out.loc[exact, c]
                out.loc[exact, f"{c}_high"] = out.loc[exact, c]
        return Prediction(out, tuple(notes))

    def save(self, path: str | Path) -> Path:
        """Write both parts to an ``.npz`` model file (arrays and JSON, no pickle), atomically;
        returns the path."""
        meta: dict[str, Any] = {"info": self.info}
        arrays: dict[str, np.ndarray] = {}
        for key, part in (("extrapolator", self.extrapolator), ("architecture", self.architecture)):
            if part is None:
                meta[key] = None
                continue
            m, a = part.state()
            meta[key] = m
            arrays.update({f"{key}/{k}": v for k, v in a.items()})
        return write_model(path, meta, arrays)

    @classmethod
    def load(cls, path: str | Path) -> SurrogateModel:
        """Read a model file written by :meth:`save`; a malformed one is an
        :class:`~ecnas.errors.InputError`."""
        meta, arrays = read_model(path)

        def sub(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + "/")}

        try:
            ext = (Extrapolator.from_state(meta["extrapolator"], sub("extrapolator"))
                   if meta.get("extrapolator") else None)
            arch = (ArchitectureSurrogate.from_state(meta["architecture"], sub("architecture"))
                    if meta.get("architecture") else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: malformed surrogate model ({type(exc).__name__}: {exc})") from None
        return cls(ext, arch, dict(meta.get("info", {})))
