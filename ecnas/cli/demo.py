"""``ecnas demo``: the whole pipeline on the embedded default (no download, CPU only)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ecnas.cli._output import add_json_flag, emit
from ecnas.demo.ledger import check_replaceable
from ecnas.errors import InputError
from ecnas.outputs import check_target, owned_by_caller


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ecnas demo`` to ``sub``."""
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the embedded default, end to end",
        description=(
            "Sample cells, measure short runs through a campaign, check the table, extrapolate "
            "to full budgets and predict untrained cells, export the bundle and the EC-NAS "
            "TFRecord, run a short multi-objective search and write the Pareto plot and a "
            "summary. A second run with the same --out reuses the measured runs."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("ecnas-demo"),
                   help="output folder (default: ./ecnas-demo)")
    p.add_argument("--architectures", type=int, default=None,
                   help="cells to measure (default 12; 5 with --quick)")
    p.add_argument("--predict", type=int, default=None,
                   help="untrained cells to predict with the surrogate (default 200; 20 with "
                        "--quick)")
    p.add_argument("--quick", action="store_true",
                   help="every step on tiny networks and 128 training images (stem 4, one "
                        "stack, one cell also at 8 epochs, 2 search seeds): the pipeline in "
                        "about a minute; its numbers only show that it works")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled cells (default 0)")
    add_json_flag(p)
    p.set_defaults(func=_run)


#: what --quick changes in DemoConfig (the docs test runs `ecnas demo` this way)
QUICK: dict[str, Any] = {"quick": True, "stem_channels": 4, "num_stacks": 1, "max_train_images": 128,
         "full_budget_runs": 1, "search_seeds": 2}


def _run(args: argparse.Namespace) -> int:
    from ecnas.demo.config import DemoConfig
    from ecnas.demo.pipeline import run_demo

    architectures = args.architectures if args.architectures is not None else (
        5 if args.quick else 12)
    predict = args.predict if args.predict is not None else (20 if args.quick else 200)
    if architectures < 4:
        raise InputError(f"--architectures {architectures}: need at least 4 to fit a model")
    if predict < 0 or args.workers < 1:
        raise InputError("--predict must be ≥ 0 and --workers ≥ 1")
    _check_out(args.out)
    quick = dict(QUICK) if args.quick else {}
    config = DemoConfig(out_dir=args.out, architectures=architectures,
                        predicted_architectures=predict, workers=args.workers,
                        seed=args.seed, **quick)
    result = run_demo(config)
    emit(args.json, result.to_dict(), lambda d: _text(result))
    return 0 if result.check_ok else 1


def _check_out(out: Path) -> None:
    """The demo's folder, before any work: a new folder, an empty one, or a previous demo's
    (whose runs are reused and whose outputs, unchanged since, are replaced); never '.', a
    foreign folder, or a file the demo did not write (demo/ledger.py)."""
    if not out.exists():
        check_target(out, folder=True)
        return
    if out.resolve() == Path.cwd().resolve() or not out.is_dir():
        raise InputError(f"--out {out}: name a folder for the demo's files, not the current "
                         "folder or a file")
    check_replaceable(out)
    # the demo's ledger (check_replaceable) has said which files are the demo's own
    check_target(out / "summary.md", force=True, option="--out", owner=owned_by_caller)


def _text(result: object) -> str:
    from ecnas.demo.summary import render_markdown

    return render_markdown(result)  # type: ignore[arg-type]
