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
- **Hashes.** Each run's hash (directory name or record field) is checked against the iso-hash
  recomputed from its matrix and ops; a mismatch is an error unless ``keep_bad_hashes``, which
  keeps the source's hash so that ``ecnas check`` reports it (check ``hash-matches-spec``).
"""

from __future__ import annotations

import datetime as _dt
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError
from ecnas.tables.metadata import provenance_entry, set_metadata
from ecnas.tables.proto import ModelMetricsEnergy
from ecnas.tables.schema import COLUMN_NAMES

KWH_J = 3.6e6
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


def _ts(text: str | None) -> _dt.datetime | None:
    if not text:
        return None
    try:
        return _dt.datetime.strptime(text.strip(), _TS)
    except ValueError:
        return None


def _match_device(name: str, kind: str, cache: dict[tuple[str, str], str]) -> str:
    key = (kind, name)
    if key not in cache:
        from ecnas.meters.base import DeviceInfo
        from ecnas.profiles import load_profiles, match_profile, normalize_device_name

        profiles = cache.setdefault(("_profiles", ""), load_profiles())  # type: ignore[arg-type]
        match = match_profile(DeviceInfo(domain=f"{kind}:0", kind=kind, name=name), profiles)
        if match.profile is not None:
            cache[key] = match.profile.id
        else:
            slug = "-".join(normalize_device_name(name).replace("/", " ").split()) or "unknown"
            cache[key] = f"unknown-{slug}"
    return cache[key]


def _nan(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def runs_to_table(runs: Sequence[RunInput], *, pue: float | None = None,
                  device: str | None = None, cpu_profile: str | None = ECNAS_CPU_PROFILE,
                  keep_bad_hashes: bool = False, source_kind: str = "results-tree",
                  source: str = "", progress: Any = None) -> pd.DataFrame:
    """The energy table of ``runs`` with its metadata (see the module doc for the rules)."""
    from ecnas.space import ModelSpec

    if not runs:
        raise InputError(f"{source or 'input'}: no EC-NAS runs found")
    spec_cache: dict[tuple[str, str], Any] = {}
    dev_cache: dict[tuple[str, str], Any] = {}
    pue_obs: list[float] = []
    bad_hashes: list[str] = []
    gpu_names: set[str] = set()
    cpu_names: set[str] = set()
    n_gpu = n_cpu = 0
    per_run = []
    for k, run in enumerate(runs):
        m = run.metrics
        adj = run.adjacency if isinstance(run.adjacency, str) else repr(run.adjacency)
        ops = run.ops if isinstance(run.ops, str) else repr(run.ops)
        skey = (adj, ops)
        if skey not in spec_cache:
            try:
                spec_cache[skey] = ModelSpec(run.adjacency, run.ops)
            except InputError as exc:
                raise InputError(f"{run.where}: invalid cell ({exc})") from None
        spec = spec_cache[skey]
        arch = spec.hash()
        if arch != run.arch_hash:
            bad_hashes.append(f"{run.where}: {run.arch_hash} ≠ recomputed {arch}")
            if keep_bad_hashes:
                arch = run.arch_hash
        if not m.evaluation_data_energy:
            raise InputError(f"{run.where}: no evaluations (checkpoints)")
        p = m.avg_power_usages
        gpu_j = sum(p.gpu.joules) if p and p.gpu else None
        cpu_j = sum(p.cpu.joules) if p and p.cpu else None
        if p and p.gpu:
            gpu_names.update(n.strip() for n in p.gpu.device_names)
            n_gpu = max(n_gpu, len(p.gpu.joules))
        if p and p.cpu:
            cpu_names.update(n.strip() for n in p.cpu.device_names)
            n_cpu = max(n_cpu, len(p.cpu.joules))
        comp = (gpu_j or 0.0) + (cpu_j or 0.0)
        if m.total_energy and comp > 0:
            pue_obs.append(m.total_energy * KWH_J / comp)
        names = p.gpu.device_names if p and p.gpu else []
        dev = device or (_match_device(names[0].strip(), "gpu", dev_cache) if names else None)
        if dev is None:
            raise InputError(f"{run.where}: no GPU device name in the data; pass device=…/--device")
        per_run.append((run, spec, arch, gpu_j, cpu_j, dev))
        if progress is not None and (k + 1) % 500 == 0:
            progress(k + 1, len(runs))
    if bad_hashes and not keep_bad_hashes:
        raise InputError(f"{bad_hashes[0]} (iso-hash mismatch; {len(bad_hashes)} run(s) in all; "
                         "--keep-bad-hashes imports them for 'ecnas check' to report)")

    if pue is not None:
        factor, pue_source = float(pue), "given by the user"
    elif pue_obs:
        factor = round(statistics.median(pue_obs), 3)
        pue_source = "measured: median over runs of total_energy / (GPU J + CPU J)"
    else:
        factor, pue_source = CARBONTRACKER_PUE, "assumed: carbontracker's fixed PUE (no component joules in the data)"
    if not factor > 0:
        raise InputError(f"PUE factor must be > 0, got {factor}")

    cols: dict[str, list[Any]] = {c: [] for c in (*COLUMN_NAMES, "run_energy_j", "run_time_s",
                                                  "predicted_energy_j", "co2eq_g", "energy_kwh",
                                                  "run_energy_kwh", "predicted_energy_kwh")}
    extra_cols: dict[str, list[Any]] = {}
    split_runs = 0
    for run, spec, arch, gpu_j, cpu_j, dev in per_run:
        m = run.metrics
        comp = (gpu_j or 0.0) + (cpu_j or 0.0)
        gshare = gpu_j / comp if gpu_j is not None and comp > 0 else None
        if gshare is not None and cpu_j is not None:
            split_runs += 1
        t0 = _ts(m.start_emission) or _ts(m.evaluation_data_energy[0].start_emission)
        eval_cum = 0.0
        extras = list(run.eval_extras)
        for i, ev in enumerate(m.evaluation_data_energy):
            e = _nan(ev.energy) * KWH_J / factor
            if gshare is None:
                g, c, total = float("nan"), float("nan"), e
            elif cpu_j is None:
                g, c, total = e, float("nan"), e
            else:
                g = e * gshare
                c = e - g
                total = e  # not g + c: that can round one ulp away from the published energy
            train = _nan(ev.training_time)
            ex = extras[i] if i < len(extras) else {}
            eval_cum += float(ex.get("predict_time") or 0.0)
            stop = _ts(ev.stop_emission)
            wall = (stop - t0).total_seconds() if (stop and t0) else train + eval_cum
            cols["arch_hash"].append(arch)
            cols["matrix"].append(spec.matrix_str)
            cols["ops"].append(spec.ops_str)
            cols["budget_epochs"].append(int(run.budget_epochs))
            cols["epoch"].append(_nan(ev.current_epoch))
            cols["repeat"].append(int(run.repeat))
            cols["device"].append(dev)
            cols["training_time_s"].append(train)
            cols["wall_time_s"].append(max(wall, train) if wall == wall else wall)
            cols["energy_j"].append(total)
            cols["gpu_energy_j"].append(g)
            cols["cpu_energy_j"].append(c)
            cols["dram_energy_j"].append(float("nan"))
            cols["estimated"].append(False)
            cols["source"].append("imported")
            cols["train_accuracy"].append(_nan(ev.train_accuracy))
            cols["validation_accuracy"].append(_nan(ev.validation_accuracy))
            cols["test_accuracy"].append(_nan(ev.test_accuracy))
            cols["trainable_params"].append(int(m.trainable_parameters or 0))
            cols["flops"].append(float("nan"))
            cols["run_energy_j"].append(comp if comp > 0 else _nan(m.total_energy) * KWH_J / factor)
            cols["run_time_s"].append(_nan(m.total_time))
            cols["predicted_energy_j"].append(_nan(ev.pred_energy) * KWH_J / factor)
            cols["co2eq_g"].append(_nan(ev.co2eq))
            # the published kWh as they were: kWh → J → kWh is not injective in floats, so the
            # benchmark and the TFRecord export return these rather than recomputing them
            cols["energy_kwh"].append(_nan(ev.energy))
            cols["run_energy_kwh"].append(_nan(m.total_energy))
            cols["predicted_energy_kwh"].append(_nan(ev.pred_energy))
            for key, name in (("predict_time", "eval_time_s"), ("training_steps", "training_steps")):
                if key in ex:
                    extra_cols.setdefault(name, [float("nan")] * (len(cols["arch_hash"]) - 1))
            for name, values in extra_cols.items():
                key = "predict_time" if name == "eval_time_s" else "training_steps"
                values.append(_nan(ex.get(key)))
    df = pd.DataFrame({**cols, **extra_cols})
    df = df.astype({"budget_epochs": "int64", "repeat": "int64", "trainable_params": "int64"})
    obs = np.asarray(pue_obs) if pue_obs else None
    meta = {
        "energy_unit": "J",
        "energy_includes_pue": False,
        "pue": {
            "factor": factor,
            "source": pue_source,
            "observed": None if obs is None else {
                "min": float(obs.min()), "median": float(np.median(obs)),
                "max": float(obs.max()), "runs": int(obs.size)},
            "note": "carbontracker multiplied all energies by this facility factor; "
                    "ecnas divides it out (energy_j excludes PUE). Multiply by it to "
                    "compare with EC-NAS's own kWh figures.",
        },
        "component_split": (
            "checkpoint energy split by the run's whole-run GPU / CPU joule shares "
            f"(avg_power_usages); {split_runs} of {len(per_run)} runs"),
        "measurement": {
            "meter": "carbontracker 1.1.x (NVML GPU power, RAPL CPU package), 10-s polling",
            "estimated": False,
        },
        "devices": {
            "gpu": {"profile": sorted({r[5] for r in per_run})[0] if per_run else None,
                    "count": max(n_gpu, 1), "names": sorted(gpu_names)},
            "cpu": {"profile": cpu_profile, "count": n_cpu, "names": sorted(cpu_names)},
        },
        "wall_time": "first start_emission → checkpoint stop_emission (1-s timestamps), "
                     "at least the training time",
        "extra_columns": {
            "run_energy_j": "whole-run energy (J, PUE excluded): GPU + CPU joules of the run, "
                            "including the final evaluation",
            "run_time_s": "EC-NAS total_time of the run",
            "predicted_energy_j": "carbontracker's forecast of the run's energy (J, PUE excluded)",
            "co2eq_g": "EC-NAS's CO2eq at the checkpoint (as published, PUE included)",
            "energy_kwh": "EC-NAS's energy (kWh) at the checkpoint, as published (PUE included)",
            "run_energy_kwh": "EC-NAS's total_energy (kWh) of the run, as published",
            "predicted_energy_kwh": "carbontracker's forecast (kWh), as published",
        },
        "hash_mismatches": len(bad_hashes),
        "provenance": [provenance_entry("ecnas import-ecnas", source, format=source_kind,
                                        runs=len(per_run))],
    }
    return set_metadata(df, meta)
