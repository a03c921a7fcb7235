"""Issue 16's situations on the EC-NAS 5V runs: extrapolation 2 → 4 epochs with few cells
measured to full budget, tested on every cell never used in the fit (docs/surrogate.md).

    python3 benchmarks/surrogate_situations.py /tmp/ec-nas-5v [SEEDS] [SITUATIONS]

SITUATIONS is a string of letters (default ``AEBDWCX``):

A  20 cells measured to full budget, the others cut at epoch 2 (checkpoints 0 and 2)
E  18 cells, the same
B  20 cells, no epoch-0 checkpoint anywhere (one checkpoint before the budget)
D  20 cells, checkpoints without times (energy only)
W  20 cells, a first-epoch warm-up of 5 kJ and 20 s added to every checkpoint after epoch 0
   (a one-time cost inside the first segment; synthetic, the kind of table where the
   previous extrapolator lost to least squares)
C  506 cells (20%, as `evaluate` does)
X  500 cells with the warm-up of W

Prints, per situation, the mean over seeds of our MAPE, the issue's least-squares baseline
(fitted on the same full-budget runs, computed here with numpy), linear scaling, and the
coverage of our 90% intervals (mean, min and max over seeds). Large situations (C, X) use at
most 5 seeds. Not collected by pytest (no ``bench_`` prefix); it takes a few minutes.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from ecnas.interop.ecnas_tree import import_results_tree
from ecnas.surrogate import Extrapolator
from ecnas.surrogate.metrics import mape

CUT, BUDGET = 2.0, 4
SITUATIONS = {
    "A": ("20 cells", {"cells": 20}),
    "E": ("18 cells", {"cells": 18}),
    "B": ("20 cells, no epoch 0", {"cells": 20, "drop_epoch0": True}),
    "D": ("20 cells, energy only", {"cells": 20, "energy_only": True}),
    "W": ("20 cells, warm-up 5 kJ", {"cells": 20, "warm_j": 5000.0}),
    "C": ("506 cells", {"cells": 506}),
    "X": ("500 cells, warm-up 5 kJ", {"cells": 500, "warm_j": 5000.0}),
}


def baseline(full: pd.DataFrame, test: pd.DataFrame, *, prev: bool, times: bool) -> pd.Series:
    """Least squares of E(4) on [1, E(2), E(2) − E(0), T(2), T(2) − T(0)] (what exists)."""
    def design(t: pd.DataFrame) -> tuple[pd.Index, np.ndarray]:
        w = t.pivot_table(index="arch_hash", columns="epoch", values=["energy_j", "training_time_s"])
        cols = [np.ones(len(w)), w[("energy_j", CUT)]]
        if prev:
            cols.append(w[("energy_j", CUT)] - w[("energy_j", 0.0)])
        if times:
            cols.append(w[("training_time_s", CUT)])
            if prev:
                cols.append(w[("training_time_s", CUT)] - w[("training_time_s", 0.0)])
        return w.index, np.column_stack(cols)

    idx, x = design(full[full["epoch"] <= CUT])
    y = full[full["epoch"] == BUDGET].set_index("arch_hash").loc[idx, "energy_j"].to_numpy()
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    idx_t, x_t = design(test[test["epoch"] <= CUT])
    return pd.Series(x_t @ coef, index=idx_t)


def situation(table: pd.DataFrame, seed: int, *, cells: int, drop_epoch0: bool = False,
              energy_only: bool = False, warm_j: float = 0.0) -> dict[str, float]:
    t = table.copy()
    if warm_j:
        after = t["epoch"] > 0
        t.loc[after, "energy_j"] += warm_j
        for c in ("training_time_s", "wall_time_s"):
            t.loc[after, c] += warm_j / 250.0
    hashes = np.array(sorted(t["arch_hash"].unique()))
    perm = np.random.default_rng(seed).permutation(hashes)
    fit_cells, test_cells = set(perm[:cells]), set(perm[cells:])
    seen = t[t["epoch"] > 0] if drop_epoch0 else t
    if energy_only:
        seen = seen.assign(training_time_s=np.nan, wall_time_s=np.nan)
    ext = Extrapolator(seed=seed).fit(seen[seen["arch_hash"].isin(fit_cells)])
    short = seen[seen["arch_hash"].isin(test_cells) & (seen["epoch"] <= CUT)]
    pred = ext.predict(short, BUDGET).set_index("arch_hash")
    final = t[t["epoch"] == BUDGET].set_index("arch_hash")["energy_j"].loc[pred.index]
    base = baseline(t[t["arch_hash"].isin(fit_cells)], t[t["arch_hash"].isin(test_cells)],
                    prev=not drop_epoch0, times=not energy_only).loc[pred.index]
    at_cut = t[t["epoch"] == CUT].set_index("arch_hash")["energy_j"].loc[pred.index]
    inside = (pred["energy_j_low"] <= final) & (final <= pred["energy_j_high"])
    return {"ours": mape(pred["energy_j"], final), "ls": mape(base, final),
            "scaling": mape(at_cut * BUDGET / CUT, final), "coverage": float(inside.mean() * 100)}


def main(argv: list[str]) -> None:
    table = import_results_tree(argv[1])
    seeds = int(argv[2]) if len(argv) > 2 else 10
    for letter in argv[3] if len(argv) > 3 else "AEBDWCX":
        name, kw = SITUATIONS[letter]
        n = min(seeds, 5) if kw["cells"] > 100 else seeds
        r = pd.DataFrame([situation(table, s, **kw) for s in range(n)])
        print(f"{letter} {name:26} seeds {n:2d}  ours {r['ours'].mean():.3f}%  "
              f"least squares {r['ls'].mean():.3f}%  linear scaling {r['scaling'].mean():.2f}%  "
              f"coverage {r['coverage'].mean():.1f}% ({r['coverage'].min():.1f}–"
              f"{r['coverage'].max():.1f})  ours ≤ LS in {int((r['ours'] <= r['ls']).sum())}/{n}",
              flush=True)


if __name__ == "__main__":
    main(sys.argv)
