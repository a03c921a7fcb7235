"""``ecnas search`` and ``ecnas pareto``: multi-objective search over a benchmark."""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from ecnas.cli._options import add_epochs
from ecnas.cli._output import add_force_flag, add_json_flag, emit
from ecnas.errors import InputError
from ecnas.outputs import check_target


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ecnas search`` and ``ecnas pareto`` to ``sub``."""
    s = sub.add_parser("search", help="multi-objective search over a benchmark",
                       description="Run a search algorithm for several seeds under an "
                                   "evaluation budget; report hypervolume per seed and mean ± sd.")
    s.add_argument("bench", type=Path, help="bundle folder or EC-NAS TFRecord file")
    s.add_argument("--algorithm", default="semoa",
                   choices=("random", "semoa", "nsga2", "sh_emoa"),
                   help="random search, SEMOA, NSGA-II or SH-EMOA (default semoa)")
    s.add_argument("--evaluations", type=int, default=100, help="queries per search (default 100)")
    s.add_argument("--seeds", type=int, default=5, help="seeds 0..K-1 (default 5)")
    add_epochs(s, help="training budget in epochs (default: the largest budget)")
    s.add_argument("--objectives", default="energy,validation_accuracy",
                   help="2 or 3 of energy, validation_accuracy, training_time, parameters")
    add_json_flag(s)
    s.set_defaults(func=_search)

    p = sub.add_parser("pareto", help="the Pareto front (energy vs accuracy), knee and plot",
                       description="The architectures no other beats on both energy and "
                                   "validation accuracy at one budget, the knee (the least "
                                   "energy within --max-accuracy-loss points of the best "
                                   "accuracy), and optionally a plot of the front.")
    p.add_argument("bench", type=Path, help="bundle folder or EC-NAS TFRecord file")
    add_epochs(p, help="training budget in epochs (default: the largest budget)")
    p.add_argument("--plot", type=Path, help="write the front to this .png, .pdf or .svg")
    p.add_argument("--max-accuracy-loss", type=float, default=1.0,
                   help="accuracy points one may give up (default 1)")
    add_force_flag(p, "--plot")
    add_json_flag(p)
    p.set_defaults(func=_pareto)


def _load(path: Path) -> object:
    from ecnas.benchmark import Benchmark

    return Benchmark.load(path)


def _search(args: argparse.Namespace) -> int:
    from ecnas.benchmark.moo import run_search

    if args.seeds < 1:
        raise InputError(f"--seeds {args.seeds}: need at least 1")
    bench = _load(args.bench)
    objs = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    results = [run_search(bench, args.algorithm, args.evaluations, seed, objectives_=objs,
                          budget=args.budget) for seed in range(args.seeds)]
    hv = [r.hypervolume for r in results]
    out = {"algorithm": args.algorithm, "budget": results[0].budget, "objectives": list(objs),
           "evaluations": args.evaluations, "reference": list(results[0].reference),
           "hypervolume": hv, "mean": statistics.fmean(hv),
           "sd": statistics.stdev(hv) if len(hv) > 1 else 0.0,
           "runs": [r.to_dict() for r in results]}

    def text(d: dict) -> str:
        lines = [f"{d['algorithm']}: {d['evaluations']} evaluations at {d['budget']} epochs, "
                 f"objectives {', '.join(d['objectives'])} (normalized; reference 1.1)"]
        lines += [f"  seed {r['seed']}: hypervolume {r['hypervolume']:.4f} "
                  f"(initial population {r['initial_hypervolume']:.4f})" for r in d["runs"]]
        lines.append(f"  mean ± sd: {d['mean']:.4f} ± {d['sd']:.4f}")
        return "\n".join(lines)

    emit(args.json, out, text)
    return 0


def _pareto(args: argparse.Namespace) -> int:
    from ecnas.benchmark.moo import energy_saved_at, pareto_front, plot_front
    from ecnas.benchmark.moo.describe import knee_text, saving_text
    from ecnas.benchmark.moo.plot import plot_format

    loss = args.max_accuracy_loss
    if not (math.isfinite(loss) and loss >= 0):
        raise InputError(f"--max-accuracy-loss {loss}: must be a finite number of accuracy "
                         "points >= 0")
    if args.plot:
        plot_format(args.plot)
        check_target(args.plot, force=args.force, inputs=[args.bench], option="--plot")
    bench = _load(args.bench)
    res = (plot_front(bench, args.plot, budget=args.budget) if args.plot
           else pareto_front(bench, budget=args.budget))
    fp = res.front_points()
    saved = energy_saved_at(fp, args.max_accuracy_loss)
    out = {"title": res.title, "budget": res.budget, "architectures": int(len(res.points)),
           "front": [{"validation_accuracy_points": float(a), "energy_j": float(e)} for a, e in fp],
           "knee": res.knee, "max_accuracy_loss": args.max_accuracy_loss,
           "energy_saved_fraction": saved, "plot": str(args.plot) if args.plot else None,
           "origin": res.origin.to_dict() if res.origin else None}

    def text(d: dict) -> str:
        lines = [f"{d['title']}: {d['architectures']} architectures, {len(d['front'])} on the "
                 "front",
                 knee_text(d["knee"]),
                 saving_text(d["energy_saved_fraction"], d["max_accuracy_loss"])]
        if res.origin is not None:
            lines.append(res.origin.text())
        if d["plot"]:
            lines.append(f"plot: {d['plot']}")
        return "\n".join(lines)

    emit(args.json, out, text)
    return 0
