"""Energy table → EC-NAS TFRecord (NAS-Bench-101 framing, EC-NAS's ModelMetricsEnergy proto).

One record per (architecture, budget, repeat, device) run, with exactly the three evaluations
EC-NAS's reader expects: index 0 the first checkpoint (epoch 0), 1 the halfway checkpoint (the
one closest to half the final epoch), 2 the final one. Framing and proto come from
``ecnas.interop.tfrecord`` / ``ecnas.interop.proto`` (one codec in the project), the mapping
between the table's columns and the message's fields from ``ecnas.interop.record``.

Every field is written from the column that carries it, as the source wrote it: an imported
EC-NAS run gives EC-NAS's reader the source's value for every field (CO2, intensities,
forecasts, timestamps, per-device watts and joules, device names). A field the table does not
hold is left unset, never invented. Energies are kWh with the table's recorded facility factor
(PUE) re-applied where the table has no published kWh; ``ecnas import-ecnas`` measures the
factor back from ``total_energy / (GPU J + CPU J)`` and divides it out again, so an
exported-then-imported table equals the original (see docs/benchmark.md for the fields).

**Estimated energy.** The format has no field for it, so runs whose energy was estimated are
refused unless ``allow_estimated`` (``--allow-estimated``), and every export writes a sidecar
``<file>.ecnas.json`` (``ecnas.interop.sidecar``) saying, per record, measured or estimated
and by which meters; the importer reads it back, and reads "unknown" where it is missing.

Skipped, with counts: runs whose ``source`` is ``extrapolated`` or ``surrogate`` (not training
runs) and runs with fewer than three checkpoints. Checkpoints beyond the three are dropped and
counted (the format's reader looks at evaluations 1 and 2 only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.errors import InputError
from ecnas.interop.proto import Device, DeviceUsage, ModelMetricsEnergy, PowerUsageData, UsageJ
from ecnas.interop.record import (
    DEVICE_KINDS,
    device_count,
    device_usage,
    evaluation_message,
    run_message,
)
from ecnas.interop.sidecar import sidecar_path, write_sidecar
from ecnas.interop.tfrecord import EcnasRecord, write_records
from ecnas.profiles import get_profile
from ecnas.tables import check_schema, get_metadata
from ecnas.tables.kwh import kwh_of, pue_for, pue_of, to_kwh


@dataclass(frozen=True)
class ExportReport:
    """What an EC-NAS TFRecord export wrote and what it left out (and why)."""

    path: str
    records: int
    skipped_runs: dict[str, int] = field(default_factory=dict)
    checkpoints_dropped: int = 0
    pue: float = 1.0
    records_estimated: int = 0
    sidecar: str = ""
    records_unknown: int = 0  # measured or estimated: the table does not know

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data, for ``ecnas export --json``."""
        return {"path": self.path, "format": "ecnas-tfrecord", "records": self.records,
                "records_estimated": self.records_estimated,
                "records_unknown": self.records_unknown,
                "records_measured": self.records - self.records_estimated
                - self.records_unknown,
                "sidecar": self.sidecar, "skipped_runs": dict(self.skipped_runs),
                "checkpoints_dropped": self.checkpoints_dropped, "pue_reapplied": self.pue}


def _meters(meta: Mapping[str, Any]) -> list[str]:
    """The meters a table's metadata names (ecnas's own tables, or an import's)."""
    meters = meta.get("meters")
    if isinstance(meters, (list, tuple)) and meters:
        return [str(m) for m in meters]
    meter = (meta.get("measurement") or {}).get("meter") if isinstance(meta.get("measurement"),
                                                                       dict) else None
    return [str(meter)] if meter else []


