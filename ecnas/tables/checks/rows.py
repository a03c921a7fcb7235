"""Row-level checks: value ranges, no negatives, duplicates, energy = sum of components,
hash matches spec. Each is a plain function ``check(ctx) -> CheckResult``, vectorized."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecnas.errors import InputError
from ecnas.space import ModelSpec
from ecnas.tables.checks.base import CheckResult, Context, offending
from ecnas.tables.kwh import KWH_J, pue_of
from ecnas.tables.schema import COMPONENT_COLUMNS, ROW_KEYS

NON_NEGATIVE = ("budget_epochs", "epoch", "training_time_s", "wall_time_s", "energy_j",
                *COMPONENT_COLUMNS, "train_accuracy", "validation_accuracy", "test_accuracy",
                "trainable_params", "flops")


def non_negative(ctx: Context) -> CheckResult:
    """Error check: no negative times, energies, accuracies, budgets, epochs or counts (NaN, not
    metered, is not negative)."""
    bad = np.zeros(len(ctx.df), dtype=bool)
    which: list[str] = []
    for c in NON_NEGATIVE:
        neg = ctx.col(c) < 0  # NaN compares False: "not metered" is not negative
        if neg.any():
            bad |= neg
            which.append(c)
    return offending(ctx, np.nonzero(bad)[0], name="non-negative", severity="error",
                     explanation_fail=f"negative values in {', '.join(which)}",
                     explanation_pass="no negative times, energies, accuracies or counts")


def value_ranges(ctx: Context) -> CheckResult:
    """Error check: accuracies at most 1, epoch within the budget, repeat and budget at least 1,
    training time within wall time (plus ``time_slack_s``), hashes of 32 hex digits, epoch,
    energy and measured times finite."""
    df, o = ctx.df, ctx.options
    problems: list[tuple[str, np.ndarray]] = []
    for c in ("train_accuracy", "validation_accuracy", "test_accuracy"):
        problems.append((f"{c} > 1", ctx.col(c) > 1))
    problems.append(("epoch > budget_epochs", ctx.col("epoch") > ctx.col("budget_epochs") + 1e-9))
    problems.append(("repeat < 1", ctx.col("repeat") < 1))
    problems.append(("budget_epochs < 1", ctx.col("budget_epochs") < 1))
    problems.append(("training_time_s > wall_time_s",
                     ctx.col("training_time_s") > ctx.col("wall_time_s") + o.time_slack_s))
    h = df["arch_hash"].astype(str)
    problems.append(("arch_hash is not 32 hex digits", ~h.str.fullmatch(r"[0-9a-f]{32}").to_numpy()))
    for c in ("epoch", "energy_j"):
        problems.append((f"{c} missing or infinite", ~np.isfinite(ctx.col(c))))
    for c in TIMES:  # missing in rows ecnas did not measure: a warning (missing_times)
        problems.append((f"{c} missing or infinite",
                         ~np.isfinite(ctx.col(c)) & ~(_unmeasured(ctx) & np.isnan(ctx.col(c)))))
    bad = np.zeros(len(df), dtype=bool)
    named = []
    for label, mask in problems:
        if mask.any():
            bad |= mask
            named.append(f"{label} ({int(mask.sum())})")
    return offending(ctx, np.nonzero(bad)[0], name="value-ranges", severity="error",
                     explanation_fail="values out of range: " + "; ".join(named),
                     explanation_pass="accuracies ≤ 1, 0 ≤ epoch ≤ budget, repeat ≥ 1, "
                                      "training ≤ wall time, hashes well-formed, values finite")


TIMES = ("training_time_s", "wall_time_s")


def _unmeasured(ctx: Context) -> np.ndarray:
    return ctx.df["source"].astype(str).to_numpy() != "measured"


def missing_times(ctx: Context) -> CheckResult:
    """Imported (or derived) rows without times: usable, but say what cannot be done."""
    gone = np.zeros(len(ctx.df), dtype=bool)
    which = []
    for c in TIMES:
        miss = _unmeasured(ctx) & np.isnan(ctx.col(c).astype("float64"))
        if miss.any():
            gone |= miss
            which.append(f"{c} ({int(miss.sum())})")
    return offending(ctx, np.nonzero(gone)[0], name="missing-times", severity="warning",
                     explanation_fail=(
                         "rows without times: " + ", ".join(which) + ": energies are usable "
                         "(benchmark queries, surrogates learn energy), but these rows' "
                         "training time is unknown, power and energy-time checks skip them, and "
                         "time-based budgets cannot charge them"),
                     explanation_pass="every row has its training and wall time")


def missing_accuracy(ctx: Context) -> CheckResult:
    """Warning: trained rows (measured or imported; at epoch 0 only where the table evaluates
    its start rows) without a validation accuracy in a table that records it elsewhere: the benchmark's accuracy objective is missing there
    (a lost evaluation, or NaN written in place of a number). A table with no validation
    accuracy at all (energy only) passes, saying so."""
    acc = ctx.col("validation_accuracy").astype("float64")
    if not np.isfinite(acc).any():
        return CheckResult("missing-accuracy", "warning", True, 0,
                           "no validation accuracy in this table (energy only): accuracy "
                           "objectives are not available")
    trained = ~_unmeasured(ctx) | (ctx.df["source"].astype(str).to_numpy() == "imported")
    start = ctx.col("epoch").astype("float64") == 0
    # a start row (before training) counts only where the table evaluates its start rows
    judged = ~start | bool(np.isfinite(acc[start]).any())
    gone = trained & judged & np.isnan(acc)
    return offending(ctx, np.nonzero(gone)[0], name="missing-accuracy", severity="warning",
                     explanation_fail=f"{int(gone.sum())} trained row(s) have no validation "
                                      "accuracy (NaN) where the rest of the table has one: "
                                      "queries and searches there have no accuracy",
                     explanation_pass="every trained row has its validation accuracy")


def duplicate_rows(ctx: Context) -> CheckResult:
    """Error check: one row per (arch_hash, budget_epochs, repeat, device, epoch)."""
    dup = ctx.df.duplicated(list(ROW_KEYS), keep=False).to_numpy()
    return offending(ctx, np.nonzero(dup)[0], name="duplicate-rows", severity="error",
                     explanation_fail="several rows share one (arch_hash, budget_epochs, repeat, "
                                      "device, epoch): a run imported twice or repeats not numbered",
                     explanation_pass="one row per run checkpoint")


def energy_sum(ctx: Context) -> CheckResult:
    """Error check: ``energy_j`` equals the sum of its present components (gpu + cpu + dram)
    within the options' tolerances; rows without components pass."""
    parts = np.column_stack([ctx.col(c) for c in COMPONENT_COLUMNS]).astype("float64")
    present = ~np.isnan(parts)
    any_part = present.any(axis=1)
    total = np.where(present, parts, 0.0).sum(axis=1)
    e = ctx.col("energy_j")
    o = ctx.options
    diff = np.abs(e - total)
    bad = any_part & ~(diff <= o.rtol_energy_sum * np.abs(e) + o.atol_energy_sum_j)
    return offending(ctx, np.nonzero(bad)[0], name="energy-sum", severity="error",
                     explanation_fail="energy_j differs from the sum of its present components "
                                      "(gpu + cpu + dram)",
                     explanation_pass="energy_j equals the sum of its present components",
                     values={"energy_j": e, "sum_of_components": total}, rank=diff * bad)


