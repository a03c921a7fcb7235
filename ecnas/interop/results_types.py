"""Types of an EC-NAS ``results.json`` checked before it is converted: one line naming the file
and the field, never a traceback from deep inside the conversion, and never a NaN imported
as if it were a measurement."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ecnas.errors import InputError

#: numbers a run must carry, finite and >= 0 (what the table and its checks are built from)
RUN_NUMBERS = ("total_energy (kWh)", "total_time")
EVAL_NUMBERS = ("epochs", "training_time", "train_accuracy", "validation_accuracy",
                "test_accuracy", "energy (kWh)")
#: numbers that may be absent (or null), finite when present
OPTIONAL_RUN = ("trainable_params", "total_co2eq (g)", "avg_intensity (gCO2/kWh)")
OPTIONAL_EVAL = ("training_steps", "predict_time", "co2eq (g)", "avg_intensity (gCO2/kWh)",
                 "predicted_energy (kWh)", "predicted_co2eq (g)", "predicted_training_time",
                 "predicted_avg_intensity (gCO2/kWh)")
TEXT = ("model_hash", "start_emission", "stop_emission", "checkpoint_path")


def _number(where: str, key: str, value: Any, *, required: bool) -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where}: {key!r} is {value!r}, not a number")
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{where}: {key!r} is {value!r}, not a finite number >= 0")


def _fields(where: str, d: Mapping[str, Any], required: tuple[str, ...],
            optional: tuple[str, ...]) -> None:
    for key in required:
        if key not in d:
            raise InputError(f"{where}: no {key!r}")
        _number(where, key, d[key], required=True)
    for key in optional:
        _number(where, key, d.get(key), required=False)
    for key in TEXT:
        if d.get(key) is not None and not isinstance(d[key], str):
            raise InputError(f"{where}: {key!r} is {d[key]!r}, not text")


def check_results_types(results: Mapping[str, Any], where: str) -> None:
    """Raise ``InputError`` naming the first field of ``results`` with a wrong type or a
    non-finite or negative number."""
    _fields(where, results, RUN_NUMBERS, OPTIONAL_RUN)
    evals = results.get("evaluation_results")
    if not isinstance(evals, list) or not evals:
        raise InputError(f"{where}: 'evaluation_results' is not a non-empty list")
    for i, ev in enumerate(evals):
        if not isinstance(ev, dict):
            raise InputError(f"{where}: evaluation_results[{i}] is not an object")
        _fields(f"{where}: evaluation_results[{i}]", ev, EVAL_NUMBERS, OPTIONAL_EVAL)
    usages = results.get("avg_power_usages:", results.get("avg_power_usages"))
    if usages is None:
        return
    if not isinstance(usages, dict):
        raise InputError(f"{where}: 'avg_power_usages:' is not an object")
    for kind, u in usages.items():
        if not isinstance(u, dict):
            raise InputError(f"{where}: avg_power_usages {kind!r} is not an object")
        for key, rows in u.items():
            if key == "devices":
                continue
            if not isinstance(rows, list) or not all(
                    isinstance(r, list) and all(isinstance(v, (int, float))
                                                and not isinstance(v, bool) for v in r)
                    for r in rows):
                raise InputError(f"{where}: avg_power_usages {kind!r} {key!r} is not a list "
                                 "of lists of numbers")
