"""``ecnas demo``: the whole pipeline on the embedded default, end to end.

sample cells → measure short runs through a campaign (resumable store) → check the table →
extrapolate to full budgets and predict untrained cells → export the bundle and the EC-NAS
TFRecord → multi-objective search → Pareto plot → summary. Each step is a plain function of
the previous steps' outputs; :func:`run_demo` wires them and reports progress.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ecnas.benchmark import Benchmark, write_bundle
from ecnas.benchmark.moo import energy_saved_at, plot_front, run_search
from ecnas.benchmark.moo.describe import DATASET_NAMES
from ecnas.campaign import load_campaign, run_campaign
from ecnas.campaign.store import ResultsStore
from ecnas.demo import ledger
from ecnas.demo.campaign import render_campaign
from ecnas.demo.config import DemoConfig
from ecnas.demo.progress import StepPrinter
from ecnas.demo.summary import DemoResult, SearchOutcome, rows_by_source, write_summary
from ecnas.errors import CheckFailed
from ecnas.interop import export_ecnas_tfrecord
from ecnas.interop.sidecar import sidecar_path
from ecnas.outputs import write_text
from ecnas.space import sample_cells
from ecnas.space.cost import NetworkShape
from ecnas.surrogate import ArchitectureSurrogate, SurrogateModel
from ecnas.tables import check_schema, get_metadata, set_metadata, write_table
from ecnas.tables.checks import run_checks

STEPS = 8


def sample_architectures(config: DemoConfig) -> tuple[list[Any], list[Any]]:
    """Measured cells and never-trained cells, disjoint, uniform over the V ≤ max_vertices space."""
    n = config.architectures + config.predicted_architectures
    cells = sample_cells(n, config.seed, max_vertices=config.max_vertices)
    return list(cells[: config.architectures]), list(cells[config.architectures :])


def campaign_text(config: DemoConfig, cells: list[Any]) -> str:
    """The demo's campaign file: the sampled cells at the short budget, a few at a longer one."""
    return render_campaign(config, cells)


def measure(config: DemoConfig, cells: list[Any], printer: StepPrinter) -> tuple[Any, Any]:
    """Run the campaign into the store (reusing what is there) and return (summary, table)."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    path = config.out_dir / "campaign.toml"

    write_text(path, campaign_text(config, cells))
    ledger.record(config.out_dir, path)
    campaign = load_campaign(path)
    summary = run_campaign(
        campaign, config.store_path, workers=config.workers, resume=True, progress=printer.say
    )
    table = ResultsStore(config.store_path).table()
    return summary, table


def check(table: Any) -> Any:
    """The consistency report of the measured table (``ecnas check``'s checks, default
    thresholds)."""
    return run_checks(table)


def extend(config: DemoConfig, table: Any, predicted: list[Any]) -> tuple[Any, Any, Any]:
    """Fit the surrogate on the measured table; return (model, extrapolated rows, predicted rows)."""
    # features must describe the scaled-down network the runs actually trained
    shape = NetworkShape(stem_channels=config.stem_channels, num_stacks=config.num_stacks,
                         cells_per_stack=config.cells_per_stack)
    model = SurrogateModel(architecture=ArchitectureSurrogate(shape=shape, seed=config.seed))
    model.fit(table, seed=config.seed)
    short = table[table["budget_epochs"] == config.measured_budget]
    extrapolated = pd.concat(
        [model.predict(short, budget=b) for b in config.extrapolate_to], ignore_index=True
    )
    extrapolated = extrapolated[extrapolated["source"] == "extrapolated"]
    cells = pd.DataFrame({
        "arch_hash": [c.hash() for c in predicted],
        "matrix": [c.matrix_str for c in predicted],
        "ops": [c.ops_str for c in predicted],
    })
    surrogate = pd.concat(
        [model.predict(cells, budget=b) for b in (config.measured_budget, *config.extrapolate_to)],
        ignore_index=True,
    )
    return model, extrapolated, surrogate


@dataclass
class _Steps:
    """The demo's progress printer and the seconds each timed part took."""

    printer: StepPrinter
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        self.timings[name] = time.perf_counter() - t0
        return value


@dataclass(frozen=True)
class _Exported:
    """The benchmark files: the full table (measured + derived rows) and where each went."""

    full: Any
    table_path: Path
    bundle_path: Path
    tfrecord_path: Path
    tfrecord_records: int


@dataclass(frozen=True)
class _Searched:
    """The bundle loaded as a benchmark, each algorithm's hypervolumes, and every search run."""

    bench: Any
    outcomes: tuple[SearchOutcome, ...]
    runs: tuple[Any, ...]


@dataclass(frozen=True)
class _Front:
    front: Any
    plot_path: Path
    energy_saved: float | None


