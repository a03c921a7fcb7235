"""EC-NAS runs (results.json or TFRecord metrics) → energy-table rows.

Decisions, recorded in the table's metadata so nothing is hidden:

- **PUE.** carbontracker multiplied every energy by a fixed facility factor. On the data,
  ``total_energy (kWh) × 3.6e6 / (GPU J + CPU J)`` is 1.590 ± 0.0002 on all 2,532 5V runs
  (the spread is the 6-decimal rounding of the kWh). The factor is measured from the data
  (median over runs, rounded to 3 decimals), divided out of every energy and recorded as
  ``metadata["pue"]`` with the observed spread; ``energy_includes_pue`` is false.
- **Components.** results.json gives only whole-run GPU and per-socket CPU joules; the
  cumulative checkpoint energies are totals. Each checkpoint's energy is split by the run's
  GPU/CPU shares (``component_split`` in metadata), so ``energy_j = gpu + cpu`` exactly.
  DRAM was not metered: NaN.
- **Wall time.** Seconds from the run's first ``start_emission`` to the checkpoint's
  ``stop_emission`` (1-s timestamps), never below the training time; where timestamps are
  missing, training time plus cumulative evaluation time.
- **The record.** Every field of EC-NAS's record is kept as the source wrote it, in the columns
  of ``ecnas.interop.record`` (energies in kWh, CO2, intensities, forecasts, timestamps, per-device
  power and joules, device names): the TFRecord export writes them back unchanged.
- **Hashes.** Each run's hash (directory name or record field) is checked against the iso-hash
  recomputed from its matrix and ops; a mismatch is an error unless ``keep_bad_hashes``, which
  keeps the source's hash so that ``ecnas check`` reports it (check ``hash-matches-spec``).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError
from ecnas.interop.proto import ModelMetricsEnergy
from ecnas.interop.record import (
    DEVICE_COLUMN,
    DEVICE_KINDS,
    RECORD_COLUMNS,
    checkpoint_values,
    run_values,
)
from ecnas.meters.base import DeviceInfo, DeviceKind
from ecnas.profiles import load_profiles, match_profile, normalize_device_name
from ecnas.space import ModelSpec
from ecnas.tables.kwh import KWH_J
from ecnas.tables.metadata import provenance_entry, set_metadata
from ecnas.tables.schema import COLUMN_NAMES

__all__ = ["CARBONTRACKER_PUE", "ECNAS_CPU_PROFILE", "KWH_J", "RunInput", "runs_to_table"]
#: carbontracker's fixed PUE (v1.1.x), used only when the data cannot tell (no component J)
CARBONTRACKER_PUE = 1.59
#: EC-NAS measured on a dual-socket Intel host; results name the sockets only "cpu:0/1"
ECNAS_CPU_PROFILE = "generic-intel-xeon"
_TS = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class RunInput:
    """One EC-NAS training run as read from its source (before conversion)."""

    arch_hash: str
    adjacency: Any  # 0/1 string or nested list
    ops: Any  # "op,op" string or integer labels
    budget_epochs: int
    repeat: int
    metrics: ModelMetricsEnergy
    where: str = ""
    eval_extras: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    #: measured (False) or estimated (True) as the source says; None where nothing says (a
    #: TFRecord without its sidecar): the row then reads ``estimated = false`` only because the
    #: contract's column is boolean, and the metadata's ``estimated_unknown`` says so
    estimated: bool | None = False
    meters: tuple[str, ...] = ()


def _ts(text: str | None) -> _dt.datetime | None:
    if not text:
        return None
    try:
        return _dt.datetime.strptime(text.strip(), _TS)
    except ValueError:
        return None


#: a device id, as profile ids are: kebab-case (it names bundle files: metrics.<id>.npy)
DEVICE_ID_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
DEVICE_ID_MAX = 64


def check_device_id(device: str, where: str = "--device") -> str:
    """``device`` when it is a kebab-case id of at most 64 characters (lower-case letters,
    digits and '-', like a profile id), else an :class:`InputError` naming ``where``."""
    if not (isinstance(device, str) and DEVICE_ID_RE.fullmatch(device)
            and len(device) <= DEVICE_ID_MAX):
        raise InputError(f"{where} {str(device)[:80]!r}: not a device id: kebab-case, lower-case "
                         "letters, digits and '-', at most 64 characters, like a profile id "
                         "(e.g. nvidia-a100-40gb)")
    return device


def _check_timestamps(run: RunInput) -> None:
    """Every timestamp the run holds parses (an empty one is absent): ``yesterday`` is refused
    rather than quietly dropped from the wall time."""
    m = run.metrics
    fields = [("start_emission", m.start_emission), ("stop_emission", m.stop_emission)]
    for i, ev in enumerate(m.evaluation_data_energy):
        fields += [(f"evaluation {i + 1} start_emission", ev.start_emission),
                   (f"evaluation {i + 1} stop_emission", ev.stop_emission)]
    for name, text in fields:
        if text and text.strip() and _ts(text) is None:
            raise InputError(f"{run.where}: {name} {text[:60]!r}: not a timestamp like "
                             "'2022-10-21 20:26:51'")


def _match_device(name: str, kind: DeviceKind, cache: dict[tuple[str, str], Any]) -> str:
    key = (kind, name)
    if key not in cache:
        # the profiles are loaded once per import, kept in the same cache as the answers
        profiles = cache.setdefault(("_profiles", ""), load_profiles())
        match = match_profile(DeviceInfo(domain=f"{kind}:0", kind=kind, name=name), profiles)
        if match.profile is not None:
            cache[key] = match.profile.id
        else:
            # a free-text model name becomes a kebab-case id: "../../etc/passwd" is
            # "unknown-etc-passwd", never a path
            slug = re.sub(r"[^a-z0-9]+", "-", normalize_device_name(name).lower()).strip("-")
            cache[key] = f"unknown-{slug[:DEVICE_ID_MAX - 8].strip('-') or 'device'}"
    return cache[key]


def _nan(v: float | None) -> float:
    return float("nan") if v is None else float(v)


@dataclass(frozen=True)
class _Run:
    """One run with what the conversion needs resolved: cell, hash, component joules, device."""

    run: RunInput
    spec: Any
    arch: str
    gpu_j: float | None  # whole-run GPU joules (PUE excluded), None where not recorded
    cpu_j: float | None
    device: str

    @property
    def component_j(self) -> float:
        return (self.gpu_j or 0.0) + (self.cpu_j or 0.0)


def _resolve(runs: Sequence[RunInput], *, device: str | None, keep_bad_hashes: bool,
             progress: Any) -> tuple[list[_Run], int]:
    """Each run's pruned cell, checked hash, component joules and device profile id;
    and the number of hash mismatches (an error unless ``keep_bad_hashes``)."""
    spec_cache: dict[tuple[str, str], Any] = {}
    dev_cache: dict[tuple[str, str], Any] = {}
    bad_hashes: list[str] = []
    out = []
    for k, run in enumerate(runs):
        adj = run.adjacency if isinstance(run.adjacency, str) else repr(run.adjacency)
        ops = run.ops if isinstance(run.ops, str) else repr(run.ops)
        if (adj, ops) not in spec_cache:
            try:
                spec_cache[(adj, ops)] = ModelSpec(run.adjacency, run.ops)
            except InputError as exc:
                raise InputError(f"{run.where}: invalid cell ({exc})") from None
        spec = spec_cache[(adj, ops)]
        arch = spec.hash()
        if arch != run.arch_hash:
            bad_hashes.append(f"{run.where}: {run.arch_hash} ≠ recomputed {arch}")
            if keep_bad_hashes:
                arch = run.arch_hash
        m = run.metrics
        if not m.evaluation_data_energy:
            raise InputError(f"{run.where}: no evaluations (checkpoints)")
        _check_timestamps(run)
        p = m.avg_power_usages
        gpu_j = sum(p.gpu.joules) if p and p.gpu else None
        cpu_j = sum(p.cpu.joules) if p and p.cpu else None
        # the profile of the GPU; of the CPU for a run without one (a CPU-only ecnas export)
        kind: DeviceKind = "gpu" if p and p.gpu and p.gpu.device_names else "cpu"
        names = [n for n in (getattr(p, kind).device_names if p and getattr(p, kind) else []) if n]
        dev = device or (_match_device(names[0].strip(), kind, dev_cache) if names else None)
        if dev is None:
            raise InputError(f"{run.where}: no device name in the data; pass device=…/--device")
        out.append(_Run(run, spec, arch, gpu_j, cpu_j, dev))
        if progress is not None and (k + 1) % 500 == 0:
            progress(k + 1, len(runs))
    if bad_hashes and not keep_bad_hashes:
        raise InputError(f"{bad_hashes[0]} (iso-hash mismatch; {len(bad_hashes)} run(s) in all; "
                         "--keep-bad-hashes imports them for 'ecnas check' to report)")
    return out, len(bad_hashes)


@dataclass(frozen=True)
class _Pue:
    factor: float
    source: str
    observed: np.ndarray | None  # total_energy × 3.6e6 / (GPU J + CPU J) per run


def _pue(runs: Sequence[_Run], given: float | None) -> _Pue:
    """The facility factor: given, measured from the data (median, 3 decimals) or assumed."""
    obs = [r.run.metrics.total_energy * KWH_J / r.component_j for r in runs
           if r.run.metrics.total_energy and r.component_j > 0]
    observed = np.asarray(obs) if obs else None
    if given is not None:
        factor, source = float(given), "given by the user"
    elif obs:
        factor = round(statistics.median(obs), 3)
        source = "measured: median over runs of total_energy / (GPU J + CPU J)"
    else:
        factor, source = CARBONTRACKER_PUE, "assumed: carbontracker's fixed PUE (no component joules in the data)"
    if not factor > 0:
        raise InputError(f"PUE factor must be > 0, got {factor}")
    return _Pue(factor, source, observed)


#: ecnas's own columns beside the contract's (derived in joules / from results.json extras)
_DERIVED = ("run_energy_j", "predicted_energy_j")
_EXTRAS = (("predict_time", "eval_time_s"), ("training_steps", "training_steps"))


def _contract_rows(r: _Run, factor: float, cols: dict[str, list[Any]],
                   extras: dict[str, list[Any]]) -> None:
    """Append the run's checkpoints to the contract's columns (and ecnas's derived ones)."""
    m = r.run.metrics
    comp = r.component_j
    gshare = r.gpu_j / comp if r.gpu_j is not None and comp > 0 else None
    t0 = _ts(m.start_emission) or _ts(m.evaluation_data_energy[0].start_emission)
    eval_cum = 0.0
    run_energy_j = comp if comp > 0 else _nan(m.total_energy) * KWH_J / factor
    given = list(r.run.eval_extras)
    for i, ev in enumerate(m.evaluation_data_energy):
        e = _nan(ev.energy) * KWH_J / factor
        if gshare is None:
            g, c = float("nan"), float("nan")
        elif r.cpu_j is None:
            g, c = e, float("nan")
        else:
            g = e * gshare
            c = e - g
        # energy_j is e, not g + c: that can round one ulp away from the published energy
        train = _nan(ev.training_time)
        ex = given[i] if i < len(given) else {}
        eval_cum += float(ex.get("predict_time") or 0.0)
        stop = _ts(ev.stop_emission)
        wall = (stop - t0).total_seconds() if (stop and t0) else train + eval_cum
        for name, value in (
                ("arch_hash", r.arch), ("matrix", r.spec.matrix_str), ("ops", r.spec.ops_str),
                ("budget_epochs", int(r.run.budget_epochs)), ("epoch", _nan(ev.current_epoch)),
                ("repeat", int(r.run.repeat)), ("device", r.device), ("training_time_s", train),
                ("wall_time_s", max(wall, train) if not math.isnan(wall) else wall), ("energy_j", e),
                ("gpu_energy_j", g), ("cpu_energy_j", c), ("dram_energy_j", float("nan")),
                ("estimated", r.run.estimated is True), ("source", "imported"),
                ("train_accuracy", _nan(ev.train_accuracy)),
                ("validation_accuracy", _nan(ev.validation_accuracy)),
                ("test_accuracy", _nan(ev.test_accuracy)),
                ("trainable_params", int(m.trainable_parameters or 0)), ("flops", float("nan")),
                ("run_energy_j", run_energy_j),
                ("predicted_energy_j", _nan(ev.pred_energy) * KWH_J / factor)):
            cols[name].append(value)
        row = len(cols["arch_hash"]) - 1
        for key, name in _EXTRAS:
            if key in ex:
                extras.setdefault(name, [float("nan")] * row)
        for key, name in _EXTRAS:
            if name in extras:
                extras[name].append(_nan(ex.get(key)))


def _record_frame(records: list[dict[str, Any]], index: pd.Index) -> pd.DataFrame:
    """The record columns (``ecnas.interop.record``) of all rows: floats as float64 (NaN where
    missing), text as pandas strings (NaN where missing); columns no row has are left out."""
    kinds = {c.name: c.dtype for c in RECORD_COLUMNS}
    names: dict[str, None] = {}
    for rec in records:
        names.update(dict.fromkeys(rec))

    fields = ("name", "id", "power_w", "energy_j")

    def order(name: str) -> tuple[int, int, int, int]:
        m = DEVICE_COLUMN.match(name)
        if m is None:
            return (0, 0, 0, list(kinds).index(name) if name in kinds else len(kinds))
        return (1, DEVICE_KINDS.index(m.group(1)), int(m.group(2)), fields.index(m.group(3)))

    out: dict[str, Any] = {}
    for name in sorted(names, key=order):
        values = [rec.get(name) for rec in records]
        if all(v is None for v in values):
            continue
        m = DEVICE_COLUMN.match(name)
        text = kinds.get(name) == "str" or (m is not None and m.group(3) in ("name", "id"))
        out[name] = pd.Series(values, index=index, dtype="str" if text else "float64")
    return pd.DataFrame(out, index=index)


def _frame(runs: Sequence[_Run], factor: float) -> pd.DataFrame:
    """The table's rows: the contract's columns, ecnas's derived ones, the EC-NAS record."""
    cols: dict[str, list[Any]] = {c: [] for c in (*COLUMN_NAMES, *_DERIVED)}
    extras: dict[str, list[Any]] = {}
    records: list[dict[str, Any]] = []
    ids: dict[str, str] = {}
    for r in runs:
        _contract_rows(r, factor, cols, extras)
        per_run = run_values(r.run.metrics, ids)
        records.extend({**checkpoint_values(ev), **per_run}
                       for ev in r.run.metrics.evaluation_data_energy)
    df = pd.DataFrame({**cols, **extras})
    df = df.astype({"budget_epochs": "int64", "repeat": "int64", "trainable_params": "int64"})
    return pd.concat([df, _record_frame(records, df.index)], axis=1)


CARBONTRACKER_METER = "carbontracker 1.1.x (NVML GPU power, RAPL CPU package), 10-s polling"


def _measurement(runs: Sequence[_Run]) -> dict[str, Any]:
    """Measured or estimated, and by which meter, as far as the source says: ``estimated``
    is true, false, ``"mixed"`` or None (unknown: nothing in the source says)."""
    flags = [r.run.estimated for r in runs]
    meters = sorted({m for r in runs for m in r.run.meters})
    if any(f is None for f in flags):
        estimated: Any = None
    elif all(flags):
        estimated = True
    elif any(flags):
        estimated = "mixed"
    else:
        estimated = False
    if meters:
        meter = ", ".join(meters)
    elif estimated is None:
        meter = ("not recorded: an EC-NAS TFRecord says neither its meter nor whether its "
                 f"energy was measured (EC-NAS's own files: {CARBONTRACKER_METER})")
    else:
        meter = CARBONTRACKER_METER
    return {"meter": meter, "estimated": estimated}


def _estimated_keys(runs: Sequence[_Run], unknown_because: str) -> dict[str, Any]:
    """Metadata keys for runs whose measured/estimated flag is unknown or mixed."""
    out: dict[str, Any] = {}
    unknown = sum(1 for r in runs if r.run.estimated is None)
    if unknown:
        out["estimated_unknown"] = {
            "runs": unknown,
            "because": unknown_because or "the source does not say",
            "note": "EC-NAS's TFRecord has no field for estimated energy; these runs read "
                    "estimated = false only because the column is boolean: measured or "
                    "estimated is unknown"}
    known = [r.run.estimated for r in runs if r.run.estimated is not None]
    if any(known) and not all(known):
        out["mixed_estimated"] = True
    return out


def _metadata(runs: Sequence[_Run], pue: _Pue, *, cpu_profile: str | None, hash_mismatches: int,
              source_kind: str, source: str, unknown_because: str = "") -> dict[str, Any]:
    """What the table's numbers mean and where they came from (see the module doc)."""
    gpu_names: set[str] = set()
    cpu_names: set[str] = set()
    n_gpu = n_cpu = split_runs = 0
    for r in runs:
        p = r.run.metrics.avg_power_usages
        if p and p.gpu:
            gpu_names.update(n.strip() for n in p.gpu.device_names)
            n_gpu = max(n_gpu, len(p.gpu.joules))
        if p and p.cpu:
            cpu_names.update(n.strip() for n in p.cpu.device_names)
            n_cpu = max(n_cpu, len(p.cpu.joules))
        if r.gpu_j is not None and r.cpu_j is not None and r.component_j > 0:
            split_runs += 1
    obs = pue.observed
    return {
        "energy_unit": "J",
        "energy_includes_pue": False,
        "pue": {
            "factor": pue.factor,
            "source": pue.source,
            "observed": None if obs is None else {
                "min": float(obs.min()), "median": float(np.median(obs)),
                "max": float(obs.max()), "runs": int(obs.size)},
            "note": "carbontracker multiplied all energies by this facility factor; "
                    "ecnas divides it out (energy_j excludes PUE). Multiply by it to "
                    "compare with EC-NAS's own kWh figures.",
        },
        "component_split": (
            "checkpoint energy split by the run's whole-run GPU / CPU joule shares "
            f"(avg_power_usages); {split_runs} of {len(runs)} runs"),
        "measurement": _measurement(runs),
        "devices": {
            "gpu": {"profile": sorted({r.device for r in runs})[0] if runs else None,
                    "count": max(n_gpu, 1), "names": sorted(gpu_names)},
            "cpu": {"profile": cpu_profile, "count": n_cpu, "names": sorted(cpu_names)},
        },
        "wall_time": "first start_emission → checkpoint stop_emission (1-s timestamps), "
                     "at least the training time",
        "extra_columns": {
            "run_energy_j": "whole-run energy (J, PUE excluded): GPU + CPU joules of the run, "
                            "including the final evaluation",
            "predicted_energy_j": "carbontracker's forecast of the run's energy (J, PUE excluded)",
            **{c.name: f"{c.meaning} [EC-NAS record, as the source wrote it]"
               for c in RECORD_COLUMNS},
            "gpu<i>_name, cpu<i>_name": "device names exactly as recorded [EC-NAS record]",
            "gpu<i>_id, cpu<i>_id": "the names normalized for matching hardware profiles",
            "run_gpu<i>_power_w, run_cpu<i>_power_w": "carbontracker's mean power per device "
                                                      "(W) [EC-NAS record]",
            "run_gpu<i>_energy_j, run_cpu<i>_energy_j": "joules per device and socket, PUE "
                                                        "excluded [EC-NAS record]",
        },
        "hash_mismatches": hash_mismatches,
        **_estimated_keys(runs, unknown_because),
        "provenance": [provenance_entry("ecnas import-ecnas", source, format=source_kind,
                                        runs=len(runs))],
    }


def runs_to_table(runs: Sequence[RunInput], *, pue: float | None = None,
                  device: str | None = None, cpu_profile: str | None = ECNAS_CPU_PROFILE,
                  keep_bad_hashes: bool = False, source_kind: str = "results-tree",
                  source: str = "", progress: Any = None,
                  unknown_because: str = "") -> pd.DataFrame:
    """The energy table of ``runs`` with its metadata (see the module doc for the rules);
    ``unknown_because`` says why runs with ``estimated=None`` are unknown."""
    if not runs:
        raise InputError(f"{source or 'input'}: no EC-NAS runs found")
    if device is not None:
        check_device_id(device)
    resolved, mismatches = _resolve(runs, device=device, keep_bad_hashes=keep_bad_hashes,
                                    progress=progress)
    factor = _pue(resolved, pue)
    df = _frame(resolved, factor.factor)
    return set_metadata(df, _metadata(resolved, factor, cpu_profile=cpu_profile,
                                      hash_mismatches=mismatches, source_kind=source_kind,
                                      source=source, unknown_because=unknown_because))
