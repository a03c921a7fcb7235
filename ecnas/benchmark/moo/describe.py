"""The words for a Pareto front, shared by its plot, `ecnas pareto` and the demo's summary.

One figure, one name everywhere: the plot's title, the command's first line and the summary's
heading all come from :func:`front_title`; the knee and the energy saving from
:func:`knee_text` and :func:`saving_text`. Where the energies come from (measured, estimated,
imported, extrapolated, predicted), on which device and for which data set is
:class:`EnergyOrigin`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecnas.tables.schema import SOURCES

#: what each origin is called on a plot, in a legend and in text (most direct first)
ORIGIN_LABELS = {
    "measured": "measured",
    "estimated": "estimated (no energy counter readable)",
    "imported": "imported (measured by the source)",
    "imported-estimated": "imported (estimated by the source)",
    "extrapolated": "extrapolated from shorter runs",
    "surrogate": "predicted by the surrogate",
}
_ORDER = tuple(ORIGIN_LABELS)

#: data-set names as the trainer and campaigns record them → as a reader knows them
DATASET_NAMES = {"embedded": "embedded digits (UCI, 32×32, not CIFAR-10)", "cifar10": "CIFAR-10"}


def front_title(budget: int) -> str:
    """The figure's one name (plot title, `ecnas pareto`, summary.md)."""
    return f"Pareto front: energy vs validation accuracy at {budget} epochs"


def energy_unit(max_j: float) -> tuple[str, float]:
    """(unit, joules per unit) that keeps the numbers of a plot or a line readable."""
    if not math.isfinite(max_j) or max_j < 1e3:
        return "J", 1.0
    if max_j < 1e6:
        return "kJ", 1e3
    return "MJ", 1e6


def energy_text(joules: float) -> str:
    """``12.3 kJ (3.42 Wh)``: the unit by size, and watt-hours beside it."""
    if not math.isfinite(joules):
        return "n/a"
    unit, scale = energy_unit(abs(joules))
    return f"{joules / scale:.3g} {unit} ({joules / 3600:.3g} Wh)"


def knee_text(knee: Mapping[str, Any]) -> str:
    """The knee as every output names it; with the reason where it says nothing."""
    if not knee:
        return "knee: none (no architecture has both energy and accuracy)"
    text = (f"knee: {knee['arch_hash']} ({knee['validation_accuracy_points']:.2f} % validation "
            f"accuracy at {energy_text(knee['energy_j'])})")
    if knee.get("note"):
        text += f"; {knee['note']}"
    return text


def saving_text(saved: float, max_accuracy_loss: float) -> str:
    """The energy saving as every output names it."""
    head = (f"energy saved at ≤ {max_accuracy_loss:g} point(s) of validation accuracy lost, "
            "vs the most accurate architecture")
    if not math.isfinite(saved):
        return f"{head}: n/a (too few points on the front)"
    return f"{head}: {100 * saved:.1f} %"


@dataclass(frozen=True)
class EnergyOrigin:
    """Where a front's energies come from: device, data set, and architectures per origin."""

    device: str
    dataset: str
    counts: tuple[tuple[str, int], ...]  # (origin key of ORIGIN_LABELS, architectures), > 0

    @property
    def estimated(self) -> bool:
        """True when any architecture's energy rests on estimated (not measured) figures, so a
        reader must not take the front as measured."""
        return any(k in ("estimated", "imported-estimated") or k.endswith("-from-estimates")
                   for k, _ in self.counts)

    def text(self) -> str:
        """``energy: 12 measured, 200 predicted by the surrogate · device … · data set …``"""
        parts = [f"{n} {origin_label(k)}" for k, n in self.counts]
        return (f"energy of {', '.join(parts) or 'no architecture'}; device {self.device}; "
                f"data set {self.dataset}")

    def to_dict(self) -> dict[str, Any]:
        """The origin as plain data: device, data set, whether estimated, architectures per
        origin key."""
        return {"device": self.device, "dataset": self.dataset, "estimated": self.estimated,
                "architectures_by_origin": {k: n for k, n in self.counts}}


def origin_label(key: str) -> str:
    """The reader's words for an origin key of ``ORIGIN_LABELS``, with ``, from estimates`` for
    a ``-from-estimates`` key."""
    if key.endswith("-from-estimates"):
        return ORIGIN_LABELS[key.removesuffix("-from-estimates")] + ", from estimates"
    return ORIGIN_LABELS[key]


def origin_keys(source: np.ndarray, estimated: np.ndarray, present: np.ndarray) -> np.ndarray:
    """One origin key per architecture from its present repeats ([A, R] arrays of the
    layout's source codes, estimated flags and presence): the most derived one wins."""
    keys = np.empty(source.shape[0], dtype=object)
    for a in range(source.shape[0]):
        rank, est = -1, False
        for code, flag, here in zip(source[a], estimated[a], present[a], strict=True):
            if not here:
                continue
            name = SOURCES[int(code)]
            est = est or bool(flag)
            rank = max(rank, _ORDER.index(name if name in _ORDER else "measured"))
        if rank < 0:
            keys[a] = None
            continue
        base = _ORDER[rank]
        if base == "measured" and est:
            base = "estimated"
        elif base == "imported" and est:
            base = "imported-estimated"
        elif base in ("extrapolated", "surrogate") and est:
            base += "-from-estimates"
        keys[a] = base
    return keys


def count_origins(keys: Sequence[Any] | np.ndarray) -> tuple[tuple[str, int], ...]:
    """(origin key, architectures) for each key present in ``keys``, in the order of the labels;
    keys absent from ``keys`` are left out."""
    order = [k for base in _ORDER for k in (base, base + "-from-estimates")]
    return tuple((k, n) for k in order if (n := sum(1 for x in keys if x == k)))


def dataset_of(metadata: Mapping[str, Any]) -> str:
    """The data set a table's metadata records, as a reader knows it ("not recorded" if
    none does). Campaign tables record it in ``campaign``, `ecnas train` in ``configs``,
    EC-NAS imports by their provenance (EC-NAS trained on CIFAR-10)."""
    names: list[str] = []
    direct = metadata.get("dataset")
    if isinstance(direct, str):
        names.append(direct)
    campaign = metadata.get("campaign")
    if isinstance(campaign, Mapping) and isinstance(campaign.get("dataset"), str):
        names.append(campaign["dataset"])
    for config in metadata.get("configs") or ():
        if isinstance(config, Mapping) and isinstance(config.get("dataset"), str):
            names.append(config["dataset"])
    for entry in metadata.get("provenance") or ():
        if isinstance(entry, Mapping) and entry.get("tool") == "ecnas import-ecnas":
            names.append("cifar10")
    unique = list(dict.fromkeys(names))
    if not unique:
        return "not recorded"
    return " + ".join(DATASET_NAMES.get(n, n) for n in unique)