def _opt(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def _profile_name(device: str, cache: dict[str, str]) -> str:
    """A board name the importer matches back to the profile ``device`` (tables without
    recorded device names)."""
    if device not in cache:
        profile = get_profile(device)
        if profile is not None and profile.match.names:
            cache[device] = profile.match.names[-1]
        elif profile is not None:
            cache[device] = profile.name
        else:
            cache[device] = device  # unknown profile: the importer names it unknown-<slug>
    return cache[device]


class _Rows:
    """Row views over the table's columns (numpy arrays), for the record mapping."""

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        self._columns = columns

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {name: col[i] for name, col in self._columns.items()}


def _power_from_components(final: Mapping[str, Any], comp: float, name: str) -> PowerUsageData:
    """GPU and CPU joules of a run whose table recorded no devices: the run's energy split by
    the final checkpoint's component shares (one CPU entry for all sockets; no watts). The
    board or CPU is named by its profile (``name``) so that the importer matches it back;
    without components the whole energy goes to the GPU entry, so that the facility factor
    can be measured back on import."""
    e_fin, g_fin, c_fin = (float(final[c]) for c in ("energy_j", "gpu_energy_j", "cpu_energy_j"))
    if not math.isnan(g_fin) and e_fin > 0:
        g_run = comp * g_fin / e_fin
        gpu = DeviceUsage((), (UsageJ((g_run,)),), (Device(name),))
        cpu = None if math.isnan(c_fin) else DeviceUsage((), (UsageJ((comp - g_run,)),), ())
        return PowerUsageData(gpu=gpu, cpu=cpu)
    if not math.isnan(c_fin):  # a CPU-only run: no GPU invented
        return PowerUsageData(cpu=DeviceUsage((), (UsageJ((comp,)),), (Device(name),)))
    return PowerUsageData(gpu=DeviceUsage((), (UsageJ((comp,)),), (Device(name),)))


def _run_metrics(rows: Sequence[int] | np.ndarray, epoch: np.ndarray, view: _Rows, pue: float,
                 devices: Mapping[str, int], gpu_name: str) -> ModelMetricsEnergy:
    first, final = rows[0], rows[-1]
    inner = rows[1:-1]
    half = inner[int(np.argmin(np.abs(epoch[inner] - epoch[final] / 2)))]
    evals = []
    for i in (first, half, final):
        r = view[i]
        evals.append(evaluation_message(
            r, energy_kwh=_opt(kwh_of(r["energy_kwh"], r["energy_j"], pue)),
            predicted_energy_kwh=_opt(kwh_of(r["predicted_energy_kwh"], r["predicted_energy_j"], pue))))
    fin = view[final]
    comp = float(fin["run_energy_j"])
    if math.isnan(comp):
        comp = float(fin["energy_j"])
    total_kwh = float(fin["run_energy_kwh"])
    parts = {kind: device_usage(fin, kind, n) for kind, n in devices.items()}
    if any(parts.values()):
        power = PowerUsageData(**parts)
    else:
        power = _power_from_components(fin, comp, gpu_name)
    return run_message(fin, evals, total_energy_kwh=_opt(total_kwh if not math.isnan(total_kwh)
                                                          else to_kwh(comp, pue)),
                       power=power)


def export_ecnas_tfrecord(table: Any, path: str | Path, *,
                          allow_estimated: bool = False) -> ExportReport:
    """Write ``table`` as an EC-NAS TFRecord file and its sidecar ``<file>.ecnas.json``; the
    report says what was skipped and how many records hold estimated energy.

    Runs with estimated energy are refused (:class:`~ecnas.errors.InputError`, before anything
    is written) unless ``allow_estimated``: EC-NAS's readers would take them for measured."""
    df = check_schema(table)
    meta = get_metadata(table)
    devs = df["device"].astype(str).unique()
    # one device's table (a merged bundle records a facility factor per device)
    pue = pue_for(meta, str(devs[0])) if len(devs) == 1 else pue_of(meta)
    skipped = {"extrapolated or surrogate": 0, "fewer than three checkpoints": 0}
    keep = df["source"].isin(("measured", "imported")).to_numpy()
    n = len(df)
    floats = ("energy_j", "gpu_energy_j", "cpu_energy_j", "energy_kwh", "predicted_energy_j",
              "predicted_energy_kwh", "run_energy_j", "run_energy_kwh")
    cols = {c: (df[c].to_numpy(dtype="float64") if c in df.columns else np.full(n, np.nan))
            for c in floats}
    # every other column as it is: the record mapping picks the ones it knows
    cols.update({c: df[c].to_numpy() for c in df.columns if c not in cols})
    view = _Rows(cols)
    epoch = cols["epoch"].astype("float64")
    devices = {kind: device_count(df.columns, kind) for kind in DEVICE_KINDS}
    runs = df[["arch_hash", "budget_epochs", "repeat", "device"]]
    run_id = runs.groupby(list(runs.columns), sort=True, observed=True).ngroup().to_numpy()
    excluded = np.unique(run_id[~keep])
    skipped["extrapolated or surrogate"] = int(excluded.size)
    order = np.lexsort((epoch, run_id))
    bounds = np.flatnonzero(np.diff(run_id[order])) + 1
    hashes, budgets = df["arch_hash"].to_numpy(), df["budget_epochs"].to_numpy()
    mats, opss, device_ids = df["matrix"].to_numpy(), df["ops"].to_numpy(), df["device"].to_numpy()
    name_cache: dict[str, str] = {}
    excluded_set = set(excluded.tolist())
    estimated = df["estimated"].to_numpy(dtype=bool)
    # a table imported from a TFRecord without its sidecar does not know: its runs are never
    # written out as measured (the sidecar says unknown), and need the same flag as estimates
    unknown = meta.get("estimated_unknown")
    if unknown and not allow_estimated:
        why = unknown.get("because", "the source does not say") if isinstance(unknown, dict) \
            else "the source does not say"
        raise InputError(
            f"whether the energy of these runs was measured or estimated is unknown ({why}) and "
            "EC-NAS's TFRecord has no field to say so: pass --allow-estimated to export them "
            f"anyway (the sidecar {sidecar_path(path).name} then says unknown), or export a "
            "bundle, which keeps it")
    est_runs = np.unique(run_id[estimated & keep])
    if est_runs.size and not allow_estimated:
        total = int(np.unique(run_id[keep]).size)
        raise InputError(
            f"{est_runs.size} of {total} runs hold estimated energy and EC-NAS's TFRecord has "
            "no field to say so (its readers would take them for measured): pass "
            "--allow-estimated to export them anyway (the flags then go to the sidecar "
            f"{sidecar_path(path).name}), or export a bundle, which keeps them")
    sources = df["source"].astype(str).to_numpy()
    repeats = df["repeat"].to_numpy()
    entries: list[dict[str, Any]] = []
    dropped = 0

    def records() -> Any:
        nonlocal dropped
        for rows in np.split(order, bounds):
            if len(rows) == 0 or int(run_id[rows[0]]) in excluded_set:
                continue
            if len(rows) < 3:
                skipped["fewer than three checkpoints"] += 1
                continue
            dropped += len(rows) - 3
            i = rows[0]
            m = _run_metrics(rows, epoch, view, pue, devices,
                             _profile_name(str(device_ids[i]), name_cache))
            entries.append({"arch_hash": str(hashes[i]), "epochs": int(budgets[i]),
                            "repeat": int(repeats[i]), "device": str(device_ids[i]),
                            "estimated": None if unknown else bool(estimated[rows].any()),
                            "source": str(sources[i])})
            yield EcnasRecord(str(hashes[i]), int(budgets[i]), str(mats[i]), str(opss[i]), m).to_bytes()

    count = 0

    out = Path(path)

    def counted() -> Any:
        nonlocal count
        for r in records():
            count += 1
            yield r
        if count == 0:
            # raised inside the atomic write: the temp file goes, a previous output stays
            raise InputError(f"{out}: no run can be written in EC-NAS's format (skipped: "
                             f"{', '.join(f'{v} {k}' for k, v in skipped.items() if v)})")

    write_records(out, counted())
    because = meta.get("estimated_because")
    side = write_sidecar(out, entries, meters=_meters(meta),
                         estimated_because=[str(b) for b in because]
                         if isinstance(because, (list, tuple)) else [])
    n_est = sum(1 for e in entries if e["estimated"])
    n_unknown = sum(1 for e in entries if e["estimated"] is None)
    return ExportReport(str(out), count, {k: v for k, v in skipped.items() if v}, dropped, pue,
                        n_est, str(side), n_unknown)
