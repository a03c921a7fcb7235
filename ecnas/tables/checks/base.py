"""Check results, the report, options, and the shared per-table context (run ids, order)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError
from ecnas.tables.schema import RUN_KEYS

SEVERITIES = ("error", "warning", "info")
#: offending row labels kept per check (the count says how many there were in all)
MAX_OFFENDING = 50


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, severity, verdict, the offending rows (capped) and why."""

    name: str
    severity: str  # "error" | "warning" | "info"
    passed: bool
    count: int  # offending rows (or runs/groups, as the explanation says)
    explanation: str
    offending_rows: tuple[Any, ...] = ()
    worst: tuple[Mapping[str, Any], ...] = ()  # a few offenders with their values

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data (numpy scalars as Python numbers), one entry of ``ecnas
        check --json``."""
        d = asdict(self)
        d["offending_rows"] = [_plain(x) for x in self.offending_rows]
        d["worst"] = [{k: _plain(v) for k, v in w.items()} for w in self.worst]
        return d


def _plain(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


@dataclass(frozen=True)
class CheckReport:
    """All checks of one table. ``ok`` is false when any error-level check failed."""

    results: tuple[CheckResult, ...]
    rows: int
    runs: int
    architectures: int
    devices: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True unless an error-level check failed (failed warnings do not count)."""
        return not any(r.severity == "error" and not r.passed for r in self.results)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        """Every check that did not pass, whatever its severity."""
        return tuple(r for r in self.results if not r.passed)

    def get(self, name: str) -> CheckResult:
        """The result of the check called ``name``; a KeyError when there is none."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data for ``ecnas check --json``: verdict, table size, error and
        warning counts and every check."""
        return {
            "ok": self.ok,
            "rows": self.rows,
            "runs": self.runs,
            "architectures": self.architectures,
            "devices": list(self.devices),
            "errors": sum(1 for r in self.results if r.severity == "error" and not r.passed),
            "warnings": sum(1 for r in self.results if r.severity == "warning" and not r.passed),
            "checks": [r.to_dict() for r in self.results],
        }


@dataclass(frozen=True)
class CheckOptions:
    """Thresholds. Defaults are informed by the EC-NAS 5V data and paper (see docs/tables.md)."""

    rtol_energy_sum: float = 1e-6  # energy_j vs sum of components (relative)
    atol_energy_sum_j: float = 1e-3
    power_margin: float = 1.2  # mean power ≤ max_w × count × margin
    power_idle_fraction: float = 0.5  # mean power ≥ idle_w × count × this
    min_window_s: float = 10.0  # shorter windows are meter noise (10-s polling, 0.1-s NVML)
    coherence_factor: float = 2.0  # interval power within [1/f, f] × the run's mean power
    repeat_cv_warning: float = 0.10  # EC-NAS: median CV 1.6 %, max 8 %
    repeat_cv_error: float = 0.25
    repeat_outlier_z: float = 5.0  # robust z (median / 1.4826 MAD) of a repeat
    repeat_outlier_min_rel: float = 0.05  # … and at least this far from the median
    budget_cost_z: float = 5.0  # a run's per-epoch cost vs its cell: robust σ of the repeats
    budget_cost_min_rel: float = 0.25  # … never tighter than this (repeats may be copies)
    min_correlation: float = 0.8  # energy vs training time per device and budget (EC-NAS ≈ 0.99)
    min_correlation_runs: int = 10
    residual_z: float = 2.0  # in a weak group, runs this many robust σ off the fit offend
    time_slack_s: float = 1.0  # training time may exceed wall time by this (1-s timestamps)

    def __post_init__(self) -> None:
        # a NaN threshold would silently switch its check off (every comparison is False)
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise InputError(f"check option {name}={value!r}: must be a finite number >= 0")


@dataclass(frozen=True)
class Context:
    """What several checks share, computed once: run ids and the (run, epoch) order."""

    df: pd.DataFrame
    run_id: np.ndarray  # per row
    order: np.ndarray  # row positions sorted by (run, epoch)
    same_run_prev: np.ndarray  # in sorted order: row i belongs to the run of row i-1
    last_of_run: np.ndarray  # in sorted order: the run's last checkpoint
    n_runs: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    profiles: Mapping[str, Any] = field(default_factory=dict)
    options: CheckOptions = CheckOptions()

    def col(self, name: str) -> np.ndarray:
        """The column ``name`` as an array, in the table's row order."""
        return self.df[name].to_numpy()

    def sorted_col(self, name: str) -> np.ndarray:
        """The column ``name`` as an array in (run, epoch) order (``order``)."""
        return self.df[name].to_numpy()[self.order]


def combined_codes(df: pd.DataFrame, keys: tuple[str, ...] | list[str]) -> np.ndarray:
    """One int64 code per distinct combination of ``keys`` (factorize per column, combine)."""
    code = np.zeros(len(df), dtype=np.int64)
    for key in keys:
        c, uniq = pd.factorize(df[key], sort=False)
        code = code * (len(uniq) + 1) + c
        code = pd.factorize(code, sort=False)[0].astype(np.int64)  # keep codes small
    return code


def build_context(df: pd.DataFrame, *, metadata: Mapping[str, Any], profiles: Mapping[str, Any],
                  options: CheckOptions) -> Context:
    """The context of ``df`` for the checks: each row's run id, the rows sorted by (run, epoch),
    which sorted rows continue the run before and which end it, and the run count."""
    run_id = combined_codes(df, RUN_KEYS)
    epoch = df["epoch"].to_numpy(dtype="float64")
    order = np.lexsort((epoch, run_id))
    rs = run_id[order]
    same_prev = np.zeros(len(df), dtype=bool)
    same_prev[1:] = rs[1:] == rs[:-1]
    last = np.ones(len(df), dtype=bool)
    last[:-1] = rs[:-1] != rs[1:]
    return Context(df, run_id, order, same_prev, last, int(rs.max() + 1) if len(rs) else 0,
                   metadata, profiles, options)


def offending(ctx: Context, positions: np.ndarray, *, name: str, severity: str,
              explanation_fail: str, explanation_pass: str,
              values: Mapping[str, np.ndarray] | None = None,
              rank: np.ndarray | None = None) -> CheckResult:
    """A result from the row positions (not labels) that offend; ``rank`` (one score per row)
    puts the worst first."""
    positions = np.asarray(positions, dtype=np.int64)
    n = int(positions.size)
    if n == 0:
        return CheckResult(name, severity, True, 0, explanation_pass)
    if rank is not None:  # a per-row score (full length): worst first
        positions = positions[np.argsort(-np.asarray(rank)[positions], kind="stable")]
    shown = positions[:MAX_OFFENDING]
    labels = tuple(ctx.df.index[shown].tolist())
    worst = []
    cols = ["arch_hash", "budget_epochs", "repeat", "device", "epoch"]
    for p in shown[:5]:
        row = {c: ctx.df[c].iat[int(p)] for c in cols}
        for k, v in (values or {}).items():
            row[k] = v[int(p)] if np.ndim(v) else v
        row["row"] = ctx.df.index[int(p)]
        worst.append(row)
    return CheckResult(name, severity, False, n, explanation_fail, labels, tuple(worst))
