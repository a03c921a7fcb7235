"""Provenance checks: estimated and measured rows are not silently mixed; derived rows
(extrapolated, surrogate) say so."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecnas.tables.checks.base import CheckResult, Context, offending

DERIVED = ("extrapolated", "surrogate")


def estimated_mixing(ctx: Context) -> CheckResult:
    """Within a run, ``estimated`` is the same on every checkpoint (error otherwise); a table
    holding both estimated and measured runs must say so in metadata (``mixed_estimated: true``)."""
    est = ctx.col("estimated").astype(bool)
    s = pd.Series(est).groupby(ctx.run_id)
    mixed_run = (s.transform("min") != s.transform("max")).to_numpy()
    if mixed_run.any():
        return offending(ctx, np.nonzero(mixed_run)[0], name="estimated-mixing", severity="error",
                         explanation_fail="runs whose checkpoints are partly estimated and partly "
                                          "measured", explanation_pass="")
    n_est = int(est.sum())
    if 0 < n_est < len(est) and not ctx.metadata.get("mixed_estimated"):
        # the minority is what a reader would not expect
        minority = est if n_est <= len(est) - n_est else ~est
        return offending(ctx, np.nonzero(minority)[0], name="estimated-mixing", severity="warning",
                         explanation_fail=f"{n_est} estimated and {len(est) - n_est} measured rows "
                                          "in one table without metadata 'mixed_estimated: true'; "
                                          "the minority is listed",
                         explanation_pass="")
    kind = "estimated" if n_est == len(est) and n_est else "measured"
    extra = " (declared in metadata)" if 0 < n_est < len(est) else f" (all {kind})"
    unknown = ctx.metadata.get("estimated_unknown")
    if unknown:  # an EC-NAS TFRecord without its sidecar: nothing says, so never "measured"
        runs = unknown.get("runs") if isinstance(unknown, dict) else None
        extra = (f" (measured or estimated unknown for {runs if runs is not None else 'some'} "
                 "runs: the source does not say)")
    return CheckResult("estimated-mixing", "warning", True, 0,
                       f"estimated and measured rows not silently mixed{extra}")


def derived_flagged(ctx: Context) -> CheckResult:
    """Rows with source extrapolated/surrogate must have ``estimated = true`` (nothing was
    metered for them); a table with derived rows lists them by source."""
    src = ctx.df["source"].to_numpy()
    derived = np.isin(src, DERIVED)
    est = ctx.col("estimated").astype(bool)
    unflagged = derived & ~est
    counts = pd.Series(src).value_counts().to_dict()
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    if unflagged.any():
        return offending(ctx, np.nonzero(unflagged)[0], name="derived-rows-flagged",
                         severity="error",
                         explanation_fail="extrapolated/surrogate rows claim estimated = false "
                                          f"(nothing was metered for them); rows by source: {summary}",
                         explanation_pass="")
    return CheckResult("derived-rows-flagged", "info", True, 0,
                       f"rows by source: {summary}; derived rows are marked estimated")
