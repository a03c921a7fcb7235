"""``ecnas export`` and ``ecnas query`` (the benchmark room); ``search``/``pareto``
(``ecnas.cli.benchmark_moo``) and the contribution commands (``ecnas.cli.contribution``) are
registered from here too."""

from __future__ import annotations

import argparse
from importlib import import_module
from pathlib import Path
from typing import Any

from ecnas.cli._output import add_json_flag, emit
from ecnas.errors import InputError
from ecnas.outputs import check_target


def register(sub: Any) -> None:
    """Add ``ecnas export`` and ``ecnas query`` (and, through its module, ``ecnas search`` and
    ``ecnas pareto``) to ``sub``."""
    p = sub.add_parser("export", help="export an energy table as a benchmark bundle or EC-NAS TFRecord",
                       description="Export TABLE (.parquet/.csv) as a versioned bundle folder "
                                   "(manifest + checksums) or as EC-NAS's TFRecord file.")
    p.add_argument("table", metavar="TABLE",
                   help="energy table (.parquet or .csv), or a bundle folder (checksums verified)")
    p.add_argument("--format", choices=("bundle", "ecnas-tfrecord"), default="bundle",
                   help="bundle (folder) or ecnas-tfrecord (file); default bundle")
    p.add_argument("--out", required=True, metavar="PATH", help="bundle folder or .tfrecord file")
    p.add_argument("--license", default=None, help="license of the data (bundle manifest)")
    p.add_argument("--citation", default=None, help="how to cite the data (bundle manifest)")
    p.add_argument("--device", default=None,
                   help="export only this device's rows (EC-NAS's format holds one device: a "
                        "multi-device table or bundle needs it for ecnas-tfrecord)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output (a bundle only when it holds nothing but "
                        "the files its manifest lists)")
    p.add_argument("--allow-estimated", action="store_true",
                   help="ecnas-tfrecord: export runs with estimated energy anyway (refused "
                        "without it: the format has no field for it; the flags go to the "
                        "sidecar FILE.ecnas.json, which import-ecnas and query read)")
    add_json_flag(p)
    p.set_defaults(func=_export)

    q = sub.add_parser("query", help="look up one architecture in a benchmark",
                       description="Query a bundle folder or EC-NAS TFRecord like NAS-Bench-101's "
                                   "api.query: final metrics of one run.")
    q.add_argument("bench", metavar="BENCH", help="bundle folder or EC-NAS .tfrecord file")
    q.add_argument("--matrix", required=True, metavar="M", help="row-major 0/1 adjacency string")
    q.add_argument("--ops", required=True, metavar="O", help="comma-separated op labels")
    q.add_argument("--epochs", required=True, type=int, metavar="E", help="training budget")
    q.add_argument("--repeat", default=None, metavar="R|mean",
                   help="1-based repeat, 'mean' (average of repeats), or omitted (seeded random)")
    q.add_argument("--seed", type=int, default=0, help="seed of the random repeat (default 0)")
    q.add_argument("--device", default=None, help="device of a multi-device bundle")
    add_json_flag(q)
    q.set_defaults(func=_query)

    import_module("ecnas.cli.benchmark_moo").register(sub)