def run_demo(config: DemoConfig, *, printer: StepPrinter | None = None) -> DemoResult:
    """Run every step; a second run with the same ``out_dir`` reuses the measured runs."""
    steps = _Steps(printer or StepPrinter(total=STEPS))
    config.out_dir.mkdir(parents=True, exist_ok=True)
    measured_cells, predicted_cells = _sample_step(config, steps)
    summary, table = _measure_step(config, measured_cells, steps)
    report = _check_step(table, steps)
    model, extrapolated, surrogate = _extend_step(config, table, predicted_cells, steps)
    exported = _export_step(config, table, extrapolated, surrogate, steps)
    searched = _search_step(config, exported.bundle_path, steps)
    front = _pareto_step(config, searched, steps)
    steps.printer.start("Writing the summary")
    result = _result(config, summary, table, report, model, exported, searched, front,
                     predicted=len(predicted_cells), timings=steps.timings)
    write_summary(result, result.summary_path)
    ledger.record(config.out_dir, result.summary_path)
    steps.printer.done(str(result.summary_path))
    return result


def _sample_step(config: DemoConfig, steps: _Steps) -> tuple[list[Any], list[Any]]:
    steps.printer.start(f"Sampling {config.architectures} cells to measure and "
                        f"{config.predicted_architectures} to predict "
                        f"(≤ {config.max_vertices} vertices)")
    cells = steps.timed("sample", lambda: sample_architectures(config))
    steps.printer.done()
    return cells


def _measure_step(config: DemoConfig, cells: list[Any], steps: _Steps) -> tuple[Any, Any]:
    steps.printer.start("Measuring short runs through a campaign (store: "
                        f"{config.store_path}; runs already there are reused)")
    summary, table = steps.timed("measure", lambda: measure(config, cells, steps.printer))
    steps.printer.done(f"{summary.done} run now, {summary.skipped} reused, "
                       f"{summary.failed} failed")
    if table.empty:
        raise CheckFailed("no run completed; see the failures above")
    return summary, table


def _check_step(table: Any, steps: _Steps) -> Any:
    steps.printer.start("Checking the measured table")
    report = steps.timed("check", lambda: check(table))
    failed = [r.name for r in report.failed if r.severity == "error"]
    warned = [r.name for r in report.failed if r.severity == "warning"]
    detail = "all checks passed" if report.ok else f"failed: {', '.join(failed)}"
    if warned:
        detail += f" (warnings: {', '.join(warned)})"
    steps.printer.done(detail)
    return report


def _extend_step(config: DemoConfig, table: Any, predicted: list[Any],
                 steps: _Steps) -> tuple[Any, Any, Any]:
    steps.printer.start("Extrapolating to full budgets and predicting untrained cells")
    model, extrapolated, surrogate = steps.timed(
        "surrogate", lambda: extend(config, table, predicted))
    steps.printer.done(f"{len(extrapolated)} extrapolated rows, {len(surrogate)} predicted rows")
    return model, extrapolated, surrogate


def _export_step(config: DemoConfig, table: Any, extrapolated: Any, surrogate: Any,
                 steps: _Steps) -> _Exported:
    out = config.out_dir
    steps.printer.start("Exporting the benchmark (bundle + EC-NAS TFRecord)")
    full = check_schema(pd.concat([table, extrapolated, surrogate], ignore_index=True))
    # the data set travels with the table and the bundle (`ecnas pareto` names it from there)
    set_metadata(full, {**get_metadata(full), "dataset": "embedded"})
    table_path = write_table(full, out / "table.parquet") or out / "table.parquet"
    ledger.record(out, Path(table_path))
    bundle_path = Path(steps.timed("bundle", lambda: write_bundle(full, out / "bundle")))
    tfrecord_path = out / "ecnas.tfrecord"
    # the demo's energies are estimates where no counter is readable: exported anyway, and the
    # sidecar (ecnas.tfrecord.ecnas.json) says so record by record for whoever imports the file
    report = steps.timed("tfrecord", lambda: export_ecnas_tfrecord(table, tfrecord_path,
                                                                   allow_estimated=True))
    n_records = report.records
    ledger.record(out, tfrecord_path, sidecar_path(tfrecord_path))
    steps.printer.done(f"{bundle_path}, {tfrecord_path}")
    return _Exported(full, Path(table_path), bundle_path, tfrecord_path, int(n_records or 0))


