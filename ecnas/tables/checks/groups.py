"""Checks across runs: repeats agree, energy–time correlation per device, coverage of
architecture × budget × repeat (and of checkpoints per run)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecnas.tables.checks.base import CheckResult, Context, combined_codes, offending


def _final_rows(ctx: Context) -> np.ndarray:
    """Row positions of each run's last checkpoint."""
    return ctx.order[ctx.last_of_run]


def repeats_agree(ctx: Context) -> CheckResult:
    """Final energy of the repeats of one (architecture, budget, device): coefficient of
    variation, and robust outliers (median / MAD) where there are ≥ 3 repeats."""
    o = ctx.options
    pos = _final_rows(ctx)
    fin = ctx.df.iloc[pos]
    gid = combined_codes(fin, ["arch_hash", "budget_epochs", "device", "epoch"])
    e = fin["energy_j"].to_numpy(dtype="float64")
    s = pd.DataFrame({"g": gid, "e": e})
    grp = s.groupby("g")["e"]
    n = grp.transform("size").to_numpy()
    mean = grp.transform("mean").to_numpy()
    std = grp.transform("std").to_numpy()  # sample std (ddof=1)
    med = grp.transform("median").to_numpy()
    mad = (s["e"] - med).abs().groupby(s["g"]).transform("median").to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.where((n >= 2) & (mean > 0), std / mean, 0.0)
        robust_z = np.abs(e - med) / (1.4826 * mad)
        rel = np.abs(e - med) / np.abs(med)
    outlier = (n >= 3) & (robust_z > o.repeat_outlier_z) & (rel > o.repeat_outlier_min_rel)
    spread = cv > o.repeat_cv_warning
    off = outlier | spread
    groups_multi = int(pd.Series(gid[n >= 2]).nunique())
    if not groups_multi:
        return CheckResult("repeats-agree", "info", True, 0,
                           "no architecture has several repeats: agreement not checked")
    severe = bool((cv > o.repeat_cv_error).any())
    cv_med = float(np.median(cv[n >= 2]))
    cv_max = float(np.max(cv[n >= 2]))
    stats = f"{groups_multi} groups with repeats: median CV {cv_med:.1%}, max {cv_max:.1%}"
    rows_full = np.zeros(len(ctx.df))
    rows_full[pos] = np.where(off, np.maximum(cv, rel), 0)
    cv_full = np.full(len(ctx.df), np.nan)
    cv_full[pos] = cv
    return offending(ctx, np.sort(pos[off]), name="repeats-agree",
                     severity="error" if severe else "warning",
                     explanation_fail=(f"repeats disagree in final energy ({stats}; limits: CV "
                                       f"{o.repeat_cv_warning:.0%} warning, {o.repeat_cv_error:.0%} "
                                       f"error; outliers robust z > {o.repeat_outlier_z:g})"),
                     explanation_pass=f"repeats agree ({stats})",
                     values={"cv": cv_full}, rank=rows_full)


def energy_time_correlation(ctx: Context) -> CheckResult:
    """Per device and budget, final energy vs training time: Pearson r ≥ min_correlation, and
    runs far off the robust linear fit listed as offenders."""
    o = ctx.options
    pos = _final_rows(ctx)
    fin = ctx.df.iloc[pos]
    e = fin["energy_j"].to_numpy(dtype="float64")
    t = fin["training_time_s"].to_numpy(dtype="float64")
    gid = combined_codes(fin, ["device", "budget_epochs"])
    low = []
    off_mask = np.zeros(len(pos), dtype=bool)
    score = np.zeros(len(pos))
    checked = 0
    for g in np.unique(gid):
        idx = np.nonzero((gid == g) & np.isfinite(e) & np.isfinite(t))[0]
        if idx.size < o.min_correlation_runs or np.ptp(t[idx]) == 0 or np.ptp(e[idx]) == 0:
            continue
        checked += 1
        r = float(np.corrcoef(e[idx], t[idx])[0, 1])
        # robust fit: slope = median of energy per second, residual scaled by MAD
        slope = np.median(e[idx] / np.where(t[idx] > 0, t[idx], np.nan))
        resid = e[idx] - slope * t[idx]
        mad = np.median(np.abs(resid - np.median(resid))) * 1.4826
        z = np.abs(resid - np.median(resid)) / mad if mad > 0 else np.zeros(idx.size)
        if r < o.min_correlation:
            # in a weakly correlated group the runs far off the fit are what breaks it
            far = z > o.residual_z
            key = fin.iloc[idx[0]]
            low.append(f"{key['device']} @ {key['budget_epochs']} epochs: r = {r:.2f}")
            off_mask[idx[far]] = True
            score[idx] = z
    if not checked:
        return CheckResult("energy-time-correlation", "info", True, 0,
                           f"fewer than {o.min_correlation_runs} runs per device and budget: "
                           "correlation not checked")
    if not low:
        return CheckResult("energy-time-correlation", "warning", True, 0,
                           f"energy and training time correlate (r ≥ {o.min_correlation:g}) in "
                           f"all {checked} device × budget groups")
    rank = np.zeros(len(ctx.df))
    rank[pos] = score
    result = offending(ctx, np.sort(pos[off_mask]), name="energy-time-correlation",
                       severity="warning",
                       explanation_fail=(f"energy and training time correlate weakly (r < "
                                         f"{o.min_correlation:g}): {'; '.join(low)}; offenders are "
                                         "runs > 2 robust σ off the energy-per-second fit"),
                       explanation_pass="", rank=rank)
    if result.passed:  # weak correlation with no single outlier: still a failure
        return CheckResult("energy-time-correlation", "warning", False, len(low),
                           f"energy and training time correlate weakly: {'; '.join(low)}")
    return result


