"""EC-NAS's record as table columns: every field of ``ModelMetricsEnergy``, carried as written.

An imported EC-NAS run keeps, beside the contract's columns, every value its source recorded
(results.json or a TFRecord's protobuf), untouched: kWh, grams, watts and joules are the floats
the source held, timestamps and device names the text it held. The TFRecord export writes them
back, so a tree → ``import-ecnas`` → ``export --format ecnas-tfrecord`` gives EC-NAS's reader
the source's value for every field. Tables that ecnas measured fill the same columns from the
meters (``ecnas.tracker.rows.record_columns``); what nobody measured stays missing (NaN) and is
left unset in the export.

Per checkpoint (one evaluation of the run):

======================================  ===========================================
column                                  EC-NAS field (results.json key)
======================================  ===========================================
``energy_kwh``                          ``energy`` (``energy (kWh)``), PUE included
``co2eq_g``                             ``co2eq`` (``co2eq (g)``)
``intensity_g_per_kwh``                 ``avg_intensity`` (``avg_intensity (gCO2/kWh)``)
``started_at`` / ``stopped_at``         ``start_emission`` / ``stop_emission`` (text)
``predicted_energy_kwh``                ``pred_energy`` (``predicted_energy (kWh)``)
``predicted_co2eq_g``                   ``pred_co2eq`` (``predicted_co2eq (g)``)
``predicted_training_time_s``           ``pred_training_time`` (``predicted_training_time``)
``predicted_intensity_g_per_kwh``       ``pred_avg_intensity`` (``predicted_avg_intensity …``)
``checkpoint_path``                     ``checkpoint_path`` (text)
======================================  ===========================================

Per run (the same value on every checkpoint row of the run):

======================================  ===========================================
``run_time_s``                          ``total_time``
``run_energy_kwh``                      ``total_energy`` (``total_energy (kWh)``)
``run_co2eq_g``                         ``total_co2eq`` (``total_co2eq (g)``)
``run_intensity_g_per_kwh``             ``overall_avg_intensity`` (``avg_intensity (gCO2/kWh)``)
``run_started_at`` / ``run_stopped_at`` ``start_emission`` / ``stop_emission`` (text)
``gpu<i>_name`` / ``cpu<i>_name``       ``avg_power_usages.<gpu|cpu>.devices[i]``, exactly as
                                        recorded (" cpu:1" keeps its space)
``gpu<i>_id`` / ``cpu<i>_id``           that name normalized (``normalize_device_name``)
                                        for matching hardware profiles
``run_gpu<i>_power_w`` …                ``…avg_power_usages (W)`` value i (mean W)
``run_gpu<i>_energy_j`` …               ``…avg_energy_usages (J)`` value i (J, no PUE)
======================================  ===========================================

The device values are numbered in the order the source lists them (results.json nests them as
``[[v0, v1]]``; the protobuf holds one ``UsageW``/``UsageJ`` per value). A column nobody in
the table has is left out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ecnas.interop.proto import (
    Device,
    DeviceUsage,
    EvaluationDataEnergy,
    ModelMetricsEnergy,
    PowerUsageData,
    UsageJ,
    UsageW,
)
from ecnas.profiles.matching import normalize_device_name
from ecnas.tables.schema import Column

#: (EvaluationDataEnergy field, column) for the per-checkpoint fields beyond the contract's
CHECKPOINT_FIELDS: tuple[tuple[str, Column], ...] = (
    ("energy", Column("energy_kwh", "float", "kWh", False,
                      "the checkpoint's energy as EC-NAS published it (facility factor included)")),
    ("co2eq", Column("co2eq_g", "float", "g", False, "CO2-equivalent up to the checkpoint")),
    ("avg_intensity", Column("intensity_g_per_kwh", "float", "gCO2/kWh", False,
                             "carbon intensity used for co2eq_g")),
    ("start_emission", Column("started_at", "str", "", False,
                              "start of the metering window ending at the checkpoint, as recorded")),
    ("stop_emission", Column("stopped_at", "str", "", False, "end of that window, as recorded")),
    ("pred_energy", Column("predicted_energy_kwh", "float", "kWh", False,
                           "carbontracker's forecast of the run's energy, as published")),
    ("pred_co2eq", Column("predicted_co2eq_g", "float", "g", False,
                          "carbontracker's forecast of the run's CO2-equivalent")),
    ("pred_training_time", Column("predicted_training_time_s", "float", "s", False,
                                  "carbontracker's forecast of the run's duration")),
    ("pred_avg_intensity", Column("predicted_intensity_g_per_kwh", "float", "gCO2/kWh", False,
                                  "carbon intensity of that forecast")),
    ("checkpoint_path", Column("checkpoint_path", "str", "", False, "as recorded")),
)
#: (ModelMetricsEnergy field, column) for the per-run fields (repeated on the run's rows)
RUN_FIELDS: tuple[tuple[str, Column], ...] = (
    ("total_time", Column("run_time_s", "float", "s", False, "the run's total time")),
    ("total_energy", Column("run_energy_kwh", "float", "kWh", False,
                            "the run's energy as EC-NAS published it (facility factor included)")),
    ("total_co2eq", Column("run_co2eq_g", "float", "g", False, "the run's CO2-equivalent")),
    ("start_emission", Column("run_started_at", "str", "", False, "start of the run, as recorded")),
    ("stop_emission", Column("run_stopped_at", "str", "", False, "end of the run, as recorded")),
    ("overall_avg_intensity", Column("run_intensity_g_per_kwh", "float", "gCO2/kWh", False,
                                     "carbon intensity over the run")),
)
DEVICE_KINDS = ("gpu", "cpu")
#: ``gpu0_name``, ``cpu1_id``, ``run_gpu0_power_w``, ``run_cpu1_energy_j`` …
DEVICE_COLUMN = re.compile(r"^(?:run_)?(gpu|cpu)(\d+)_(name|id|power_w|energy_j)$")
RECORD_COLUMNS: tuple[Column, ...] = tuple(c for _, c in (*CHECKPOINT_FIELDS, *RUN_FIELDS))


def device_columns(kind: str, i: int) -> tuple[str, str, str, str]:
    """(name, id, power, energy) column names of device ``i`` of ``kind`` (``gpu``/``cpu``)."""
    return f"{kind}{i}_name", f"{kind}{i}_id", f"run_{kind}{i}_power_w", f"run_{kind}{i}_energy_j"


def device_count(columns: Iterable[str], kind: str) -> int:
    """How many ``kind`` devices a table's columns describe."""
    found = [int(m.group(2)) for c in columns if (m := DEVICE_COLUMN.match(c)) and m.group(1) == kind]
    return max(found) + 1 if found else 0


