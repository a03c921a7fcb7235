"""Consistency checks of energy tables: ``run_checks(df) -> CheckReport``.

Each check has a name, a severity, a verdict, the offending rows (capped) and a one-line
explanation. All are vectorized (numpy / pandas groupby on run keys), none loops over rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from ecnas.errors import InputError
from ecnas.profiles import load_profiles
from ecnas.tables.checks.base import (
    MAX_OFFENDING,
    SEVERITIES,
    CheckOptions,
    CheckReport,
    CheckResult,
    Context,
    build_context,
)
from ecnas.tables.checks.budgets import budget_consistency
from ecnas.tables.checks.groups import coverage, energy_time_correlation, repeats_agree
from ecnas.tables.checks.provenance import derived_flagged, estimated_mixing
from ecnas.tables.checks.rows import (
    duplicate_rows,
    energy_sum,
    hash_matches_spec,
    missing_accuracy,
    missing_times,
    non_negative,
    published_kwh,
    value_ranges,
)
from ecnas.tables.checks.runs import monotone, power_bounds, power_coherence
from ecnas.tables.metadata import get_metadata
from ecnas.tables.schema import validate

#: the checks after ``schema``, in report order
CHECKS: tuple[tuple[str, Callable[[Context], CheckResult]], ...] = (
    ("value-ranges", value_ranges),
    ("missing-times", missing_times),
    ("missing-accuracy", missing_accuracy),
    ("non-negative", non_negative),
    ("duplicate-rows", duplicate_rows),
    ("hash-matches-spec", hash_matches_spec),
    ("energy-sum", energy_sum),
    ("published-kwh", published_kwh),
    ("monotone-checkpoints", monotone),
    ("power-bounds", power_bounds),
    ("power-coherence", power_coherence),
    ("repeats-agree", repeats_agree),
    ("budget-consistency", budget_consistency),
    ("energy-time-correlation", energy_time_correlation),
    ("coverage", coverage),
    ("estimated-mixing", estimated_mixing),
    ("derived-rows-flagged", derived_flagged),
)
CHECK_NAMES = ("schema", *(n for n, _ in CHECKS))


def _profiles(profiles: Any) -> Mapping[str, Any]:
    if profiles is None:
        profiles = load_profiles()
    if isinstance(profiles, Mapping):
        return profiles
    return {p.id: p for p in profiles}


def run_checks(df: pd.DataFrame, *, profiles: Any = None,
               options: CheckOptions | Mapping[str, Any] | None = None,
               validated: bool = False) -> CheckReport:
    """Check a table. ``profiles``: HardwareProfiles (list or id → profile; default: the loaded
    ones); ``options``: CheckOptions or a dict of its fields. ``validated``: ``df`` is what
    :func:`ecnas.tables.validate` returned (the caller checked the schema where the table
    entered): trusted, not converted again."""
    if isinstance(options, Mapping):
        try:
            options = CheckOptions(**options)
        except TypeError as exc:
            raise InputError(f"check options: {exc}") from None
    options = options or CheckOptions()
    try:
        table = df if validated else validate(df)
    except InputError as exc:
        res = CheckResult("schema", "error", False, len(df) if hasattr(df, "__len__") else 0, str(exc))
        return CheckReport((res,), len(df) if hasattr(df, "__len__") else 0, 0, 0)
    table = table.reset_index(drop=True) if not table.index.is_unique else table
    meta = get_metadata(df)
    ctx = build_context(table, metadata=meta, profiles=_profiles(profiles), options=options)
    # a table with no rows fails the schema check: nothing measured is not a table that passes
    results = [CheckResult("schema", "error", bool(len(table)), 0,
                           f"{len(table)} rows; contract columns present with their types"
                           if len(table) else "the table has no rows: nothing was measured "
                           "or imported")]
    if len(table):
        results += [fn(ctx) for _, fn in CHECKS]
    else:
        results += [CheckResult(name, "info", True, 0, "empty table: nothing to check")
                    for name, _ in CHECKS]
    devices = tuple(sorted(table["device"].unique().tolist())) if len(table) else ()
    return CheckReport(tuple(results), len(table), ctx.n_runs, int(table["arch_hash"].nunique()),
                       devices)


__all__ = ["CHECKS", "CHECK_NAMES", "MAX_OFFENDING", "SEVERITIES", "CheckOptions", "CheckReport",
           "CheckResult", "run_checks"]
