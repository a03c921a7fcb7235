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
from pathlib import Path
from typing import Any

from ecnas.demo.config import DemoConfig
from ecnas.demo.progress import StepPrinter
from ecnas.demo.summary import DemoResult, SearchOutcome, rows_by_source, write_summary
from ecnas.errors import CheckFailed

STEPS = 8


def sample_architectures(config: DemoConfig) -> tuple[list[Any], list[Any]]:
    """Measured cells and never-trained cells, disjoint, uniform over the V ≤ max_vertices space."""
    from ecnas.space import sample_cells

    n = config.architectures + config.predicted_architectures
    cells = sample_cells(n, config.seed, max_vertices=config.max_vertices)
    return list(cells[: config.architectures]), list(cells[config.architectures :])


def campaign_text(config: DemoConfig, cells: list[Any]) -> str:
    """The demo's campaign file: the sampled cells at the short budget, a few at a longer one."""
    from ecnas.demo.campaign import render_campaign

    return render_campaign(config, cells)


def measure(config: DemoConfig, cells: list[Any], printer: StepPrinter) -> tuple[Any, Any]:
    """Run the campaign into the store (reusing what is there) and return (summary, table)."""
    from ecnas.trainer.campaign import load_campaign, run_campaign
    from ecnas.trainer.campaign.store import ResultsStore

    config.out_dir.mkdir(parents=True, exist_ok=True)
    path = config.out_dir / "campaign.toml"
    from ecnas.outputs import write_text

    write_text(path, campaign_text(config, cells))
    campaign = load_campaign(path)
    summary = run_campaign(
        campaign, config.store_path, workers=config.workers, resume=True, progress=printer.say
    )
    table = ResultsStore(config.store_path).table()
    return summary, table


def check(table: Any) -> Any:
    from ecnas.tables.checks import run_checks

    return run_checks(table)


def extend(config: DemoConfig, table: Any, predicted: list[Any]) -> tuple[Any, Any, Any]:
    """Fit the surrogate on the measured table; return (model, extrapolated rows, predicted rows)."""
    import pandas as pd

    from ecnas.space.cost import NetworkShape
    from ecnas.surrogate import ArchitectureSurrogate, SurrogateModel

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


def run_demo(config: DemoConfig, *, printer: StepPrinter | None = None) -> DemoResult:
    """Run every step; a second run with the same ``out_dir`` reuses the measured runs."""
    import pandas as pd

    from ecnas.benchmark import Benchmark, write_bundle, write_ecnas_tfrecord
    from ecnas.benchmark.moo import energy_saved_at, plot_front, run_search
    from ecnas.tables import validate, write_table

    printer = printer or StepPrinter(total=STEPS)
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        timings[name] = time.perf_counter() - t0
        return value

    printer.start(f"Sampling {config.architectures} cells to measure and "
                  f"{config.predicted_architectures} to predict (≤ {config.max_vertices} vertices)")
    measured_cells, predicted_cells = timed("sample", lambda: sample_architectures(config))
    printer.done()

    printer.start("Measuring short runs through a campaign (store: "
                  f"{config.store_path}; runs already there are reused)")
    summary, table = timed("measure", lambda: measure(config, measured_cells, printer))
    printer.done(f"{summary.done} run now, {summary.skipped} reused, {summary.failed} failed")
    if table.empty:
        raise CheckFailed("no run completed; see the failures above")

    printer.start("Checking the measured table")
    report = timed("check", lambda: check(table))
    failed = tuple(r.name for r in report.failed if r.severity == "error")
    printer.done("all checks passed" if report.ok else f"failed: {', '.join(failed)}")

    printer.start("Extrapolating to full budgets and predicting untrained cells")
    model, extrapolated, surrogate = timed(
        "surrogate", lambda: extend(config, table, predicted_cells)
    )
    printer.done(f"{len(extrapolated)} extrapolated rows, {len(surrogate)} predicted rows")

    printer.start("Exporting the benchmark (bundle + EC-NAS TFRecord)")
    full = validate(pd.concat([table, extrapolated, surrogate], ignore_index=True))
    table_path = write_table(full, out / "table.parquet") or out / "table.parquet"
    bundle_path = Path(timed("bundle", lambda: write_bundle(full, out / "bundle")))
    tfrecord_path = out / "ecnas.tfrecord"
    n_records = timed("tfrecord", lambda: write_ecnas_tfrecord(table, tfrecord_path))
    printer.done(f"{bundle_path}, {tfrecord_path}")

    printer.start("Multi-objective search (energy vs validation accuracy)")
    bench = Benchmark.load(bundle_path, seed=config.seed)
    searches, runs = [], []
    for algorithm in config.search_algorithms:
        results = [run_search(bench, algorithm, config.search_evaluations, seed,
                              budget=config.measured_budget)
                   for seed in range(config.search_seeds)]
        runs += results
        searches.append(SearchOutcome(algorithm, tuple(r.hypervolume for r in results)))
    printer.done(", ".join(f"{s.algorithm} HV {s.mean:.4f}" for s in searches))

    printer.start("Pareto front and plot")
    plot_path = out / "pareto.png"
    front = timed("pareto", lambda: plot_front(bench, plot_path, budget=config.measured_budget,
                                               searches=runs[:: config.search_seeds]))
    saved = energy_saved_at(front.front_points(), config.accuracy_loss_points)
    printer.done(f"{plot_path}")

    printer.start("Writing the summary")
    notes = [str(n) for n in model.info.get("notes", [])]
    measured = table[table["source"] == "measured"]
    last = measured.sort_values("epoch").groupby(["arch_hash", "budget_epochs", "repeat"]).tail(1)
    reasons = tuple(sorted({r for r in _reasons(table)}))
    result = DemoResult(
        out_dir=out,
        measured_runs=summary.done,
        reused_runs=summary.skipped,
        failed_runs=summary.failed,
        architectures=int(measured["arch_hash"].nunique()),
        measured_energy_j=float(last["energy_j"].sum()),
        estimated=bool(measured["estimated"].any()),
        estimate_reasons=reasons,
        meters=_meters(summary, table),
        check_ok=report.ok,
        check_failed=failed,
        rows_by_source=rows_by_source(full["source"].tolist()),
        extrapolated_budgets=config.extrapolate_to,
        extrapolation_method=_method(notes, "extrapol", "start-up + per-epoch rate per run"),
        predicted_architectures=len(predicted_cells),
        surrogate_model=_method(notes, "architecture", "architecture surrogate"),
        surrogate_notes=tuple(notes),
        table_path=Path(table_path),
        bundle_path=bundle_path,
        tfrecord_path=tfrecord_path,
        tfrecord_records=int(n_records or 0),
        plot_path=plot_path,
        summary_path=out / "summary.md",
        searches=tuple(searches),
        search_budget=config.measured_budget,
        knee=dict(getattr(front, "knee", {}) or {}),
        energy_saved_fraction=float(saved) if saved is not None else math.nan,
        accuracy_loss_points=config.accuracy_loss_points,
        timings_s=timings,
    )
    write_summary(result, result.summary_path)
    printer.done(str(result.summary_path))
    return result


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
