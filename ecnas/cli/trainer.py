"""``ecnas train``: train one NAS-Bench-101 architecture with the meters and write its rows.

Registering is cheap (argparse only); torch, pandas and the dataset load when the command runs.
Progress goes to stderr (one line per epoch and per checkpoint), the result to stdout.
"""

from __future__ import annotations

import argparse
import math
import sys
from importlib import import_module
from typing import Any

from ecnas.cli._output import add_force_flag, add_json_flag, emit
from ecnas.errors import InputError


def register(subparsers: Any) -> None:
    """Add ``ecnas train`` to ``subparsers``."""
    p = subparsers.add_parser(
        "train",
        help="train one architecture with the meters and write its energy-table rows",
        description=(
            "Train a NAS-Bench-101 cell with NAS-Bench-101's recipe (TF-style RMSProp, cosine "
            "learning rate by step over the budget, L2 1e-4, crop+flip) under the meters, "
            "evaluate at the checkpoints and write one row per checkpoint. Defaults to the "
            "embedded dataset (no download) and a small network (stem 16, 3 stacks × 1 cell, "
            "batch 64); --dataset cifar10 defaults to the full NAS-Bench-101 network."),
    )
    p.add_argument("--matrix", required=True, help="row-major 0/1 adjacency string, e.g. 0100")
    p.add_argument("--ops", required=True,
                   help="comma-separated ops, input first and output last, e.g. input,output")
    p.add_argument("--epochs", type=int, required=True,
                   help="budget in epochs (the schedule's length; NAS-Bench-101: 4, 12, 36, 108)")
    p.add_argument("--dataset", choices=("embedded", "cifar10"), default="embedded",
                   help="embedded (packaged digits, default) or cifar10 (needs --data-dir)")
    p.add_argument("--data-dir", help="folder with CIFAR-10's python-version batch files")
    p.add_argument("--stem-channels", type=int, help="stem width (default 16 embedded, 128 cifar10)")
    p.add_argument("--stacks", type=int, help="stacks (default 3)")
    p.add_argument("--cells-per-stack", type=int,
                   help="cells per stack (default 1 embedded, 3 cifar10)")
    p.add_argument("--batch-size", type=int, help="batch size (default 64 embedded, 256 cifar10)")
    p.add_argument("--learning-rate", type=float, help="peak learning rate (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0); each repeat derives "
                   "its own seed from (seed, repeat)")
    p.add_argument("--repeat", type=int, default=1, help="1-based index of the first repeat (default 1)")
    p.add_argument("--repeats", type=int, default=1,
                   help="number of repeats to run, indices repeat … repeat+repeats−1 (default 1)")
    p.add_argument("--checkpoints", default="0,0.5,1",
                   help="fractions of the budget to evaluate at (default 0,0.5,1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms (same seed → same numbers; slower on GPUs)")
    p.add_argument("--max-train-images", type=int, help="train on the first N training images")
    p.add_argument("--max-eval-images", type=int, help="evaluate on at most N images per split")
    p.add_argument("--carbon-intensity", type=float, metavar="G_PER_KWH",
                   help="the grid's carbon intensity (gCO2/kWh): fills the CO2 columns "
                        "(left empty without it)")
    p.add_argument("--warmup-steps", type=int, default=0,
                   help="unmetered training steps before each repeat, at its own shapes, on a "
                        "copy of the network (default 0); their cost goes in the metadata")
    p.add_argument("--out", required=True, help="table to write: .parquet or .csv")
    add_force_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_json_flag(p)
    p.set_defaults(func=run_train)


def _fmt_j(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.1f} J"


def _progress_line(ev: Any) -> str:
    kind = "estimated" if ev.estimated else "measured"
    return (f"repeat {ev.repeat} epoch {ev.epoch}/{ev.budget_epochs}  loss {ev.loss:.4f}  "
            f"train acc {ev.train_accuracy:.3f}  energy {_fmt_j(ev.energy_j)} ({kind}: "
            f"{', '.join(ev.meters)})  {ev.wall_time_s:.1f} s  {ev.images_per_s:,.0f} img/s")