def record_columns_in(columns: Iterable[str]) -> list[str]:
    """The EC-NAS record columns among ``columns`` (what a derived table must not inherit:
    they describe the source run's measurement, not the derived one)."""
    names = {c.name for c in RECORD_COLUMNS}
    return [c for c in columns if c in names or DEVICE_COLUMN.match(c)]


def device_id(name: str) -> str:
    """The normalized id of a device name (what profile matching compares)."""
    return normalize_device_name(name)


# ------------------------------------------------------------------ source → columns
def checkpoint_values(ev: EvaluationDataEnergy) -> dict[str, Any]:
    """The per-checkpoint record columns of one evaluation (None where the source has none)."""
    return {col.name: getattr(ev, field) for field, col in CHECKPOINT_FIELDS}


def run_values(m: ModelMetricsEnergy, ids: dict[str, str] | None = None) -> dict[str, Any]:
    """The per-run record columns of one run: totals, timestamps, devices (None where absent).

    ``ids`` caches name → normalized id across runs.
    """
    ids = {} if ids is None else ids
    out: dict[str, Any] = {col.name: getattr(m, field) for field, col in RUN_FIELDS}
    p = m.avg_power_usages
    for kind in DEVICE_KINDS:
        usage = getattr(p, kind) if p is not None else None
        if usage is None:
            continue
        watts, joules, names = usage.watts, usage.joules, [d.name for d in usage.devices]
        for i in range(max(len(watts), len(joules), len(names))):
            c_name, c_id, c_w, c_j = device_columns(kind, i)
            name = names[i] if i < len(names) else None
            out[c_name] = name
            if name is not None:
                if name not in ids:
                    ids[name] = device_id(name)
                out[c_id] = ids[name]
            out[c_w] = watts[i] if i < len(watts) else None
            out[c_j] = joules[i] if i < len(joules) else None
    return out


# ------------------------------------------------------------------ columns → message
def present(value: Any) -> bool:
    """Whether a table cell holds a value (not None/NaN/pandas NA)."""
    if value is None:
        return False
    if isinstance(value, float):
        return not math.isnan(value)
    try:
        return not bool(value != value)
    except (TypeError, ValueError):  # pandas.NA and friends refuse bool()
        return False


def _float(value: Any) -> float | None:
    return float(value) if present(value) else None


def _text(value: Any) -> str | None:
    return str(value) if present(value) else None


def _cast(col: Column, value: Any) -> Any:
    return _text(value) if col.dtype == "str" else _float(value)


def evaluation_message(row: Mapping[str, Any], *, energy_kwh: float | None,
                       predicted_energy_kwh: float | None) -> EvaluationDataEnergy:
    """One ``EvaluationDataEnergy`` from one checkpoint row (columns missing: unset).

    The two energies are given by the caller, which decides between the published kWh and
    the joules (``ecnas.tables.kwh.kwh_of``).
    """
    values = {field: _cast(col, row.get(col.name)) for field, col in CHECKPOINT_FIELDS}
    values["energy"] = energy_kwh
    values["pred_energy"] = predicted_energy_kwh
    return EvaluationDataEnergy(
        current_epoch=_float(row.get("epoch")), training_time=_float(row.get("training_time_s")),
        train_accuracy=_float(row.get("train_accuracy")),
        validation_accuracy=_float(row.get("validation_accuracy")),
        test_accuracy=_float(row.get("test_accuracy")), **values)


def device_usage(row: Mapping[str, Any], kind: str, n: int) -> DeviceUsage | None:
    """The ``GPU``/``CPU`` message of a run from its ``n`` numbered device columns (None when
    the row has none): each list holds the present values in device order."""
    watts, joules, names = [], [], []
    for i in range(n):
        c_name, _, c_w, c_j = device_columns(kind, i)
        if (w := _float(row.get(c_w))) is not None:
            watts.append(UsageW((w,)))
        if (j := _float(row.get(c_j))) is not None:
            joules.append(UsageJ((j,)))
        if (name := _text(row.get(c_name))) is not None:
            names.append(Device(name))
    if not (watts or joules or names):
        return None
    return DeviceUsage(tuple(watts), tuple(joules), tuple(names))


def run_message(final: Mapping[str, Any], evaluations: Sequence[EvaluationDataEnergy], *,
                total_energy_kwh: float | None, power: PowerUsageData | None) -> ModelMetricsEnergy:
    """The ``ModelMetricsEnergy`` of a run from its final row's per-run columns."""
    values = {field: _cast(col, final.get(col.name)) for field, col in RUN_FIELDS}
    values["total_energy"] = total_energy_kwh
    params = final.get("trainable_params")
    return ModelMetricsEnergy(
        evaluation_data_energy=tuple(evaluations),
        trainable_parameters=int(params) if params is not None and present(params) else None,
        avg_power_usages=power, **values)
