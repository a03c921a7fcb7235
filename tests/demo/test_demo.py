"""The demo end to end on a tiny configuration: every artefact is written, numbers are labelled,
and a second run reuses the store instead of measuring again."""

from __future__ import annotations

import io
import json

import pandas as pd

from ecnas.demo.config import DemoConfig
from ecnas.demo.pipeline import run_demo
from ecnas.demo.progress import StepPrinter


def test_demo_runs_end_to_end_and_reuses_its_store(tmp_path, capsys):
    config = DemoConfig(out_dir=tmp_path / "demo", architectures=5, full_budget_runs=1,
                        stem_channels=4, num_stacks=1, batch_size=64, max_train_images=128,
                        predicted_architectures=10, workers=0, search_evaluations=6,
                        search_seeds=2)
    log = io.StringIO()
    first = run_demo(config, printer=StepPrinter(total=8, stream=log))
    text = log.getvalue()
    assert "[1/8]" in text and "[8/8]" in text
    assert first.measured_runs == 6 and first.reused_runs == 0 and first.failed_runs == 0
    for path in (first.table_path, first.tfrecord_path, first.plot_path, first.summary_path,
                 first.bundle_path / "manifest.json"):
        assert path.exists() and path.stat().st_size > 0, path
    assert first.tfrecord_records == 6
    table = pd.read_parquet(first.table_path)
    assert set(table["source"]) == {"measured", "extrapolated", "surrogate"}
    assert table["estimated"].all()  # no counter here: every energy is an estimate, and says so
    assert first.estimated and first.estimate_reasons
    summary = first.summary_path.read_text()
    for word in ("measured", "extrapolated", "surrogate", "estimate", "Pareto"):
        assert word in summary
    # the figure has one name: the plot's title, summary.md's heading, `ecnas pareto`'s line
    from ecnas.benchmark.moo.describe import front_title, knee_text, saving_text

    assert first.plot_title == front_title(config.measured_budget)
    assert f"## {first.plot_title}\n" in summary
    assert f"![{first.plot_title}](pareto.png)" in summary
    assert knee_text(first.knee)[1:] in summary
    assert saving_text(first.energy_saved_fraction, first.accuracy_loss_points)[1:] in summary
    assert "Plotted: energy of " in summary and "estimated (no energy counter readable)" in summary
    assert "device generic-" in summary and "data set embedded digits" in summary
    manifest = json.loads((first.bundle_path / "manifest.json").read_text())
    assert manifest["files"]
    assert manifest["table_metadata"]["dataset"] == "embedded"  # `ecnas pareto` names it

    # the TFRecord holds estimates: exported with --allow-estimated's flag, its sidecar says so
    side = json.loads((first.out_dir / "ecnas.tfrecord.ecnas.json").read_text())
    assert side["records"] == first.tfrecord_records == side["records_estimated"]

    # the summary lists every finding of `ecnas check table.parquet`, warnings included
    from ecnas.cli import main

    capsys.readouterr()
    main(["check", str(first.table_path), "--json"])
    checked = json.loads(capsys.readouterr().out)
    found = [c for c in checked["checks"] if not c["passed"]]
    for c in found:
        assert f"{c['severity']} {c['name']}" in summary, c["name"]
    assert ("all passed" in summary) == (not found)
    # and a warning (the 4- vs 8-epoch per-epoch cost of a run under load) is never "all passed"
    from dataclasses import replace

    from ecnas.demo.summary import render_markdown

    warned = replace(first, check_ok=True, check_findings=(
        ("budget-consistency", "warning", 2, "per-epoch cost differs ×4.02 between budgets"),))
    text = render_markdown(warned)
    assert "all passed" not in text and "passed with 0 error(s) and 1 warning(s)" in text
    assert "  - warning budget-consistency [2]: per-epoch cost differs ×4.02" in text

    again = run_demo(config, printer=StepPrinter(total=8, stream=io.StringIO()))
    assert again.measured_runs == 0 and again.reused_runs == 6
    assert again.measured_energy_j == first.measured_energy_j
