"""Per-run checks over the (run, epoch) order: monotone checkpoints, power within the device
profile's bounds, power coherent between checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ecnas.profiles.bounds import MAX_ROW_ENERGY_J, MAX_ROW_POWER_W
from ecnas.tables.checks.base import CheckResult, Context, offending
from ecnas.tables.schema import COMPONENT_COLUMNS

CUMULATIVE = ("training_time_s", "wall_time_s", "energy_j", *COMPONENT_COLUMNS)


def monotone(ctx: Context) -> CheckResult:
    """Error check: within a run, training time, wall time and cumulative energy (each component
    too) never decrease from one checkpoint to the next."""
    bad_sorted = np.zeros(len(ctx.df), dtype=bool)
    which = []
    for c in CUMULATIVE:
        v = ctx.sorted_col(c).astype("float64")
        dec = np.zeros(len(v), dtype=bool)
        dec[1:] = ctx.same_run_prev[1:] & (v[1:] < v[:-1])  # NaN compares False
        if dec.any():
            bad_sorted |= dec
            which.append(c)
    return offending(ctx, ctx.order[bad_sorted], name="monotone-checkpoints", severity="error",
                     explanation_fail="cumulative values decrease from one checkpoint to the "
                                      f"next within a run: {', '.join(which)}",
                     explanation_pass="per run, time and cumulative energy never decrease with epoch")


def _cpu_bound(ctx: Context) -> tuple[Any, int, str]:
    """The CPU profile and socket count to bound ``cpu_energy_j`` with, and how they were chosen."""
    cpu = (ctx.metadata.get("devices") or {}).get("cpu") or {}
    count = int(cpu.get("count") or 1)
    prof = ctx.profiles.get(cpu.get("profile") or "")
    if prof is not None:
        return prof, count, f"{prof.id} × {count} (table metadata)"
    cpus = [p for p in ctx.profiles.values() if p.kind == "cpu"]
    if not cpus:
        return None, count, "no CPU profile loaded"
    widest = max(cpus, key=lambda p: p.max_w)
    return widest, count, f"CPU unknown: widest CPU profile {widest.id} × {count}"


def _device_power_limits(ctx: Context, device: str) -> Mapping[str, Any] | None:
    prof = ctx.profiles.get(device)
    if prof is None:
        return None
    meta = ctx.metadata.get("devices") or {}
    n_dev = int((meta.get(prof.kind) or {}).get("count") or 1)
    return {"profile": prof, "count": n_dev}


def implausible_rows(energy: np.ndarray, wall: np.ndarray, min_window_s: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(mask, reason per row) of rows whose energy no device could have drawn, whatever its
    profile: mean power over ``max(wall, min_window_s)`` above
    :data:`~ecnas.profiles.bounds.MAX_ROW_POWER_W`, or, without a wall time, energy above
    :data:`~ecnas.profiles.bounds.MAX_ROW_ENERGY_J`. Used by ``ecnas check`` (and so by
    ``contribution verify``) and by ``ecnas surrogate transfer``'s input check."""
    energy = np.asarray(energy, dtype="float64")
    wall = np.asarray(wall, dtype="float64")
    timed = np.isfinite(wall)
    # a short window is meter granularity, not power: judge it as if it lasted min_window_s
    span = np.where(timed, np.maximum(wall, min_window_s), np.nan)
    with np.errstate(invalid="ignore"):
        power = energy / span
        over_p = timed & (power > MAX_ROW_POWER_W)
        over_e = ~timed & (energy > MAX_ROW_ENERGY_J)
    reasons = np.full(len(energy), "", dtype=object)
    reasons[over_p] = [f"mean power {w:.3g} W above {MAX_ROW_POWER_W:g} W, more than any "
                       "machine draws" for w in power[over_p]]
    reasons[over_e] = [f"energy {e:.3g} J above {MAX_ROW_ENERGY_J:.3g} J with no time"
                       for e in energy[over_e]]
    return over_p | over_e, reasons


