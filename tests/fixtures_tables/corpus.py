"""Test data for the tables room, built from the real EC-NAS 5V fixture.

``make_tree`` writes a small EC-NAS results tree in EC-NAS's own layout with several repeats
and budgets (repeats are the real run with energies and times perturbed by ±2 %; the 12-epoch
budget is the real run scaled ×3, as EC-NAS itself scaled budgets). ``FAULTS`` plants one fault
per class into a clean table; each names the check that must catch it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

COMPONENTS = ["gpu_energy_j", "cpu_energy_j", "dram_energy_j"]


_TS = "%Y-%m-%d %H:%M:%S"


def _stretch(stamp: str, start: str, k: float) -> str:
    t0 = dt.datetime.strptime(start, _TS)
    return (t0 + (dt.datetime.strptime(stamp, _TS) - t0) * k).strftime(_TS)


def _scaled(results: dict, energy: float, time: float, epochs: float = 1.0) -> dict:
    r = json.loads(json.dumps(results))
    start = r["start_emission"]
    r["stop_emission"] = _stretch(r["stop_emission"], start, time)
    r["total_energy (kWh)"] *= energy
    r["total_time"] *= time
    for key in ("avg_energy_usages (J)",):
        for kind in ("gpu", "cpu"):
            u = r["avg_power_usages:"][kind]
            u[key] = [[v * energy for v in row] for row in u[key]]
    for ev in r["evaluation_results"]:
        ev["energy (kWh)"] *= energy
        ev["training_time"] *= time
        ev["epochs"] *= epochs
        ev["start_emission"] = _stretch(ev["start_emission"], start, time)
        ev["stop_emission"] = _stretch(ev["stop_emission"], start, time)
    return r


def make_tree(src: Path, dst: Path, *, n_arch: int = 30, repeats: int = 3,
              budgets: tuple[int, ...] = (4, 12), space: str = "5V9E") -> Path:
    """A results tree at ``dst`` with ``n_arch`` real architectures × budgets × repeats."""
    graphs = json.loads((src / "graphs" / "generated_graphs_5V9E.json").read_text())
    base = src / "train_model_results" / "energy" / "5V9E" / "4_epochs"
    hashes = sorted(p.name for p in base.glob("*/*") if p.is_dir())[:n_arch]
    (dst / "graphs").mkdir(parents=True)
    (dst / "graphs" / f"generated_graphs_{space}.json").write_text(
        json.dumps({h: graphs[h] for h in hashes}))
    rng = np.random.default_rng(0)
    for budget in budgets:
        root = dst / "train_model_results" / "energy" / space / f"{budget}_epochs"
        (root / "_recovery").mkdir(parents=True)
        (root / "_recovery" / "marker").write_text("")
        for h in hashes:
            real = json.loads((base / h[:2] / h / "repeat_1" / "results.json").read_text())
            k = budget / 4
            for r in range(1, repeats + 1):
                jitter = 1.0 if r == 1 else float(rng.uniform(0.98, 1.02))
                res = _scaled(real, k * jitter, k * jitter, k)
                out = root / h[:2] / h / f"repeat_{r}"
                out.mkdir(parents=True)
                (out / "results.json").write_text(json.dumps(res))
    shutil.copy(src / "LICENSE", dst / "LICENSE")
    return dst


def _run(df: pd.DataFrame, i: int = 0, budget: int = 4, repeat: int = 1) -> pd.Series:
    h = sorted(df["arch_hash"].unique())[i]
    return ((df["arch_hash"] == h) & (df["budget_epochs"] == budget) & (df["repeat"] == repeat))


def _scale_energy(df: pd.DataFrame, mask: pd.Series, k: float) -> None:
    # the published kWh too: the fault is in the data as imported, not an edit after import
    for c in ["energy_j", *COMPONENTS, "energy_kwh"]:
        df.loc[mask, c] = df.loc[mask, c] * k


def drop_column(df):
    return df.drop(columns=["energy_j"])


def duplicate_row(df):
    return pd.concat([df, df.iloc[[5]]], ignore_index=True)


def energy_decreases(df):
    m = _run(df) & (df["epoch"] == 2.0)
    final = df.loc[_run(df) & (df["epoch"] == 4.0), "energy_j"].iloc[0]
    _scale_energy(df, m, 1.05 * final / df.loc[m, "energy_j"].iloc[0])
    return df


def components_do_not_add_up(df):
    df.loc[df.index[7], "gpu_energy_j"] *= 1.1
    return df


def negative_time(df):
    df.loc[_run(df, 2) & (df["epoch"] == 0.0), "training_time_s"] = -1.0
    return df


def impossible_power(df):
    _scale_energy(df, _run(df, 3), 10.0)
    return df


def incoherent_power(df):
    m = _run(df, 4) & (df["epoch"] == 2.0)
    final = df.loc[_run(df, 4) & (df["epoch"] == 4.0), "energy_j"].iloc[0]
    _scale_energy(df, m, 0.99 * final / df.loc[m, "energy_j"].iloc[0])
    return df


def repeat_disagrees(df):
    _scale_energy(df, _run(df, 5, repeat=2), 1.6)
    return df


def time_decorrelated(df):
    # every run's clock scaled by its own random factor: energy no longer follows time
    rng = np.random.default_rng(1)
    keys = ["arch_hash", "budget_epochs", "repeat"]
    factors = df[keys].drop_duplicates().assign(f=lambda d: rng.uniform(0.5, 1.6, len(d)))
    f = df[keys].merge(factors, on=keys, how="left")["f"].to_numpy()
    df["training_time_s"] *= f
    df["wall_time_s"] *= f
    return df


def cost_doubles(df):
    # one run trains at half speed at the same power (its first run on a contended CPU):
    # time and energy from its first checkpoint on grow twice as fast as its cell's other runs
    m = _run(df, 10, budget=12, repeat=2)
    for c in ["training_time_s", "wall_time_s", "energy_j", *COMPONENTS, "energy_kwh"]:
        first = df.loc[m & (df["epoch"] == 0.0), c].iloc[0]
        df.loc[m, c] = first + 2.0 * (df.loc[m, c] - first)
    return df


def missing_repeat(df):
    return df[~_run(df, 6, repeat=2)].reset_index(drop=True)


def wrong_hash(df):
    df.loc[_run(df, 7), "arch_hash"] = "0123456789abcdef0123456789abcdef"
    return df


def mixed_estimated_run(df):
    df.loc[_run(df, 8) & (df["epoch"] == 2.0), "estimated"] = True
    return df


def unflagged_extrapolation(df):
    df.loc[_run(df, 9, budget=12), "source"] = "extrapolated"
    return df


def stale_published_kwh(df):
    df.loc[df.index[13], "energy_j"] *= 1.01  # edited after import, energy_kwh left as it was
    df.loc[df.index[13], "gpu_energy_j"] *= 1.01
    df.loc[df.index[13], "cpu_energy_j"] *= 1.01
    return df


def accuracy_above_one(df):
    df.loc[df.index[11], "validation_accuracy"] = 1.5
    return df


#: fault name → (planting function, the check that must report it)
FAULTS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str]] = {
    "missing-column": (drop_column, "schema"),
    "duplicate-row": (duplicate_row, "duplicate-rows"),
    "energy-decreases": (energy_decreases, "monotone-checkpoints"),
    "components-do-not-add-up": (components_do_not_add_up, "energy-sum"),
    "stale-published-kwh": (stale_published_kwh, "published-kwh"),
    "negative-time": (negative_time, "non-negative"),
    "impossible-power": (impossible_power, "power-bounds"),
    "incoherent-power": (incoherent_power, "power-coherence"),
    "repeat-disagrees": (repeat_disagrees, "repeats-agree"),
    "time-decorrelated": (time_decorrelated, "energy-time-correlation"),
    "cost-doubles": (cost_doubles, "budget-consistency"),
    "missing-repeat": (missing_repeat, "coverage"),
    "wrong-hash": (wrong_hash, "hash-matches-spec"),
    "mixed-estimated-run": (mixed_estimated_run, "estimated-mixing"),
    "unflagged-extrapolation": (unflagged_extrapolation, "derived-rows-flagged"),
    "accuracy-above-one": (accuracy_above_one, "value-ranges"),
}