def _search_step(config: DemoConfig, bundle_path: Path, steps: _Steps) -> _Searched:
    steps.printer.start("Multi-objective search (energy vs validation accuracy)")
    bench = Benchmark.load(bundle_path, seed=config.seed)
    outcomes, runs = [], []
    for algorithm in config.search_algorithms:
        results = [run_search(bench, algorithm, config.search_evaluations, seed,
                              budget=config.measured_budget)
                   for seed in range(config.search_seeds)]
        runs += results
        outcomes.append(SearchOutcome(algorithm, tuple(r.hypervolume for r in results)))
    steps.printer.done(", ".join(f"{s.algorithm} HV {s.mean:.4f}" for s in outcomes))
    return _Searched(bench, tuple(outcomes), tuple(runs))


def _pareto_step(config: DemoConfig, searched: _Searched, steps: _Steps) -> _Front:
    steps.printer.start("Pareto front and plot")
    plot_path = config.out_dir / "pareto.png"
    front = steps.timed("pareto", lambda: plot_front(
        searched.bench, plot_path, budget=config.measured_budget,
        searches=list(searched.runs[:: config.search_seeds]),
        dataset=DATASET_NAMES["embedded"]))
    ledger.record(config.out_dir, plot_path)
    saved = energy_saved_at(front.front_points(), config.accuracy_loss_points)
    steps.printer.done(f"{plot_path}")
    return _Front(front, plot_path, saved)


def _result(config: DemoConfig, summary: Any, table: Any, report: Any, model: Any,
            exported: _Exported, searched: _Searched, front: _Front, *, predicted: int,
            timings: dict[str, float]) -> DemoResult:
    """Everything the summary reports, from the steps' outputs."""
    notes = [str(n) for n in model.info.get("notes", [])]
    # the table as written (measured + derived rows) is what `ecnas check table.parquet` sees
    written = check(exported.full)
    measured = table[table["source"] == "measured"]
    last = measured.sort_values("epoch").groupby(["arch_hash", "budget_epochs", "repeat"]).tail(1)
    saved = front.energy_saved
    return DemoResult(
        out_dir=config.out_dir,
        measured_runs=summary.done,
        reused_runs=summary.skipped,
        failed_runs=summary.failed,
        architectures=int(measured["arch_hash"].nunique()),
        measured_energy_j=float(last["energy_j"].sum()),
        estimated=bool(measured["estimated"].any()),
        estimate_reasons=tuple(sorted(set(_reasons(table)))),
        meters=_meters(summary, table),
        check_ok=report.ok and written.ok,
        check_failed=tuple(dict.fromkeys(r.name for r in (*report.failed, *written.failed)
                                         if r.severity == "error")),
        check_findings=_findings(report, written),
        rows_by_source=rows_by_source(exported.full["source"].tolist()),
        extrapolated_budgets=config.extrapolate_to,
        extrapolation_method=_method(notes, "extrapol", "start-up + per-epoch rate per run"),
        predicted_architectures=predicted,
        surrogate_model=_method(notes, "architecture", "architecture surrogate"),
        surrogate_notes=tuple(notes),
        table_path=exported.table_path,
        bundle_path=exported.bundle_path,
        tfrecord_path=exported.tfrecord_path,
        tfrecord_records=exported.tfrecord_records,
        plot_path=front.plot_path,
        summary_path=config.out_dir / "summary.md",
        searches=searched.outcomes,
        search_budget=config.measured_budget,
        knee=dict(getattr(front.front, "knee", {}) or {}),
        energy_saved_fraction=float(saved) if saved is not None else math.nan,
        accuracy_loss_points=config.accuracy_loss_points,
        timings_s=dict(timings),
        plot_title=front.front.title,
        quick=config.quick,
        energy_origin=front.front.origin.text() if front.front.origin else "",
    )


def _findings(*reports: Any) -> tuple[tuple[str, str, int, str], ...]:
    """Every failed check of the reports, once per check name (the written table's wording
    where both failed): errors first, then warnings."""
    found: dict[str, tuple[str, str, int, str]] = {}
    for rep in reports:
        for r in rep.failed:
            found[r.name] = (r.name, r.severity, int(r.count), r.explanation)
    order = {"error": 0, "warning": 1}
    return tuple(sorted(found.values(), key=lambda f: order.get(f[1], 2)))


def _method(notes: list[str], word: str, default: str) -> str:
    """The surrogate's own words for the method it used (its notes say when it fell back)."""
    for n in notes:
        if word in n.lower():
            return n
    return default


def _meters(summary: Any, table: Any) -> tuple[str, ...]:
    meta = table.attrs.get("ecnas", {}) if hasattr(table, "attrs") else {}
    stored = meta.get("meters") or []
    names = {m if isinstance(m, str) else str(m.get("meter", m)) for m in stored}
    return tuple(sorted(names | set(summary.meters)))


def _reasons(table: Any) -> list[str]:
    meta = table.attrs.get("ecnas", {}) if hasattr(table, "attrs") else {}
    return list(meta.get("estimate_reasons", []))