def _text(result: dict[str, Any]) -> str:
    lines = [f"wrote {len(result['rows'])} rows to {result['table']}"]
    for r in result["rows"]:
        lines.append(
            f"  repeat {r['repeat']} epoch {r['epoch']:g}: val acc {r['validation_accuracy']:.3f}"
            f"  test acc {r['test_accuracy']:.3f}  energy {_fmt_j(r['energy_j'])}"
            f"{' (estimated)' if r['estimated'] else ' (measured)'}"
            f"  train {r['training_time_s']:.1f} s / wall {r['wall_time_s']:.1f} s")
    first = result["rows"][0] if result["rows"] else None
    if first:
        lines.append(f"arch_hash {first['arch_hash']}  device {first['device']}  "
                     f"trainable_params {first['trainable_params']:,}")
    for w in result["warmup"]:
        lines.append(f"warm-up of repeat {w['repeat']}: {w['steps']} steps, {w['time_s']:.2f} s, "
                     f"{_fmt_j(w['energy_j'])} ({'estimated' if w['estimated'] else 'measured'}"
                     "; not in the rows)")
    for reason in result["estimated_because"]:
        lines.append(f"estimated because: {reason}")
    return "\n".join(lines)


def run_train(args: argparse.Namespace) -> int:
    """``ecnas train``: train one architecture under the meters (one or more repeats) and write
    its checkpoint rows to a table."""
    from ecnas.tables.io import check_table_target
    from ecnas.tracker.rows import check_table_path, write_rows
    from ecnas.trainer.train import TrainConfig, run_training

    out = check_table_path(args.out)
    check_table_target(out, force=args.force)  # fail before training, not after

    if args.repeats < 1:
        raise InputError(f"--repeats must be a positive integer, got {args.repeats}")
    max_repeats = import_module("ecnas.trainer.recipe").MAX_REPEATS
    if args.repeat + args.repeats - 1 > max_repeats:  # before the first run, not at run 101
        raise InputError(f"--repeat {args.repeat} --repeats {args.repeats}: repeats go up to "
                         f"{max_repeats}")
    base = dict(matrix=args.matrix, ops=args.ops, budget_epochs=args.epochs, seed=args.seed,
                dataset=args.dataset, data_dir=args.data_dir, stem_channels=args.stem_channels,
                num_stacks=args.stacks, cells_per_stack=args.cells_per_stack,
                batch_size=args.batch_size, learning_rate=args.learning_rate,
                checkpoints=args.checkpoints, device=args.device,
                deterministic=args.deterministic, max_train_images=args.max_train_images,
                max_eval_images=args.max_eval_images, warmup_steps=args.warmup_steps,
                carbon_intensity_g_per_kwh=args.carbon_intensity)
    configs = [TrainConfig(**base, repeat=args.repeat + i) for i in range(args.repeats)]
    if args.dataset == "cifar10":  # a missing dataset fails here, before the meters start
        from ecnas.trainer.data.cifar10 import HOW_TO_GET, find_batch_dir

        if args.data_dir is None:
            raise InputError(f"--dataset cifar10 needs --data-dir: {HOW_TO_GET}")
        find_batch_dir(args.data_dir)

    def progress(ev: Any) -> None:
        if not args.quiet:
            print(_progress_line(ev), file=sys.stderr, flush=True)

    rows: list[dict] = []
    warmups: list[dict] = []
    monitor = import_module("ecnas.monitor").default_monitor()  # the process's one Monitor
    reasons = [f"{s.meter}: {s.reason}" for s in monitor.statuses()
               if s.status.value == "estimated"]
    meters = [s.meter for s in monitor.statuses()]
    for config in configs:
        run = run_training(config, monitor=monitor, progress=progress)
        rows += run.rows
        if run.warmup is not None:
            warmups.append({"repeat": config.repeat, **run.warmup.to_dict()})
    metadata = {"producer": "ecnas train", "configs": [c.to_dict() for c in configs],
                "meters": meters, "estimated_because": reasons,
                "energy_note": "energy_j is cumulative over wall time, evaluations included"}
    if warmups:  # provenance of the runs, never part of their rows
        metadata["warmup"] = warmups
    write_rows(rows, out, metadata)
    result = {"table": str(out), "rows": rows, "config": configs[0].to_dict(),
              "repeats": len(configs), "meters": meters, "estimated_because": reasons,
              "warmup": warmups}
    emit(args.json, result, _text)
    return 0