def _export(args: argparse.Namespace) -> int:
    from ecnas.tables import read_table

    if args.format == "bundle":
        from ecnas.benchmark.bundle import check_out

        check_out(args.out, force=args.force, inputs=[args.table])
    else:
        from ecnas.interop.sidecar import sidecar_path

        check_target(args.out, force=args.force, inputs=[args.table],
                     companions=[sidecar_path(args.out)])

    if Path(args.table).is_dir():
        from ecnas.benchmark.bundle import load_bundle

        table = load_bundle(args.table)
    else:
        table = read_table(args.table)
    devices = sorted(table["device"].astype(str).unique())
    if args.device is not None:
        if args.device not in devices:
            raise InputError(f"--device {args.device}: not in {args.table} (devices: "
                             f"{', '.join(devices)})")
        attrs = table.attrs
        table = table[table["device"].astype(str) == args.device].reset_index(drop=True)
        table.attrs = attrs
    elif args.format == "ecnas-tfrecord" and len(devices) > 1:
        raise InputError(f"{args.table} holds devices {', '.join(devices)}; an EC-NAS TFRecord "
                         "holds one: pass --device (one export per device)")
    if args.format == "bundle":
        from ecnas.benchmark.bundle import (
            DEFAULT_CITATION,
            DEFAULT_LICENSE,
            read_manifest,
            write_bundle,
        )

        out = write_bundle(table, args.out, license=args.license or DEFAULT_LICENSE,
                           citation=args.citation or DEFAULT_CITATION, overwrite=args.force)
        m = read_manifest(out)
        unknown = import_module("ecnas.tables.metadata").get_metadata(table) \
            .get("estimated_unknown")
        obj = {"path": str(out), "format": "bundle", "rows": m["row_counts"]["rows"],
               "rows_estimated": None if unknown else int(table["estimated"].astype(bool).sum()),
               "runs": m["row_counts"]["runs"], "architectures": m["row_counts"]["architectures"],
               "rows_by_source": m["row_counts"]["rows_by_source"], "budgets": m["budgets"],
               "devices": [d["id"] for d in m["devices"]],
               "files": {k: v["sha256"] for k, v in m["files"].items()}}

        def text(o: dict[str, Any]) -> str:
            src = ", ".join(f"{v} {k}" for k, v in o["rows_by_source"].items() if v)
            est = o["rows_estimated"]
            kind = ("measured or estimated unknown" if est is None
                    else f"{est} estimated" if est == o["rows"] else "none estimated" if not est
                    else f"{est} estimated, {o['rows'] - est} not")
            return (f"wrote bundle {o['path']}: {o['architectures']} architectures, {o['runs']} runs, "
                    f"{o['rows']} rows (source: {src}; energy: {kind}), budgets {o['budgets']}, devices "
                    f"{', '.join(o['devices'])}; {len(o['files'])} files with SHA-256 in manifest.json")
    else:
        from ecnas.interop.export_tfrecord import export_ecnas_tfrecord

        obj = export_ecnas_tfrecord(table, args.out,
                                    allow_estimated=args.allow_estimated).to_dict()

        def text(o: dict[str, Any]) -> str:
            skipped = ", ".join(f"{v} {k}" for k, v in o["skipped_runs"].items())
            est = o["records_estimated"]
            kind = ("measured or estimated: unknown" if o.get("records_unknown")
                    else "all measured" if not est else f"all {est} estimated"
                    if est == o["records"] else f"{est} estimated")
            return (f"wrote {o['records']} EC-NAS records ({kind}; flags in {o['sidecar']}) to "
                    f"{o['path']} (energy in kWh with PUE {o['pue_reapplied']} re-applied)"
                    + (f"; skipped runs: {skipped}" if skipped else "")
                    + (f"; {o['checkpoints_dropped']} checkpoints beyond the three evaluations dropped"
                       if o["checkpoints_dropped"] else ""))
    emit(args.json, obj, text)
    return 0


#: how a row came to be, in words (the table's ``source`` column), for ``query``'s text
_RUN_WORDS = {"measured": "trained here", "imported": "imported",
              "extrapolated": "extrapolated from a shorter run",
              "surrogate": "predicted by the surrogate"}


def _query(args: argparse.Namespace) -> int:
    from ecnas.benchmark.api import Benchmark
    from ecnas.space import ModelSpec

    repeat: Any = args.repeat
    if repeat is not None and repeat != "mean":
        try:
            repeat = int(repeat)
        except ValueError:
            raise InputError(f"--repeat {repeat!r}: use an integer or 'mean'") from None
    bench = Benchmark.load(args.bench, seed=args.seed, device=args.device)
    spec = ModelSpec(args.matrix, args.ops)
    result = bench.query(spec, args.epochs, repeat)
    result["module_adjacency"] = spec.matrix_str
    result["module_operations"] = list(spec.ops)
    # one word for the energy, beside the row's source: `source: measured` names how the run
    # came to be (trained here), not how its energy was obtained
    result["energy"] = ("unknown" if result["estimated"] is None
                        else "estimated" if result["estimated"] else "measured")

    if args.device is None and len(bench.devices) > 1:
        # a multi-device bundle answers for one device: say which, and how to pick another
        result["device_note"] = (f"device {bench.device} chosen (the one with the most runs) of "
                                 f"{', '.join(bench.devices)}; pick one with --device")

    def text(o: dict[str, Any]) -> str:
        how = _RUN_WORDS.get(o["source"], o["source"])
        energy = {"unknown": "energy measured or estimated: unknown",
                  "estimated": "energy ESTIMATED", "measured": "energy measured"}[o["energy"]]
        lines = [f"{o['arch_hash']} at {o['epochs']} epochs, repeat {o['repeat']} "
                 f"({how}, {energy}, device {o['device']})",
                 f"  validation accuracy  {o['validation_accuracy']:.4f}",
                 f"  test accuracy        {o['test_accuracy']:.4f}",
                 f"  training time        {o['training_time']:.1f} s",
                 f"  energy               {o['energy_j']:.1f} J (PUE excluded)",
                 f"  energy (kWh)         {o['energy (kWh)']:.6f} (EC-NAS convention, PUE "
                 f"{bench.pue:g} included)",
                 f"  trainable parameters {o['trainable_parameters']}"]
        if "device_note" in o:
            lines.append(o["device_note"])
        return "\n".join(lines)

    emit(args.json, result, text)
    return 0