def power_bounds(ctx: Context) -> CheckResult:
    """Mean power from the run's start, per component: for windows of ``min_window_s`` and
    more, the GPU component (or the whole energy of a GPU-only table) within [idle × f, max ×
    margin] of the device's profile × GPU count, the CPU component within the CPU profile ×
    sockets; every row, however short its window and whatever its device (profile or none),
    below :data:`~ecnas.profiles.bounds.MAX_ROW_POWER_W`, its power taken over at least
    ``min_window_s`` (a short window is meter granularity: its energy could have come from
    that long). A device whose measured rows after the start all read 0 J measured nothing.

    Estimated rows get the upper bound only: the CPU-time estimate counts the busy CPU time of
    the metered processes and deliberately leaves idle power out, so it can honestly fall below
    the device's idle floor (a lightly loaded or shared CPU)."""
    o, df = ctx.options, ctx.df
    measured = ~df["estimated"].to_numpy(dtype=bool)
    wall = ctx.col("wall_time_s").astype("float64")
    window = wall >= o.min_window_s
    timed = np.isfinite(wall)
    # every timed row gets the upper bound, over at least min_window_s
    span = np.where(timed, np.maximum(wall, o.min_window_s), np.nan)
    devices = df["device"].to_numpy()
    bad = np.zeros(len(df), dtype=bool)
    worst_ratio = np.zeros(len(df))
    unknown = sorted({d for d in np.unique(devices) if d not in ctx.profiles})
    notes = []
    cpu_prof, cpu_n, cpu_how = _cpu_bound(ctx)
    gpu_e, cpu_e = ctx.col("gpu_energy_j"), ctx.col("cpu_energy_j")
    total = ctx.col("energy_j").astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        for dev in np.unique(devices):
            lim = _device_power_limits(ctx, dev)
            if lim is None:
                continue
            prof, n = lim["profile"], lim["count"]
            rows = (devices == dev) & window
            lo, hi = prof.idle_w * n * o.power_idle_fraction, prof.max_w * n * o.power_margin
            if prof.kind == "gpu":
                own = gpu_e  # the device's own component
                no_parts = np.isnan(gpu_e) & np.isnan(cpu_e) & np.isnan(ctx.col("dram_energy_j"))
                own = np.where(no_parts, total, own)  # a GPU-only table: energy_j is the GPU's
            else:
                own = np.where(np.isnan(cpu_e), total, cpu_e)
            p = own / span
            out = rows & ((p > hi) | ((p < lo) & measured))
            bad |= out
            worst_ratio = np.maximum(worst_ratio, np.where(out, np.maximum(p / hi, lo / p), 0))
            notes.append(f"{dev}: {lo:.0f}–{hi:.0f} W")
            if prof.kind == "gpu" and cpu_prof is not None:
                pc = cpu_e / span
                hi_c = cpu_prof.max_w * cpu_n * o.power_margin
                out_c = rows & (pc > hi_c)
                bad |= out_c
                worst_ratio = np.maximum(worst_ratio, np.where(out_c, pc / hi_c, 0))
                notes.append(f"cpu ≤ {hi_c:.0f} W ({cpu_how})")
        wild, _ = implausible_rows(total, wall, o.min_window_s)
        bad |= wild
        worst_ratio = np.maximum(worst_ratio, np.where(wild, np.inf, 0))
        zero = _measured_nothing(ctx, devices, measured, total)
        power = total / np.where(wall > 0, wall, np.nan)
    unk = f"; no profile for device(s) {', '.join(unknown)}: not checked" if unknown else ""
    n_est = int((window & ~measured).sum())
    if n_est:  # a pass must not read as "this 0.2 W estimate is plausible"
        unk += (f"; {n_est} estimated row{'s' if n_est > 1 else ''} held to the upper bound "
                "only (the CPU-time estimate leaves idle power out)")
    extra = []
    if wild.any():
        extra.append(f"{int(wild.sum())} row(s) above {MAX_ROW_POWER_W:g} W, more than any "
                     "machine draws")
    if zero:
        bad |= np.isin(devices, zero) & measured
        extra.append(f"device(s) {', '.join(zero)}: every measured row after the start reads "
                     "0 J (the meter measured nothing)")
    bounds = "; ".join(dict.fromkeys(notes)) or "no device profile"
    res = offending(ctx, np.nonzero(bad)[0], name="power-bounds", severity="error",
                    explanation_fail="mean power outside the device profile's bounds "
                                     f"({bounds}){unk}"
                                     + "".join(f"; {e}" for e in extra),
                    explanation_pass=(f"mean power within bounds ({bounds} for windows ≥ "
                                      f"{o.min_window_s:g} s, estimated rows against the upper "
                                      f"bound only; every row ≤ {MAX_ROW_POWER_W:g} W){unk}"),
                    values={"mean_power_w": power}, rank=worst_ratio)
    if res.passed and unknown and len(unknown) == len(np.unique(devices)):
        return CheckResult("power-bounds", "warning", False, 0,
                           f"no hardware profile for device(s) {', '.join(unknown)}: power "
                           f"bounds not checked beyond {MAX_ROW_POWER_W:g} W per row (write "
                           "one with 'ecnas calibrate')")
    return res