def published_kwh(ctx: Context) -> CheckResult:
    """Imported EC-NAS rows keep the published kWh; they must still agree with ``energy_j``."""
    if "energy_kwh" not in ctx.df.columns:
        return CheckResult("published-kwh", "error", True, 0, "no published kWh column")
    kwh = ctx.col("energy_kwh").astype("float64")
    e = ctx.col("energy_j").astype("float64")
    pue = pue_of(ctx.metadata)
    diff = np.abs(kwh * KWH_J / pue - e)
    bad = ~np.isnan(kwh) & ~(diff <= 1e-9 * np.abs(e))
    return offending(ctx, np.nonzero(bad)[0], name="published-kwh", severity="error",
                     explanation_fail=f"energy_kwh × 3.6e6 / PUE ({pue}) differs from energy_j: "
                                      "energies changed after import (drop energy_kwh or fix them)",
                     explanation_pass="published kWh agree with energy_j",
                     values={"energy_j": e, "energy_kwh": kwh}, rank=diff * bad)


def hash_matches_spec(ctx: Context) -> CheckResult:
    """Error check: every row's ``arch_hash`` is the iso-hash of its matrix and ops, which must
    be a valid cell in pruned form."""
    df = ctx.df
    pairs = df[["arch_hash", "matrix", "ops"]].drop_duplicates()
    bad_pairs = []
    reasons: dict[str, int] = {}
    spec_cache: dict[tuple[str, str], tuple[str, str, str] | str] = {}
    for h, m, o in zip(pairs["arch_hash"], pairs["matrix"], pairs["ops"], strict=True):
        key = (m, o)
        if key not in spec_cache:
            try:
                s = ModelSpec(m, o)
                spec_cache[key] = (s.hash(), s.matrix_str, s.ops_str)
            except InputError as exc:
                spec_cache[key] = f"invalid cell: {exc}"
        got = spec_cache[key]
        if isinstance(got, str):
            reason = "invalid cell"
        elif got[0] != h:
            reason = "arch_hash ≠ iso-hash of matrix+ops"
        elif (got[1], got[2]) != (m, o):
            reason = "matrix/ops not in pruned form"
        else:
            continue
        bad_pairs.append((h, m, o))
        reasons[reason] = reasons.get(reason, 0) + 1
    if not bad_pairs:
        return CheckResult("hash-matches-spec", "error", True, 0,
                           f"{len(pairs)} distinct cells: every arch_hash is the iso-hash of "
                           "its pruned matrix + ops")
    bad = pd.MultiIndex.from_tuples(bad_pairs, names=["arch_hash", "matrix", "ops"])
    mask = pd.MultiIndex.from_frame(df[["arch_hash", "matrix", "ops"]]).isin(bad)
    return offending(ctx, np.nonzero(mask)[0], name="hash-matches-spec", severity="error",
                     explanation_fail="; ".join(f"{k} ({v} cells)" for k, v in reasons.items()),
                     explanation_pass="")
