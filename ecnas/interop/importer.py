"""``import_ecnas(src)``: an EC-NAS results tree, a TFRecord file, or a folder of TFRecords."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ecnas.errors import InputError
from ecnas.interop.ecnas_tree import import_results_tree, is_results_tree
from ecnas.interop.sidecar import read_sidecar
from ecnas.interop.tfrecord import read_ecnas_records, records_to_table

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")


def import_tfrecords(paths: list[Path], **kwargs: Any) -> pd.DataFrame:
    """The energy table of every record in the TFRecord files ``paths``, in order; ``kwargs`` go
    to :func:`~ecnas.interop.tfrecord.records_to_table` (``source`` defaults to the paths).

    Each file's sidecar (``<file>.ecnas.json``, written by ``ecnas export``) says which records
    hold estimated energy; a file without one is read as unknown, never as measured."""
    records = []
    flags: list[tuple[bool | None, tuple[str, ...]]] = []
    unknown: list[str] = []
    for p in paths:
        recs = list(read_ecnas_records(p))
        side = read_sidecar(p, len(recs))
        if side.flags is None:
            unknown.append(f"{p.name}: {side.reason}")
            flags.extend((None, ()) for _ in recs)
        else:
            flags.extend((f.estimated, f.meters) for f in side.flags)
        records.extend(recs)
    kwargs.setdefault("source", ", ".join(str(p) for p in paths))
    kwargs.setdefault("unknown_because", "; ".join(unknown))
    return records_to_table(records, flags=flags, **kwargs)


def import_ecnas(src: str | Path, **kwargs: Any) -> pd.DataFrame:
    """The energy table of EC-NAS data at ``src`` (kind decided by what ``src`` is)."""
    p = Path(src)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_file():
        return import_tfrecords([p], **kwargs)
    records = sorted(f for f in p.iterdir() if f.suffix.lower() in TFRECORD_SUFFIXES)
    if records and not (p / "train_model_results").is_dir():
        return import_tfrecords(records, **kwargs)
    if is_results_tree(p):
        return import_results_tree(p, **kwargs)
    raise InputError(f"{p}: neither an EC-NAS results tree (graphs/ + train_model_results/) "
                     "nor TFRecord files (*.tfrecord)")
