"""The demo's human-facing summary: what was measured, estimated, extrapolated and predicted."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecnas.benchmark.moo.describe import knee_text, saving_text
from ecnas.outputs import write_text


@dataclass(frozen=True)
class SearchOutcome:
    """One search algorithm's hypervolume for each seed of the demo's search."""

    algorithm: str
    hypervolumes: tuple[float, ...]

    @property
    def mean(self) -> float:
        """The mean hypervolume over seeds (NaN without seeds)."""
        return sum(self.hypervolumes) / len(self.hypervolumes) if self.hypervolumes else math.nan

    @property
    def sd(self) -> float:
        """The sample standard deviation of the hypervolumes (0 with fewer than two seeds)."""
        n = len(self.hypervolumes)
        if n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((h - m) ** 2 for h in self.hypervolumes) / (n - 1))


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo produced, with the paths of its files."""

    out_dir: Path
    measured_runs: int
    reused_runs: int
    failed_runs: int
    architectures: int
    measured_energy_j: float
    estimated: bool
    estimate_reasons: tuple[str, ...]
    meters: tuple[str, ...]
    check_ok: bool
    check_failed: tuple[str, ...]
    rows_by_source: Mapping[str, int]
    extrapolated_budgets: tuple[int, ...]
    extrapolation_method: str
    predicted_architectures: int
    surrogate_model: str
    table_path: Path
    bundle_path: Path
    tfrecord_path: Path
    tfrecord_records: int
    plot_path: Path
    summary_path: Path
    searches: tuple[SearchOutcome, ...]
    search_budget: int
    knee: Mapping[str, Any]
    energy_saved_fraction: float
    accuracy_loss_points: float
    surrogate_notes: tuple[str, ...] = ()
    timings_s: Mapping[str, float] = field(default_factory=dict)
    plot_title: str = "Pareto front"  # the figure's one name (describe.front_title)
    quick: bool = False  # made by `ecnas demo --quick`
    energy_origin: str = ""  # where the plotted energies come from (EnergyOrigin.text)
    #: every failed check of the written table, as ``ecnas check`` reports it:
    #: (name, severity, count, explanation); warnings included, so the summary never says
    #: "all passed" where ``ecnas check`` warns
    check_findings: tuple[tuple[str, str, int, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data, for ``ecnas demo --json``."""
        return {
            "out_dir": str(self.out_dir),
            "measured_runs": self.measured_runs,
            "reused_runs": self.reused_runs,
            "failed_runs": self.failed_runs,
            "architectures": self.architectures,
            "measured_energy_j": self.measured_energy_j,
            "estimated": self.estimated,
            "estimate_reasons": list(self.estimate_reasons),
            "meters": list(self.meters),
            "check_ok": self.check_ok,
            "check_failed": list(self.check_failed),
            "check_findings": [{"name": n, "severity": sev, "count": c, "explanation": e}
                               for n, sev, c, e in self.check_findings],
            "rows_by_source": dict(self.rows_by_source),
            "extrapolated_budgets": list(self.extrapolated_budgets),
            "extrapolation_method": self.extrapolation_method,
            "predicted_architectures": self.predicted_architectures,
            "surrogate_model": self.surrogate_model,
            "surrogate_notes": list(self.surrogate_notes),
            "table": str(self.table_path),
            "bundle": str(self.bundle_path),
            "tfrecord": str(self.tfrecord_path),
            "tfrecord_records": self.tfrecord_records,
            "plot": str(self.plot_path),
            "summary": str(self.summary_path),
            "search_budget": self.search_budget,
            "searches": {
                s.algorithm: {"hypervolumes": list(s.hypervolumes), "mean": s.mean, "sd": s.sd}
                for s in self.searches
            },
            "plot_title": self.plot_title,
            "quick": self.quick,
            "energy_origin": self.energy_origin,
            "knee": dict(self.knee),
            "energy_saved_fraction": self.energy_saved_fraction,
            "accuracy_loss_points": self.accuracy_loss_points,
            "timings_s": dict(self.timings_s),
        }


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def render_markdown(r: DemoResult) -> str:
    """``summary.md``'s text: what each row source means, whether energy was measured or
    estimated and why, the runs and checks, the files written, the search's hypervolumes, the
    Pareto front with its energy saving and knee, and the time per step."""
    base = r.out_dir
    kind = "estimated" if r.estimated else "measured"
    lines = [
        "# ecnas demo: summary",
        "",
        "The whole ecnas pipeline on the embedded default (UCI handwritten digits, scaled-down",
        "NAS-Bench-101 networks, CPU). Accuracies on this dataset say nothing about CIFAR-10.",
        "",
        *(["**Quick mode** (`--quick`): tiny networks on 128 training images; the numbers only",
           "show that every step works.", ""] if r.quick else []),
        "## What each number is",
        "",
        "| source | rows | what it means |",
        "|---|---:|---|",
        f"| measured | {r.rows_by_source.get('measured', 0)} | trained here under the meters "
        f"({', '.join(r.meters) or 'none'}); energy **{kind}** |",
        f"| extrapolated | {r.rows_by_source.get('extrapolated', 0)} | a measured run carried to "
        f"budgets {', '.join(map(str, r.extrapolated_budgets))} by the extrapolation model; "
        "never trained that long |",
        f"| surrogate | {r.rows_by_source.get('surrogate', 0)} | {r.predicted_architectures} "
        "architectures never trained, predicted from the cell alone |",
        "",
    ]
    if r.surrogate_notes:
        lines += ["What the surrogate did, in its own words:", "",
                  *[f"- {n}" for n in r.surrogate_notes], ""]
    if r.estimated:
        lines += [
            "**Measured energy here is an estimate**, because no energy counter could be read:",
            "",
            *[f"- {reason}" for reason in r.estimate_reasons],
            "",
            "On a machine with readable RAPL or NVML counters the same command measures instead.",
            "",
        ]
    lines += [
        "## Measuring",
        "",
        f"- {r.architectures} architectures, {r.measured_runs + r.reused_runs} runs "
        f"({r.reused_runs} reused from the store, {r.measured_runs} run now, "
        f"{r.failed_runs} failed)",
        f"- total energy of the measured runs: {r.measured_energy_j:,.1f} J "
        f"({r.measured_energy_j / 3600:.3f} Wh), {kind}",
        *_check_lines(r),
        "",
        "## Benchmark files",
        "",
        f"- table: `{_rel(r.table_path, base)}`",
        f"- bundle (Parquet + manifest with SHA-256 of every file): `{_rel(r.bundle_path, base)}`",
        f"- EC-NAS TFRecord: `{_rel(r.tfrecord_path, base)}` ({r.tfrecord_records} records)",
        "",
        f"## Multi-objective search (energy vs validation accuracy, budget {r.search_budget})",
        "",
        "| algorithm | hypervolume mean ± sd | seeds |",
        "|---|---|---:|",
        *[f"| {s.algorithm} | {s.mean:.4f} ± {s.sd:.4f} | {len(s.hypervolumes)} |" for s in r.searches],
        "",
        f"## {r.plot_title}",
        "",
        f"![{r.plot_title}]({_rel(r.plot_path, base)})",
        "",
    ]
    if r.energy_origin:
        lines += [f"Plotted: {r.energy_origin}.", ""]
    lines += [_capital(saving_text(r.energy_saved_fraction, r.accuracy_loss_points)) + ".", ""]
    lines += [_capital(knee_text(r.knee)) + ".", ""]
    if r.timings_s:
        lines += ["## Time per step", "", "| step | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in r.timings_s.items()]
        lines.append("")
    return "\n".join(lines)


def _check_lines(r: DemoResult) -> list[str]:
    """The consistency checks' verdict and every error and warning, as ``ecnas check`` on the
    table would list them."""
    table = _rel(r.table_path, r.out_dir)
    if not r.check_findings and r.check_ok:
        return [f"- consistency checks (`ecnas check {table}`): all passed"]
    errors = sum(1 for f in r.check_findings if f[1] == "error")
    warnings = sum(1 for f in r.check_findings if f[1] == "warning")
    verdict = "passed" if r.check_ok else "FAILED"
    lines = [f"- consistency checks (`ecnas check {table}`): {verdict} with {errors} error(s) "
             f"and {warnings} warning(s):"]
    mark = {"error": "error", "warning": "warning", "info": "note"}
    for name, sev, count, explanation in r.check_findings:
        n = f" [{count}]" if count else ""
        lines.append(f"  - {mark.get(sev, sev)} {name}{n}: {explanation}")
    if not r.check_findings:  # an error without detail (should not happen): say so anyway
        lines.append(f"  - failed: {', '.join(r.check_failed)}")
    return lines


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def write_summary(result: DemoResult, path: Path) -> Path:
    """Write :func:`render_markdown`'s text to ``path`` atomically and return the path."""
    return write_text(path, render_markdown(result))


def rows_by_source(sources: Sequence[str]) -> dict[str, int]:
    """How many rows come from each source (``measured``, ``extrapolated``, ``surrogate``)."""
    out: dict[str, int] = {}
    for s in sources:
        out[s] = out.get(s, 0) + 1
    return out