def _measured_nothing(ctx: Context, devices: np.ndarray, measured: np.ndarray,
                      total: np.ndarray) -> list[str]:
    """Devices whose measured rows past epoch 0 all read exactly 0 J: a meter that read
    nothing (a counter not advancing, a wrong domain), not a device that drew nothing."""
    after = measured & (ctx.col("epoch").astype("float64") > 0)
    out = []
    for dev in np.unique(devices[after]):
        rows = after & (devices == dev)
        if rows.any() and np.all(total[rows] == 0):
            out.append(str(dev))
    return out


def power_coherence(ctx: Context) -> CheckResult:
    """Between consecutive checkpoints, power (ΔE/Δt) stays within a factor of the run's mean."""
    o = ctx.options
    e = ctx.sorted_col("energy_j").astype("float64")
    t = ctx.sorted_col("wall_time_s").astype("float64")
    n = len(e)
    de = np.zeros(n)
    dt = np.zeros(n)
    de[1:], dt[1:] = e[1:] - e[:-1], t[1:] - t[:-1]
    inner = ctx.same_run_prev
    # the run's mean power, broadcast from its last checkpoint to all its rows
    run_sorted = ctx.run_id[ctx.order]
    last_idx = np.nonzero(ctx.last_of_run)[0]
    mean_by_run = np.full(ctx.n_runs, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_by_run[run_sorted[last_idx]] = e[last_idx] / t[last_idx]
        mean = mean_by_run[run_sorted]
        p = de / dt
        ratio = p / mean
    timed = inner & (dt >= o.min_window_s) & (mean > 0)
    jump = inner & (dt <= 0) & (de > o.atol_energy_sum_j)  # energy with no time: infinite power
    off = (timed & ((ratio > o.coherence_factor) | (ratio < 1 / o.coherence_factor))) | jump
    rank = np.where(jump, np.inf, np.abs(np.log(np.where(timed & (ratio > 0), ratio, 1.0))))
    values = np.full(n, np.nan)
    values[ctx.order] = ratio
    rank_rows = np.zeros(n)
    rank_rows[ctx.order] = rank
    return offending(ctx, np.sort(ctx.order[off]), name="power-coherence", severity="warning",
                     explanation_fail="power between consecutive checkpoints differs from the "
                                      f"run's mean by more than ×{o.coherence_factor:g} (or energy "
                                      "grows with no time)",
                     explanation_pass=f"interval power within ×{o.coherence_factor:g} of each "
                                      "run's mean power",
                     values={"interval_over_mean_power": values}, rank=rank_rows)
