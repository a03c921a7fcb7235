"""``ecnas surrogate fit | predict | evaluate | transfer``: a thin layer over ``ecnas.surrogate``.

TABLE is an energy table (Parquet or CSV) or an EC-NAS results tree / TFRecord (imported on
the fly). Model files are data (npz + JSON header), never pickles.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from importlib import import_module
from pathlib import Path
from typing import Any

# registering stays light (``ecnas --help`` imports no numpy or pandas): the surrogate room
# through its lazy facade and import_module, loaded when a command runs
import ecnas.surrogate as surrogate_api
from ecnas.cli._options import add_epochs
from ecnas.cli._output import add_force_flag, add_json_flag, emit
from ecnas.errors import InputError
from ecnas.outputs import check_target


def register(subparsers: Any) -> None:
    """Add ``ecnas surrogate`` (fit, predict, evaluate, transfer) to ``subparsers``."""
    p = subparsers.add_parser(
        "surrogate", help="extrapolate short runs and predict untrained cells (fit/predict/evaluate/transfer)",
        description="Surrogates of training energy and time: extrapolation from short "
                    "checkpoints, an architecture-only model, conformal intervals.")
    sub = p.add_subparsers(dest="surrogate_command", metavar="SUBCOMMAND",
                           parser_class=type(p))
    fit = sub.add_parser("fit", help="fit both surrogates on TABLE and write MODEL (npz, no pickle)",
                         description="Fit the extrapolator (short checkpoints → full budget) "
                                     "and the architecture surrogate (cell → energy, time) on "
                                     "TABLE, and write both to MODEL (npz + JSON, no pickle).")
    fit.add_argument("table", metavar="TABLE", help="energy table (.parquet/.csv) or EC-NAS data")
    fit.add_argument("--out", required=True, metavar="MODEL", help="model file to write (.npz)")
    add_force_flag(fit)
    add_epochs(fit,
               help="budget (epochs) the architecture surrogate learns "
                          "(default: the one with most runs measured to it)")
    fit.add_argument("--kind", choices=("auto", "mlp", "linear"), default="auto",
                     help="architecture learner; auto keeps the better of ridge and MLP on "
                          "held-out cells (default auto)")
    fit.add_argument("--level", type=float, default=0.9, help="interval coverage (default 0.9)")
    fit.add_argument("--seed", type=int, default=0, help="seed of splits and MLP init (default 0)")
    _network_flags(fit)
    add_json_flag(fit)
    fit.set_defaults(func=run_fit)

    pr = sub.add_parser("predict", help="energy/time at --epochs for every cell and repeat in TABLE",
                        description="Predict energy (J) and training time at --epochs for every "
                                    "cell and repeat of TABLE, with intervals; measured "
                                    "checkpoints are extrapolated, cells without any are "
                                    "predicted from the architecture.")
    pr.add_argument("model", metavar="MODEL", help="model file written by 'ecnas surrogate fit'")
    pr.add_argument("table", metavar="TABLE",
                    help="table with short checkpoints, or just 'matrix' and 'ops' columns")
    add_epochs(pr, type=float, required=True, help="target budget in epochs")
    pr.add_argument("--out", required=True, metavar="PRED", help="prediction table (.parquet/.csv)")
    add_force_flag(pr)
    add_json_flag(pr)
    pr.set_defaults(func=run_predict)

    ev = sub.add_parser("evaluate", help="held-out accuracy of both surrogates and the baselines",
                        description="Score both surrogates on held-out cells of TABLE against "
                                    "simple baselines (error, rank correlation, interval "
                                    "coverage).")
    ev.add_argument("table", metavar="TABLE", help="energy table (.parquet/.csv) or EC-NAS data")
    ev.add_argument("--train-fraction", type=float, default=0.7,
                    help="architectures to fit on; 10%% calibrate, the rest test (default 0.7)")
    ev.add_argument("--full-budget-fraction", type=float, default=0.2,
                    help="architectures whose full-budget runs the extrapolator sees (default 0.2)")
    ev.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    ev.add_argument("--level", type=float, default=0.9, help="interval coverage (default 0.9)")
    ev.add_argument("--kind", choices=("auto", "mlp", "linear"), default="auto",
                    help="architecture learner (default auto)")
    _network_flags(ev)
    add_json_flag(ev)
    ev.set_defaults(func=run_evaluate)

    tr = sub.add_parser("transfer", help="score cross-device transfer A → B from a few of B's "
                                         "cells, against two baselines",
                        description="Score transferring device A's architecture surrogate to "
                                    "device B from k of B's cells, for each k in --sizes, "
                                    "against one scale factor and a surrogate of B's cells "
                                    "alone.")
    tr.add_argument("source", metavar="TABLE_A", help="device A's table (or EC-NAS data)")
    tr.add_argument("target_table", metavar="TABLE_B", nargs="?", default=None,
                    help="device B's table; omitted with --synthetic")
    tr.add_argument("--synthetic", action="store_true",
                    help="derive device B from TABLE_A (ecnas.surrogate.synthetic); scores "
                         "are labelled synthetic")
    tr.add_argument("--sizes", default="10,20",
                    help="numbers of B's cells to fit on, comma-separated (default 10,20)")
    tr.add_argument("--draws", type=int, default=5, help="seeded draws per size (default 5)")
    tr.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    add_epochs(tr, help="budget in epochs (default: B's most measured)")
    tr.add_argument("--target", choices=("energy_j", "training_time_s"), default="energy_j",
                    help="the quantity transferred (default energy_j)")
    tr.add_argument("--level", type=float, default=0.9, help="interval coverage (default 0.9)")
    tr.add_argument("--kind", choices=("auto", "mlp", "linear"), default="auto",
                    help="device A's architecture learner (default auto)")
    add_json_flag(tr)
    tr.set_defaults(func=run_transfer)
    p.set_defaults(func=lambda args: _usage(p))


def _network_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network the runs trained (default: what the table's metadata "
                             "records, else NAS-Bench-101's)")
    g.add_argument("--stem-channels", type=int, default=None,
                   help="stem width (default: the table's, else 128)")
    g.add_argument("--stacks", type=int, default=None,
                   help="number of stacks (default: the table's, else 3)")
    g.add_argument("--cells-per-stack", type=int, default=None,
                   help="cells per stack (default: the table's, else 3)")
    g.add_argument("--image-size", type=int, default=32, help="image side (default 32)")


def _shape(args: argparse.Namespace, table: Any) -> tuple[Any, str]:
    """The network the table's runs trained: the flags, else its metadata, else NAS-Bench-101's;
    and a note saying which."""
    from ecnas.surrogate.network_meta import network_shape

    return network_shape(table.attrs.get("ecnas", {}) if hasattr(table, "attrs") else {},
                         stem_channels=args.stem_channels, num_stacks=args.stacks,
                         cells_per_stack=args.cells_per_stack)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _progress(msg: str) -> None:
    print(f"ecnas surrogate: {msg}", file=sys.stderr, flush=True)


def load_table(path: str, *, contract: bool = True) -> Any:
    """A table file, or EC-NAS data (results tree, TFRecord) imported on the fly. Time
    columns a table lacks (energy-only data such as EC-NAS's surrogate set) are read as
    unknown (NaN): the surrogates learn each target from the rows that hold it."""
    from ecnas.interop import import_ecnas
    from ecnas.tables import check_schema, read_table

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir() or p.suffix.lower() in (".tfrecord", ".tfrecords"):
        _progress(f"importing EC-NAS data from {p}")
        return import_ecnas(p)
    table = read_table(p, validate_schema=False)
    for col in ("training_time_s", "wall_time_s"):
        if col not in table.columns:
            table[col] = float("nan")
    return check_schema(table) if contract else table


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise InputError(f"--level must be in (0, 1), got {level}")


def _check_out(args: argparse.Namespace, *inputs: str, table: bool = False) -> None:
    # say so before minutes of fitting, not after (see ecnas.outputs)
    from ecnas.tables.io import check_table_target

    if table:
        check_table_target(args.out, force=args.force, inputs=inputs)
    else:
        check_target(args.out, force=args.force, inputs=inputs)


def run_fit(args: argparse.Namespace) -> int:
    """``ecnas surrogate fit``: fit the extrapolator and the architecture surrogate on a table
    and write the model file."""
    from ecnas.surrogate import ArchitectureSurrogate, SurrogateModel

    _check_level(args.level)
    _check_out(args, args.table)
    table = load_table(args.table)
    if len(table) == 0:  # before any note: bad input gets its one line only
        raise InputError(f"{args.table}: the table has no rows: nothing to fit (no model written)")
    shape, shape_note = _shape(args, table)
    _progress(shape_note)
    arch = ArchitectureSurrogate(kind=args.kind, level=args.level, seed=args.seed,
                                 shape=shape, image_size=args.image_size)
    _progress(f"fitting on {len(table)} rows (extrapolator, then architecture surrogate)")
    t0 = time.perf_counter()
    model = SurrogateModel(architecture=arch).fit(table, args.budget, kind=args.kind, level=args.level, seed=args.seed)
    out = model.save(args.out)
    ext, arch = model.extrapolator, model.architecture
    result = {
        "model": str(out), "seconds": round(time.perf_counter() - t0, 2),
        "extrapolator": {"method": ext.method, "full_budget_runs": ext.n_full_runs,
                         "interval_log_halfwidth": ext.quantile,
                         "selection": _selection(ext)} if ext else None,
        "architecture": None if arch is None else {
            "budget": arch.budget, "device": arch.device, "architectures": arch.n_archs,
            "learners": {k: type(v).__name__ for k, v in arch.models.items()},
            "selection_mean_abs_log_error": arch.selection,
            "interval_log_halfwidth": arch.quantile},
        "network": {"stem_channels": shape.stem_channels, "stacks": shape.num_stacks,
                    "cells_per_stack": shape.cells_per_stack, "note": shape_note},
        "level": args.level, "notes": model.info.get("notes", []),
    }
    emit(args.json, result, _fit_text)
    return 0


def _selection(ext: Any) -> dict[str, Any]:
    """Per target: the model grouped CV chose (or the blend's weights) and each candidate's
    CV MAPE, with what the intervals were calibrated on."""
    return {name: {"chosen": t.chosen, "weights": t.weights, "cv_mape_pct": t.cv_mape_pct,
                   "cells": t.n_cells, "cut_points": t.n_examples, "folds": t.n_folds,
                   "interval": "CV+ (grouped by cell)" if t.residuals.size else "unbounded"}
            for name, t in ext.targets.items()}


def _fit_text(r: dict[str, Any]) -> str:
    lines = [f"wrote {r['model']} in {r['seconds']} s", r["network"]["note"]]
    if r["extrapolator"]:
        e = r["extrapolator"]
        lines.append(f"extrapolator: {e['method']} ({e['full_budget_runs']} runs measured to full budget)")
        sel = e["selection"].get("energy_j") or {}
        if len(sel.get("cv_mape_pct") or {}) > 1:
            ranked = sorted(sel["cv_mape_pct"].items(), key=lambda kv: kv[1])
            lines.append(f"  energy: {sel['chosen']} by grouped CV over {sel['cells']} cells; "
                         "CV MAPE " + ", ".join(f"{c} {v:.2f}%" for c, v in ranked))
    if r["architecture"]:
        a = r["architecture"]
        lines.append(f"architecture surrogate: {a['architectures']} cells at {a['budget']} epochs on "
                     f"{a['device']}, learners {a['learners']}")
    lines += [f"note: {n}" for n in r["notes"]]
    return "\n".join(lines)


def run_predict(args: argparse.Namespace) -> int:
    """``ecnas surrogate predict``: energy and time at ``--budget`` for every cell and repeat of
    a table, written as a prediction table."""
    from ecnas.surrogate import SurrogateModel
    from ecnas.tables import write_table
    from ecnas.tables.metadata import get_metadata, provenance_entry

    if not (math.isfinite(args.budget) and args.budget > 0):
        raise InputError(f"--epochs must be a positive number of epochs, got {args.budget}")
    _check_out(args, args.model, args.table, table=True)
    model = SurrogateModel.load(args.model)
    table = load_table(args.table, contract=False)
    if not {"matrix", "ops"} <= set(table.columns):
        raise InputError(f"{args.table}: needs at least the columns 'matrix' and 'ops'")
    if "epoch" in table.columns:
        from ecnas.tables import check_schema

        table = check_schema(table)  # a table with checkpoints must follow the contract
    prediction = model.predict_with_notes(table, args.budget)
    pred, notes = prediction.table, list(prediction.notes)
    meta = get_metadata(table)
    meta.pop("provenance", None)
    meta["surrogate"] = {
        "model": str(args.model), "budget_epochs": args.budget,
        "energy_basis": "joules, PUE excluded",
        "interval": ("energy_j_low/energy_j_high: relative; CV+ over cells for extrapolated "
                     "rows, split-conformal for surrogate rows"),
        "notes": notes,
    }
    meta["provenance"] = [provenance_entry("ecnas surrogate predict", str(args.table))]
    out = write_table(pred, args.out, metadata=meta)
    counts = pred["source"].value_counts().to_dict()
    result = {"out": str(out), "rows": int(len(pred)), "budget_epochs": args.budget,
              "sources": {str(k): int(v) for k, v in counts.items()},
              "energy_j_total": float(pred["energy_j"].sum()),
              "notes": notes}
    emit(args.json, result, lambda r: (
        f"wrote {r['rows']} rows to {r['out']} at {r['budget_epochs']:g} epochs: "
        + ", ".join(f"{v} {k}" for k, v in r["sources"].items())))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``ecnas surrogate evaluate``: held-out accuracy of both surrogates on one table, against
    baselines."""
    from ecnas.surrogate import evaluate

    _check_level(args.level)
    table = load_table(args.table)
    _progress(f"evaluating on {len(table)} rows (seed {args.seed})")
    report = evaluate(table, args.train_fraction, args.seed, full_budget_fraction=args.full_budget_fraction,
                      level=args.level, kind=args.kind, shape=_shape(args, table)[0],
                      image_size=args.image_size)
    emit(args.json, report.to_dict(), _evaluate_text)
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    """``ecnas surrogate transfer``: score transferring device A's architecture surrogate to
    device B from a few of B's cells, against two baselines, for each number of cells in
    ``--sizes``."""
    _check_level(args.level)
    if (args.target_table is None) == (not args.synthetic):
        raise InputError("give TABLE_B, or --synthetic to derive device B from TABLE_A")
    try:
        sizes = tuple(int(x) for x in args.sizes.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--sizes {args.sizes!r}: expected integers such as 10,20") from None
    if not sizes:
        raise InputError("--sizes: give at least one size, such as 10,20")
    table_a = load_table(args.source)
    synthetic = import_module("ecnas.surrogate.synthetic")
    table_b = synthetic.derive_device(table_a) if args.synthetic else load_table(args.target_table)
    # refuse implausible tables before minutes of fitting (evaluate_transfer screens again)
    transfer_eval = import_module("ecnas.surrogate.transfer_eval")
    transfer_eval.screen(table_a, "device A's table")
    transfer_eval.screen(table_b, "device B's table")
    _progress(f"fitting device A's architecture surrogate on {len(table_a)} rows")
    source = surrogate_api.ArchitectureSurrogate(kind=args.kind, level=args.level,
                                                 seed=args.seed).fit(table_a, args.budget)
    _progress(f"scoring sizes {', '.join(map(str, sizes))}, {args.draws} draw(s) each")
    ev = transfer_eval.evaluate_transfer(
        table_a, table_b, sizes=sizes, draws=args.draws, seed=args.seed, budget=source.budget,
        level=args.level, target=args.target, source=source, synthetic=args.synthetic)
    emit(args.json, ev.to_dict(), lambda _d: transfer_eval.summary_text(ev))
    return 0


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        width = spec.split(".")[0]
        return "—".rjust(int(width) if width.isdigit() else 0)
    return format(v, spec)


def _evaluate_text(d: dict[str, Any]) -> str:
    lines = [f"{d['n_architectures']} architectures at {d['budget']} epochs: {d['n_train']} train, "
             f"{d['n_calibration']} calibration, {d['n_test']} test (seed {d['seed']}); "
             f"extrapolator sees {d['n_full_budget']} full-budget, test runs cut at epoch "
             f"{_fmt(d['short_epoch'], 'g')}",
             f"{'model':24} {'target':16} {'MAPE %':>7} {'MAE':>10} {'MAE Wh':>7} {'Wh·PUE':>7} "
             f"{'R²':>7} {'τ':>6} {'cover %':>8}"]
    for s in d["scores"]:
        lines.append(f"{s['model']:24} {s['target']:16} {_fmt(s['mape_pct'], '7.2f')} "
                     f"{_fmt(s['mae'], '10.1f')} {_fmt(s['mae_wh'], '7.3f')} "
                     f"{_fmt(s['mae_wh_pue'], '7.3f')} {_fmt(s['r2'], '7.4f')} "
                     f"{_fmt(s['kendall_tau'], '6.3f')} {_fmt(s['coverage_pct'], '8.1f')}")
    lines.append(d["energy_basis"])
    lines += [f"note: {n}" for n in d["notes"]]
    return "\n".join(lines)