def coverage(ctx: Context) -> CheckResult:
    """Per device: every architecture has every budget, every (architecture, budget) the same
    repeats, every run the same checkpoints as the others of its budget."""
    df = ctx.df
    pos = _final_rows(ctx)
    runs = df.iloc[pos][["arch_hash", "budget_epochs", "repeat", "device"]]
    problems = []
    bad_runs = np.zeros(len(pos), dtype=bool)
    for dev, r in runs.groupby("device", sort=True):
        archs = r["arch_hash"].nunique()
        budgets = sorted(r["budget_epochs"].unique().tolist())
        per_arch = r.groupby("arch_hash")["budget_epochs"].nunique()
        missing_b = int((per_arch < len(budgets)).sum())
        if missing_b:
            problems.append(f"{dev}: {missing_b} of {archs} architectures lack some of budgets "
                            f"{budgets}")
            short = per_arch.index[per_arch < len(budgets)]
            bad_runs[np.nonzero((runs["device"] == dev).to_numpy()
                                & runs["arch_hash"].isin(short).to_numpy())[0]] = True
        reps = r.groupby(["arch_hash", "budget_epochs"])["repeat"].agg(["nunique", "max"])
        want = reps["nunique"].groupby(level="budget_epochs").transform("max")
        gaps = (reps["nunique"] < want) | (reps["max"] != reps["nunique"])
        if gaps.any():
            problems.append(f"{dev}: {int(gaps.sum())} (architecture, budget) pairs miss repeats "
                            "(fewer than the others, or numbering with gaps)")
            keys = set(reps.index[gaps.to_numpy()])
            m = np.array([(a, b) in keys for a, b in zip(r["arch_hash"], r["budget_epochs"], strict=True)])
            bad_runs[np.nonzero((runs["device"] == dev).to_numpy())[0][m]] = True
    # checkpoints: each run of a budget has the same set of epochs
    ep = df[["epoch"]].assign(run=ctx.run_id, b=df["budget_epochs"].to_numpy())
    sig = ep.groupby("run").agg(n=("epoch", "size"), s=("epoch", "sum"), b=("b", "first"))
    mode = sig.groupby("b")[["n", "s"]].agg(lambda x: x.mode().iloc[0])
    expect = mode.loc[sig["b"]].set_axis(sig.index)
    odd_runs = sig.index[(sig["n"] != expect["n"]) | ~np.isclose(sig["s"], expect["s"])]
    if len(odd_runs):
        problems.append(f"{len(odd_runs)} runs have other checkpoints than most runs of their budget")
        bad_runs |= np.isin(ctx.run_id[pos], odd_runs.to_numpy())
    if not problems:
        n_arch = runs["arch_hash"].nunique()
        return CheckResult("coverage", "warning", True, 0,
                           f"complete grid: {n_arch} architectures × budgets × repeats, same "
                           "checkpoints in every run of a budget")
    return offending(ctx, np.sort(pos[bad_runs]), name="coverage", severity="warning",
                     explanation_fail="; ".join(problems), explanation_pass="")
