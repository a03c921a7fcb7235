"""``ecnas search`` and ``ecnas pareto``: multi-objective search over a benchmark."""

from __future__ import annotations

import argparse
import math
import statistics
from importlib import import_module
from pathlib import Path
from typing import Any

from ecnas.cli._options import add_epochs
from ecnas.cli._output import add_force_flag, add_json_flag, emit
from ecnas.errors import InputError
from ecnas.outputs import check_target

_MOO = "ecnas.benchmark.moo"
_PROGRESS_PLOT = "ecnas.benchmark.moo.progress_plot"
_API = "ecnas.benchmark.api"
_PANDAS = "pandas"
_ALGORITHMS = ("random", "semoa", "nsga2", "sh_emoa", "tpe", "optuna_nsga2")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ecnas search`` and ``ecnas pareto`` to ``sub``."""
    s = sub.add_parser("search", help="multi-objective search over a benchmark",
                       description="Run search algorithms for several seeds under an "
                                   "evaluation budget (each evaluation a distinct architecture "
                                   "at its training budget); report the fraction of the table's "
                                   "true front reached, mean ± sd over seeds at checkpoints.")
    s.add_argument("bench", type=Path, help="bundle folder or EC-NAS TFRecord file")
    s.add_argument("--algorithm", default="semoa",
                   help=f"one or more (comma-separated) of {', '.join(_ALGORITHMS)}; tpe and "
                        "optuna_nsga2 need the extra ecnas[search] (default semoa)")
    s.add_argument("--evaluations", type=int, default=100,
                   help="evaluations per search (default 100)")
    s.add_argument("--seeds", type=int, default=5, help="seeds 0..K-1 (default 5)")
    add_epochs(s, help="training budget in epochs (default: the largest budget)")
    s.add_argument("--objectives", default="energy,validation_accuracy",
                   help="2 or 3 of energy, validation_accuracy, training_time, parameters")
    s.add_argument("--device", default=None, help="device of a multi-device bundle")
    s.add_argument("--fidelities", default=None, metavar="E,E,…",
                   help="give the benchmark these training budgets (e.g. 4,12,36,108): "
                        "measured ones kept, the others scaled from them and flagged")
    s.add_argument("--max-training-time", type=float, default=None, metavar="S",
                   help="stop each search once its charged training time would pass S seconds")
    s.add_argument("--out", type=Path, default=None,
                   help="write every run's trajectory (one row per evaluation) to this .parquet")
    s.add_argument("--plot", type=Path, default=None,
                   help="write fraction-vs-evaluations (mean and band over seeds) to this "
                        ".png/.pdf/.svg")
    s.add_argument("--attainment", type=Path, default=None,
                   help="write empirical attainment surfaces (25/50/75 %%) to this .png/.pdf/.svg")
    s.add_argument("--force", action="store_true", help="replace existing --out/--plot files")
    add_json_flag(s)
    s.set_defaults(func=_search)

    p = sub.add_parser("pareto", help="the Pareto front (energy vs accuracy), knee and plot",
                       description="The non-dominated architectures (energy vs validation "
                                   "accuracy), the knee, the energy saved within an accuracy "
                                   "loss, and the true front's hypervolume in the search "
                                   "convention.")
    p.add_argument("bench", type=Path, help="bundle folder or EC-NAS TFRecord file")
    add_epochs(p, help="training budget in epochs (default: the largest budget)")
    p.add_argument("--device", default=None, help="device of a multi-device bundle")
    p.add_argument("--plot", type=Path, help="write the front to this .png, .pdf or .svg")
    p.add_argument("--max-accuracy-loss", type=float, default=1.0,
                   help="accuracy points one may give up (default 1)")
    add_force_flag(p, "--plot")
    add_json_flag(p)
    p.set_defaults(func=_pareto)


def _load(path: Path, device: str | None = None) -> Any:
    return import_module(_API).Benchmark.load(path, device=device)


def _check_args(args: argparse.Namespace) -> tuple[list[str], tuple[int, ...] | None]:
    algs = [a.strip() for a in args.algorithm.split(",") if a.strip()]
    bad = [a for a in algs if a not in _ALGORITHMS]
    if not algs or bad:
        raise InputError(f"--algorithm {args.algorithm}: choose from {', '.join(_ALGORITHMS)}")
    if args.seeds < 1:
        raise InputError(f"--seeds {args.seeds}: need at least 1")
    if args.evaluations < 2:
        raise InputError(f"--evaluations {args.evaluations}: need at least 2")
    if args.max_training_time is not None and not args.max_training_time > 0:
        raise InputError(f"--max-training-time {args.max_training_time}: need seconds > 0")
    fid = None
    if args.fidelities:
        try:
            fid = tuple(int(x) for x in args.fidelities.split(","))
        except ValueError:
            raise InputError(f"--fidelities {args.fidelities}: give epochs like 4,12,36,108") \
                from None
    for opt, path in (("--out", args.out), ("--plot", args.plot),
                      ("--attainment", args.attainment)):
        if path is not None:
            if opt == "--out" and path.suffix != ".parquet":
                raise InputError(f"--out {path}: trajectories are written as .parquet")
            check_target(path, force=args.force, inputs=[args.bench], option=opt)
    return algs, fid


def _search(args: argparse.Namespace) -> int:
    moo = import_module(_MOO)
    algs, fid = _check_args(args)
    bench = _load(args.bench, args.device)
    if fid is not None:
        bench = moo.with_fidelities(bench, fid)
    objs = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    runs: dict[str, list[Any]] = {}
    for alg in algs:
        try:
            runs[alg] = [moo.run_search(bench, alg, args.evaluations, seed, objectives=objs,
                                        budget=args.budget,
                                        max_training_time_s=args.max_training_time)
                         for seed in range(args.seeds)]
        except InputError as e:  # name the CLI's flags, not the Python parameters
            raise InputError(str(e).replace("algorithm=", "--algorithm ")
                             .replace("objectives=", "--objectives ")
                             .replace("budget=", "--budget ")) from None
    origins = moo.fidelity_origins(bench)
    per = {alg: _summary(moo, rs, args.evaluations) for alg, rs in runs.items()}
    out: dict[str, Any] = dict(per[algs[0]]) if len(algs) == 1 else {}
    out.update({"device": bench.device, "budgets": {str(b): o for b, o in origins.items()},
                "objectives": list(objs), "algorithms": per})
    written = []
    if args.out is not None:
        written.append(_write_trajectories(runs, args.out))
    if args.plot is not None or args.attainment is not None:
        pp = import_module(_PROGRESS_PLOT)
        if args.plot is not None:
            written.append(str(pp.plot_progress(runs, args.plot)))
        if args.attainment is not None:
            written.append(str(pp.plot_attainment(bench, runs, args.attainment)))
    out["written"] = written

    def text(d: dict) -> str:
        lines = []
        b0 = next(iter(d["algorithms"].values()))["budget"]
        scaled = [b for b, o in d["budgets"].items() if o != "measured"]
        lines.append(f"device {d['device']}; budgets {', '.join(d['budgets'])} epochs"
                     + (f" ({', '.join(scaled)} scaled from measured budgets: ESTIMATED)"
                        if scaled else " (measured)") + f"; scored at {b0} epochs")
        for alg, a in d["algorithms"].items():
            lines.append(f"{alg}: {a['requested_evaluations']} evaluations × {len(a['runs'])} "
                         f"seeds, objectives {', '.join(a['objectives'])} (normalized; reference "
                         f"1.1); true front's hypervolume {a['table_hypervolume']:.4f}")
            lines += [f"  after {c['evaluations']:>5}: {c['mean_fraction']:.3f} ± {c['sd']:.3f} "
                      "of the true front" for c in a["checkpoints"]]
            lines.append(f"  final hypervolume {a['mean']:.4f} ± {a['sd']:.4f}; charged "
                         f"{a['mean_charged_training_time_s'] / 3600:.2f} h training, "
                         f"{a['mean_charged_energy_j'] / 3.6e6:.3f} kWh per search (mean)")
            stops = {r["stopped"] for r in a["runs"] if r["stopped"]}
            for why in stops:
                lines.append(f"  stopped early: {why} (evaluations done: "
                             f"{sorted({r['evaluations'] for r in a['runs']})})")
        lines += [f"wrote {w}" for w in d["written"]]
        return "\n".join(lines)

    emit(args.json, out, text)
    return 0


def _summary(moo: Any, rs: list[Any], requested: int) -> dict[str, Any]:
    hv = [r.hypervolume for r in rs]
    return {"algorithm": rs[0].algorithm, "budget": rs[0].budget,
            "objectives": list(rs[0].objectives), "requested_evaluations": requested,
            "evaluations": [r.evaluations for r in rs],
            "reference": list(rs[0].reference), "table_hypervolume": rs[0].table_hypervolume,
            "hypervolume": hv, "mean": statistics.fmean(hv),
            "sd": statistics.stdev(hv) if len(hv) > 1 else 0.0,
            "fraction": [r.fraction for r in rs],
            "checkpoints": [c.to_dict() for c in moo.checkpoints([r.trajectory for r in rs],
                                                                  requested)],
            "mean_charged_training_time_s": statistics.fmean(r.charged_time_s for r in rs),
            "mean_charged_energy_j": statistics.fmean(r.charged_energy_j for r in rs),
            "runs": [r.to_dict() for r in rs]}


def _write_trajectories(runs: dict[str, list[Any]], path: Path) -> str:
    pd = import_module(_PANDAS)
    atomic_path = import_module("ecnas.outputs").atomic_path
    rows = []
    for alg, rs in runs.items():
        for r in rs:
            for row in r.trajectory.rows():
                rows.append({"algorithm": alg, "seed": r.seed, **row})
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_parquet(tmp, index=False)
    return str(path)


def _pareto(args: argparse.Namespace) -> int:
    moo = import_module(_MOO)
    describe = import_module("ecnas.benchmark.moo.describe")
    plot = import_module("ecnas.benchmark.moo.plot")

    loss = args.max_accuracy_loss
    if not (math.isfinite(loss) and loss >= 0):
        raise InputError(f"--max-accuracy-loss {loss}: must be a finite number of accuracy "
                         "points >= 0")
    if args.plot:
        plot.plot_format(args.plot)
        check_target(args.plot, force=args.force, inputs=[args.bench], option="--plot")
    bench = _load(args.bench, args.device)
    res = (moo.plot_front(bench, args.plot, budget=args.budget) if args.plot
           else moo.pareto_front(bench, budget=args.budget))
    fp = res.front_points()
    saved = moo.energy_saved_at(fp, args.max_accuracy_loss)
    dom = moo.normalized(bench, res.budget)
    out = {"title": res.title, "budget": res.budget, "device": bench.device,
           "architectures": int(len(res.points)),
           "front": [{"validation_accuracy_points": float(a), "energy_j": float(e)} for a, e in fp],
           "table_hypervolume": moo.table_hypervolume(dom),
           "hypervolume_convention": "energy and 1 - validation accuracy, each min-max scaled "
                                     "over the table at the budget; reference (1.1, 1.1)",
           "knee": res.knee, "max_accuracy_loss": args.max_accuracy_loss,
           "energy_saved_fraction": saved, "plot": str(args.plot) if args.plot else None,
           "origin": res.origin.to_dict() if res.origin else None}

    def text(d: dict) -> str:
        lines = [f"{d['title']}: {d['architectures']} architectures, {len(d['front'])} on the "
                 f"front (hypervolume {d['table_hypervolume']:.4f}, normalized, reference 1.1)",
                 describe.knee_text(d["knee"]),
                 describe.saving_text(d["energy_saved_fraction"], d["max_accuracy_loss"])]
        if res.origin is not None:
            lines.append(res.origin.text())
        if d["plot"]:
            lines.append(f"plot: {d['plot']}")
        return "\n".join(lines)

    emit(args.json, out, text)
    return 0
