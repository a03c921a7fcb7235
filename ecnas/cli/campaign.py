"""``ecnas run`` (a measurement campaign into a results store) and ``ecnas table`` (export)."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from pathlib import Path
from typing import Any

from ecnas.cli._metrics import add_metrics_flags, start_exporter
from ecnas.cli._output import add_force_flag, add_json_flag, emit
from ecnas.errors import InputError


def register(sub: Any) -> None:
    """Add ``ecnas run`` and ``ecnas table`` to ``sub``."""
    p = sub.add_parser("run", help="run a measurement campaign into a results store",
                       description="Run every run of CAMPAIGN.toml not yet in the store; each "
                       "run in its own process (or on a Dask cluster), metered inside the run.")
    p.add_argument("campaign", metavar="CAMPAIGN.toml", help="the campaign file (see docs/campaigns.md)")
    p.add_argument("--store", default=None,
                   help="SQLite results store (default: CAMPAIGN.sqlite next to the file)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1,
                       help="local worker processes, one run each (default 1; 0 = inline); "
                       "with --cluster: worker jobs")
    where.add_argument("--scheduler", default=None, metavar="ADDR",
                       help="address of a dask.distributed scheduler, e.g. tcp://host:8786")
    p.add_argument("--cluster", choices=("slurm", "pbs", "none"), default=None,
                   help="run on --workers worker jobs of a SLURM or PBS cluster started through "
                   "dask-jobqueue with the campaign's [cluster] resources, cancelled at the end "
                   "(default: the [cluster] table's kind if it names one; none: run locally)")
    p.add_argument("--log-directory", default=None, metavar="ABS_DIR",
                   help="with --cluster: the worker jobs' .out/.err logs go to this absolute "
                   "folder (default: the [cluster] table's log_directory under the store's "
                   "folder, else STORE.jobs beside the store)")
    p.add_argument("--resume", action="store_true",
                   help="continue a store that already holds runs of this campaign")
    p.add_argument("--allow-other-campaign", action="store_true",
                   help="add this campaign's runs to a store made for another campaign "
                   "(refused by default)")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the Dask scheduler (default 10)")
    p.add_argument("--run-fn", default=None, metavar="MODULE:FUNCTION",
                   help="what one run does (default: the metered trainer); see docs/campaigns.md")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_metrics_flags(p, "progress, ETA, live power and energy")
    add_json_flag(p)
    p.set_defaults(func=run_run)

    t = sub.add_parser("table", help="export a campaign store as an energy table",
                       description="Write the completed runs of a results store as a "
                       "validated energy table (Parquet or CSV by suffix).")
    t.add_argument("store", metavar="STORE", help="the campaign's results store (.sqlite)")
    t.add_argument("--out", required=True, metavar="TABLE", help="output .parquet or .csv")
    add_force_flag(t)
    add_json_flag(t)
    t.set_defaults(func=run_table)


def _run_fn(spec: str | None) -> Any:
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    if not module or not name:
        raise InputError(f"--run-fn {spec!r}: expected MODULE:FUNCTION")
    try:
        fn = getattr(import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"--run-fn {spec!r}: {exc}") from None
    if not callable(fn):
        raise InputError(f"--run-fn {spec!r}: not callable")
    return fn


def _cluster(args: argparse.Namespace, campaign: Any, store: Path) -> Any:
    """The cluster to run on: --cluster, else the [cluster] table's kind; None: run locally.
    Where its job logs go and whether its scheduler is here are checked now, before the
    store is touched."""

    table = campaign.cluster
    kind = args.cluster
    if kind is None and args.scheduler is None and table is not None:
        kind = table.kind
    if kind is None or kind == "none":
        return None
    if args.scheduler is not None:
        raise InputError("--cluster and --scheduler exclude each other: --cluster starts its "
                         "own Dask scheduler")
    cluster = import_module("ecnas.campaign.cluster")  # in the handler: registering stays light
    spec = (table or cluster.ClusterSpec()).with_kind(kind)
    if args.log_directory is not None:
        spec = spec.with_log_directory(args.log_directory)
    cluster.job_log_directory(spec, store)
    cluster.check_here(spec)
    return spec


def _wall_text(d: dict[str, Any]) -> str:
    """The command's wall time, start-up and the store's setup included (what `time` says),
    and the part spent running the campaign."""
    whole = d.get("command_wall_time_s")
    if whole is None:
        return f"wall time: {d['wall_time_s']:.1f} s (running the campaign)"
    return (f"wall time: {whole:.1f} s for the whole command ({d['wall_time_s']:.1f} s running "
            "the campaign; the rest is start-up, imports and reading the campaign)")


def _summary_text(d: dict[str, Any]) -> str:
    lines = [f"campaign {d['campaign_hash']} → {d['store']}",
             f"runs: {d['done']} run now, {d['skipped']} already stored, {d['failed']} failed "
             f"(of {d['total']}); {d['failed_attempts']} failed attempt(s)",
             f"energy this session: {d['energy_j']:.1f} J measured, "
             f"{d['estimated_energy_j']:.1f} J estimated (meters: "
             f"{', '.join(d['meters']) or 'none'})",
             _wall_text(d)]
    lines += [f"gave up: {f}" for f in d["failures"]]
    lines += [f"warning: {w}" for w in d.get("warnings", [])]
    return "\n".join(lines)


def run_run(args: argparse.Namespace) -> int:
    """``ecnas run``: run a campaign's missing runs into its store; exit status 1 when a run
    failed after every retry."""
    from ecnas.campaign import load_campaign, run_campaign

    campaign = load_campaign(args.campaign)
    store = Path(args.store) if args.store else Path(args.campaign).with_suffix(".sqlite")
    fn = _run_fn(args.run_fn)
    cluster = _cluster(args, campaign, store)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    exporter = start_exporter(args, campaign.name, campaign=True)
    try:
        summary = run_campaign(campaign, store, workers=args.workers,
                               scheduler=args.scheduler, resume=args.resume, progress=say,
                               run_fn=fn, allow_other_campaign=args.allow_other_campaign,
                               connect_timeout=args.connect_timeout,
                               observers=exporter.observers if exporter else (),
                               cluster=cluster)
    finally:
        if exporter is not None:
            exporter.close()
    result = summary.to_dict()
    # the whole command, interpreter start-up and imports included: the campaign's own clock
    # starts after them, and under load they take tens of seconds (281 s vs `time`'s 321 s)
    result["command_wall_time_s"] = import_module("ecnas.campaign.progress").process_elapsed_s()
    emit(args.json, result, _summary_text)
    return 1 if summary.failed else 0


def run_table(args: argparse.Namespace) -> int:
    """``ecnas table``: export a campaign store's runs as an energy table, saying how many of
    the campaign's runs are not in it."""
    from ecnas.campaign.store import ResultsStore, export_table
    from ecnas.tables.io import check_table_target

    check_table_target(args.out, force=args.force, inputs=[args.store])
    out = export_table(args.store, args.out)
    with ResultsStore(args.store, readonly=True) as store:
        runs, failures = store.count(), len(store.failures())
        planned = store.campaign().get("runs")
    if not isinstance(planned, int) or isinstance(planned, bool):
        planned = None
    # runs of the campaign not (yet) in the store: failed for good, or never reached
    missing = max(int(planned) - runs, 0) if planned is not None else None
    result = {"table": str(out), "runs": runs, "campaign_runs": planned, "missing": missing,
              "failed_attempts": failures}
    emit(args.json, result, lambda d: f"wrote {d['runs']} run(s) to {d['table']}"
         + (f" ({d['missing']} of the campaign's {d['campaign_runs']} not in the store)"
            if d["missing"] else ""))
    return 0
