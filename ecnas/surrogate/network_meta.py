"""The network a table's runs trained, read from the table's metadata.

The surrogate's features (parameters, FLOPs, activations) describe one network shape: stem
channels, stacks, cells per stack. ecnas's own tables record it: ``ecnas train`` in
``configs`` (every field resolved), a campaign in ``campaign.recipe`` (keys it did not set
take the data set's defaults, as the trainer did). EC-NAS's data and tables that record
nothing are NAS-Bench-101's network. ``ecnas surrogate fit`` uses this unless a flag says
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ecnas.space.cost import NetworkShape
from ecnas.trainer.recipe import DATASET_DEFAULTS

SHAPE_KEYS = ("stem_channels", "num_stacks", "cells_per_stack")


@dataclass(frozen=True)
class RecordedShape:
    """A network shape and where it was read (for the command's note)."""

    stem_channels: int
    num_stacks: int
    cells_per_stack: int
    source: str


def _resolved(settings: Mapping[str, Any], dataset: Any) -> dict[str, int] | None:
    defaults = DATASET_DEFAULTS.get(str(dataset)) if dataset is not None else None
    out: dict[str, int] = {}
    for key in SHAPE_KEYS:
        v = settings.get(key)
        if v is None and defaults is not None:
            v = getattr(defaults, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            return None
        out[key] = v
    return out


def recorded_shape(meta: Mapping[str, Any]) -> RecordedShape | None:
    """The network shape ``meta`` records, or None where it records none (or several)."""
    configs = meta.get("configs")
    if isinstance(configs, list) and configs and all(isinstance(c, Mapping) for c in configs):
        shapes = {tuple(sorted((_resolved(c, c.get("dataset")) or {}).items())) for c in configs}
        if len(shapes) == 1 and () not in shapes:
            return RecordedShape(**dict(next(iter(shapes))), source="metadata configs (ecnas train)")
        return None
    campaign = meta.get("campaign")
    recipe = campaign.get("recipe") if isinstance(campaign, Mapping) else None
    if not isinstance(recipe, Mapping):
        recipe = meta.get("recipe")
    if isinstance(recipe, Mapping):
        dataset = campaign.get("dataset") if isinstance(campaign, Mapping) else meta.get("dataset")
        shape = _resolved(recipe, dataset or "cifar10")
        if shape is not None:
            return RecordedShape(**shape, source="metadata campaign recipe")
    return None


def network_shape(meta: Mapping[str, Any], *, stem_channels: int | None = None,
                  num_stacks: int | None = None,
                  cells_per_stack: int | None = None) -> tuple[NetworkShape, str]:
    """The shape to compute features for and a note saying where it came from: each value
    given (a command-line flag) wins, then the table's metadata, then NAS-Bench-101's."""
    given = {"stem_channels": stem_channels, "num_stacks": num_stacks,
             "cells_per_stack": cells_per_stack}
    rec = recorded_shape(meta)
    base = NetworkShape()
    values: dict[str, int] = {}
    for key, v in given.items():
        values[key] = int(v) if v is not None else int(getattr(rec or base, key))
    flags = [k for k, v in given.items() if v is not None]
    origin = rec.source if rec is not None else "NAS-Bench-101's (the table records none)"
    note = (f"network shape: stem {values['stem_channels']}, {values['num_stacks']} stack(s), "
            f"{values['cells_per_stack']} cell(s) per stack, from "
            + (f"the flags ({', '.join(flags)})" + (f" and {origin}" if len(flags) < 3 else "")
               if flags else origin))
    return NetworkShape(**values), note
