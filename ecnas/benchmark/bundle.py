"""The benchmark bundle: a folder with the energy table as Parquet, the compact layout and a
manifest holding every file's SHA-256.

Folder (see docs/benchmark.md)::

    manifest.json             format, schema version, ecnas version, spaces, budgets, devices
                              (hardware profiles embedded), calibration state, row/run counts
                              by source, provenance, license, citation, layouts, files {sha256}
    table.parquet             the energy table (contract columns, one row per checkpoint);
                              ``pandas.read_parquet`` reads it as it is
    archs.<device>.parquet    one row per architecture (hash, matrix, ops, params, FLOPs)
    runs.<device>.parquet     one row per run (arch_index, budget, repeat, source code,
                              estimated and ``layout.METRICS``), [arch, budget, repeat] C order

``Benchmark.load`` reads the manifest and one device's two layout files (checksums verified
while they are parsed); ``load_bundle`` returns the whole table; ``verify_bundle`` checks all.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ecnas._version import __version__
from ecnas.benchmark.layout import (
    METRICS,
    devices_of,
    layout_from_frames,
    layout_from_table,
)
from ecnas.errors import InputError
from ecnas.outputs import atomic_folder, check_target, dumps_json
from ecnas.profiles import get_profile
from ecnas.profiles.model import profile_to_dict
from ecnas.tables import read_table, validate
from ecnas.tables.metadata import KEY, get_metadata, merge_metadata, provenance_entry
from ecnas.tables.schema import RUN_KEYS, SOURCES

FORMAT = "ecnas-benchmark-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TABLE = "table.parquet"
DEFAULT_LICENSE = "CC-BY-4.0"
DEFAULT_CITATION = (
    "Bakhtiarifard, P., Igel, C., Selvan, R. (2024). EC-NAS: Energy Consumption Aware Tabular "
    "Benchmarks for Neural Architecture Search. ICASSP 2024."
)
#: data licenses of rows ecnas did not produce itself
SOURCE_LICENSES = {"imported": "MIT (EC-NAS release; keep its copyright notice)"}
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class FileCheck:
    """One file of a bundle and whether its SHA-256 matches the manifest."""

    name: str
    expected: str
    actual: str
    bytes: int

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


@dataclass(frozen=True)
class BundleReport:
    """The result of verifying a bundle's checksums."""

    path: Path
    schema_version: int
    files: tuple[FileCheck, ...]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(16 << 20):
            h.update(chunk)  # hashlib releases the GIL on large chunks: runs beside parsing
    return h.hexdigest()


# ------------------------------------------------------------------ manifest parts
def _profiles(device_ids: Iterable[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(devices, calibration): each device with its hardware profile embedded (null when
    ecnas has no profile with that id) and whether it is calibrated."""
    devices, calibration = [], {}
    for dev in device_ids:
        profile = get_profile(dev)
        if profile is None:
            devices.append({"id": dev, "profile": None,
                            "note": "no ecnas hardware profile with this id"})
            calibration[dev] = {"calibrated": False, "note": "no hardware profile"}
            continue
        devices.append({"id": dev, "profile": json.loads(json.dumps(profile_to_dict(profile),
                                                                     default=str))})
        info = profile.calibration_info
        calibration[dev] = {"calibrated": bool(profile.calibrated),
                            "reference": info.reference, "date": info.date, "by": info.by,
                            "method": info.method}
    return devices, calibration


def _spaces(table: Any) -> list[str]:
    # EC-NAS names a space by its vertex limit and NAS-Bench-101's 9-edge limit (e.g. 5V9E)
    longest = int(table["ops"].astype(str).str.count(",").max()) + 1
    return [f"{longest}V9E"]


def _counts(table: Any) -> dict[str, Any]:
    rows = table["source"].value_counts()
    runs = table.drop_duplicates(list(RUN_KEYS))["source"].value_counts()
    return {"rows": len(table), "runs": int(runs.sum()),
            "architectures": int(table["arch_hash"].nunique()),
            "rows_by_source": {s: int(rows.get(s, 0)) for s in SOURCES},
            "runs_by_source": {s: int(runs.get(s, 0)) for s in SOURCES}}


def _layout_names(devices: list[str]) -> dict[str, tuple[str, str]]:
    out = {}
    for k, dev in enumerate(devices):
        tag = dev if _SAFE.match(dev) else f"device{k}"
        out[dev] = (f"archs.{tag}.parquet", f"runs.{tag}.parquet")
    return out


# ------------------------------------------------------------------ write
def _write_arrow(columns: Mapping[str, Any], path: Path, *, dictionary: Iterable[str] = (),
                 compression: str = "zstd") -> None:
    # pa.array(numpy) keeps NaN as NaN (from_pandas would turn it into null, and nulls cost a
    # copy on load); one row group, so each column reads back as one contiguous chunk.
    arrow = pa.table({k: pa.array(v) for k, v in columns.items()})
    pq.write_table(arrow, path, compression=compression, use_dictionary=list(dictionary),
                   row_group_size=max(arrow.num_rows, 1))


def _write_layout(lay: Any, archs_path: Path, runs_path: Path) -> None:
    _write_arrow({"arch_hash": lay.arch_hash.astype(str), "matrix": lay.matrix.astype(str),
                  "ops": lay.ops.astype(str), "trainable_params": lay.trainable_params,
                  "flops": lay.flops}, archs_path, dictionary=("ops",))
    a, b, r = np.nonzero(lay.present)  # C order: [arch, budget, repeat]
    rows = (a * len(lay.budgets) + b) * lay.repeats + r
    cols: dict[str, Any] = {
        "arch_index": a.astype("int32"),
        "budget_epochs": np.asarray(lay.budgets, dtype="int32")[b],
        "repeat": (r + 1).astype("int16"),
        "source": lay.source[a, b, r],
        "estimated": lay.estimated[a, b, r],
    }
    dense = rows.size == lay.metrics.shape[0]
    for k, name in enumerate(METRICS):
        cols[name] = lay.metrics[:, k] if dense else lay.metrics[rows, k]
    # measurement floats barely compress and decoding would dominate the load time
    _write_arrow(cols, runs_path, compression="none")


def _write_table(table: Any, meta: Mapping[str, Any], path: Path) -> None:
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    # the table metadata under the key ecnas.tables.read_table reads; pandas ignores it
    arrow = arrow.replace_schema_metadata({KEY: dumps_json(dict(meta))})
    pq.write_table(arrow, path, compression="zstd", row_group_size=1 << 20,
                   use_dictionary=[c for c in ("arch_hash", "matrix", "ops", "device", "source",
                                               "note") if c in table.columns])


def owned_files(path: Path) -> list[str]:
    """The entries of the bundle folder ``path`` that ecnas wrote (its manifest and the files
    the manifest lists); raises ``InputError`` when ``path`` holds no ecnas bundle."""
    mf = path / MANIFEST
    if not mf.is_file():
        raise InputError(f"{path}: folder exists and is not a bundle (no {MANIFEST}); "
                         "choose an empty or new folder")
    try:
        manifest = json.loads(mf.read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(f"{mf}: not an ecnas bundle manifest ({exc}); ecnas does not "
                         "replace a folder it did not write") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{mf}: not an ecnas bundle manifest (format is not {FORMAT!r}); "
                         "ecnas does not replace a folder it did not write")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise InputError(f"{mf}: 'files' is not a mapping; ecnas does not replace a folder "
                         "it cannot account for")
    return [MANIFEST, *(n for n in files if isinstance(n, str) and _SAFE.match(n))]


def check_out(out_dir: str | Path, *, force: bool = False, inputs: Iterable[str | Path] = ()
              ) -> Path:
    """Check a bundle target before any work (see :func:`ecnas.outputs.check_target`)."""
    return check_target(out_dir, folder=True, owned=owned_files, force=force, inputs=inputs)


def write_bundle(table: Any, out_dir: str | Path, *, metadata: Mapping[str, Any] | None = None,
                 license: str = DEFAULT_LICENSE, citation: str = DEFAULT_CITATION,
                 overwrite: bool = True) -> Path:
    """Write ``table`` (an energy table) as a bundle folder ``out_dir``; returns its path.

    The folder is built next to its destination and renamed into place, so readers never see
    half a bundle. An existing bundle is replaced when ``overwrite``, and only when everything
    in it is listed by its manifest: a folder that is not a bundle, or a bundle holding files
    ecnas did not write, is never replaced (``InputError`` names the foreign file).
    ``metadata`` is merged over the table's ``df.attrs["ecnas"]``.
    """
    out = check_out(out_dir, force=overwrite)
    full = validate(table)
    if full.empty:
        raise InputError("the table has no rows: nothing to put in a bundle")
    meta = merge_metadata(get_metadata(table), metadata)
    meta["provenance"] = [*meta.get("provenance", []),
                          provenance_entry("ecnas export --format bundle", "energy table",
                                           rows=len(full))]
    ordered = full.sort_values(["arch_hash", "budget_epochs", "repeat", "device", "epoch"],
                               kind="stable").reset_index(drop=True)
    devices = devices_of(ordered)
    names = _layout_names(devices)
    with atomic_folder(out, owned=owned_files) as tmp:
        _write_table(ordered, meta, tmp / TABLE)
        layouts = []
        for dev in devices:
            lay = layout_from_table(ordered, device=dev)
            a_name, r_name = names[dev]
            _write_layout(lay, tmp / a_name, tmp / r_name)
            layouts.append({"device": dev, "archs": a_name, "runs": r_name,
                            "architectures": lay.num_archs, "budgets": list(lay.budgets),
                            "repeats": lay.repeats, "runs_present": int(lay.present.sum())})

        profiles, calibration = _profiles(devices)
        manifest = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "ecnas_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "spaces": _spaces(ordered),
            "budgets": sorted(int(b) for b in ordered["budget_epochs"].unique()),
            "devices": profiles,
            "calibration": calibration,
            "row_counts": _counts(ordered),
            "energy": {"unit": "J", "includes_pue": False, "pue": meta.get("pue"),
                       "note": "energy_j excludes facility factors; 'energy (kWh)' in queries "
                               "and EC-NAS exports re-applies the recorded PUE factor"},
            "sources": list(SOURCES),
            "layouts": layouts,
            "table_metadata": meta,
            "provenance": meta["provenance"],
            "license": license,
            "data_licenses": {s: v for s, v in SOURCE_LICENSES.items()
                              if (ordered["source"] == s).any()},
            "citation": citation,
            "files": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                      for p in sorted(tmp.iterdir())},
        }
        (tmp / MANIFEST).write_text(dumps_json(manifest, indent=2) + "\n", encoding="utf-8")
    return out


# ------------------------------------------------------------------ read / verify
def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the bundle at ``path`` (checked for format and schema version)."""
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"{p}: not a bundle folder")
    mf = p / MANIFEST
    if not mf.is_file():
        raise InputError(f"{p}: not a bundle (no {MANIFEST})")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{mf}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{mf}: not an ecnas benchmark manifest (format is not {FORMAT!r})")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise InputError(f"{mf}: schema_version {version!r} is newer than this ecnas reads "
                         f"({SCHEMA_VERSION}); upgrade ecnas")
    for key in ("files", "layouts"):
        if key not in manifest:
            raise InputError(f"{mf}: no {key!r}")
    check_manifest_types(manifest, mf)
    return manifest


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_manifest_types(manifest: Mapping[str, Any], mf: Path) -> None:
    """Every field a reader uses has its type, and every file name stays inside the bundle
    (a plain name: no folder, no '..', no leading dot); ``InputError`` names the field."""
    files = manifest["files"]
    if not isinstance(files, dict):
        raise InputError(f"{mf}: 'files' is not an object")
    for name, entry in files.items():
        if not _SAFE.match(name):
            raise InputError(f"{mf}: file name {name!r} is not a plain file name inside the "
                             "bundle (refused: it would be read from elsewhere)")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)):
            raise InputError(f"{mf}: files[{name!r}] has no sha256 text")
    layouts = manifest["layouts"]
    if not isinstance(layouts, list):
        raise InputError(f"{mf}: 'layouts' is not a list")
    for i, entry in enumerate(layouts):
        if not isinstance(entry, dict):
            raise InputError(f"{mf}: layouts[{i}] is not an object")
        for key in ("device", "archs", "runs"):
            if not isinstance(entry.get(key), str):
                raise InputError(f"{mf}: layouts[{i}].{key} is {entry.get(key)!r}, not text")
        for key in ("archs", "runs"):
            if not _SAFE.match(entry[key]):
                raise InputError(f"{mf}: layouts[{i}].{key} {entry[key]!r} is not a plain file "
                                 "name inside the bundle (refused)")
        budgets = entry.get("budgets")
        if not (isinstance(budgets, list) and budgets and all(_is_int(b) and b > 0
                                                              for b in budgets)):
            raise InputError(f"{mf}: layouts[{i}].budgets is {budgets!r}, not a list of "
                             "positive integers")
        for key in ("repeats", "runs_present"):
            v = entry.get(key)
            if not (_is_int(v) and 0 <= v <= 1 << 31):
                raise InputError(f"{mf}: layouts[{i}].{key} is {v!r}, not a count")
    devices = manifest.get("devices", [])
    if not (isinstance(devices, list) and all(isinstance(d, dict) and isinstance(d.get("id"), str)
                                               for d in devices)):
        raise InputError(f"{mf}: 'devices' is not a list of objects with an 'id'")
    meta = manifest.get("table_metadata", {})
    if not isinstance(meta, dict):
        raise InputError(f"{mf}: 'table_metadata' is not an object")


def _check(p: Path, manifest: Mapping[str, Any], name: str, actual: str | None = None) -> FileCheck:
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise InputError(f"{p / MANIFEST}: no checksum for {name}")
    f = p / name
    if not f.is_file():
        raise InputError(f"{f}: missing (listed in the bundle's manifest)")
    actual = actual if actual is not None else sha256_file(f)
    check = FileCheck(name, str(entry["sha256"]), actual, f.stat().st_size)
    if not check.ok:
        raise InputError(f"{f}: SHA-256 mismatch (manifest {check.expected[:16]}..., file "
                         f"{actual[:16]}...): the file changed after the bundle was written")
    return check


def verify_bundle(path: str | Path, names: Iterable[str] | None = None) -> BundleReport:
    """Check the SHA-256 of the bundle's files (``names``: a subset; default all listed).

    A missing or changed file raises ``InputError`` naming it.
    """
    p = Path(path)
    mf = read_manifest(p)
    checks = tuple(_check(p, mf, n) for n in (names if names is not None else sorted(mf["files"])))
    return BundleReport(p, int(mf["schema_version"]), checks)


def load_bundle(path: str | Path, *, verify: bool = True) -> Any:
    """The bundle's energy table (metadata in ``df.attrs["ecnas"]``), checksums verified."""
    p = Path(path)
    if verify:
        verify_bundle(p)
    else:
        read_manifest(p)
    return read_table(p / TABLE)


def _columns(path: Path) -> dict[str, Any]:
    tbl = pq.read_table(path, memory_map=True)
    return {name: tbl.column(name).to_numpy() for name in tbl.column_names}


def load_bundle_layout(path: str | Path, *, device: str | None = None,
                       verify: bool = True) -> tuple[Any, dict[str, Any]]:
    """(Layout, manifest) of one device of the bundle (default: the device with most runs).

    The two layout files' checksums are computed in a thread while they are parsed; a
    mismatch raises ``InputError`` before anything is returned.
    """
    p = Path(path)
    manifest = read_manifest(p)
    layouts = {entry["device"]: entry for entry in manifest["layouts"]}
    if not layouts:
        raise InputError(f"{p / MANIFEST}: no layouts")
    if device is None:
        device = min(layouts, key=lambda d: (-int(layouts[d]["runs_present"]), d))
    elif device not in layouts:
        raise InputError(f"device {device!r} is not in the bundle {p} "
                         f"(devices: {', '.join(layouts)})")
    entry = layouts[device]
    names = (entry["archs"], entry["runs"])
    for n in names:
        if not (p / n).is_file():
            raise InputError(f"{p / n}: missing (listed in the bundle's manifest)")
    with ThreadPoolExecutor(max_workers=2) as pool:
        sums = [pool.submit(sha256_file, p / n) for n in names] if verify else []
        try:
            archs, runs = _columns(p / names[0]), _columns(p / names[1])
            failure = None
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            failure = exc
        # a changed file is reported as such, even when it no longer parses
        for n, fut in zip(names, sums, strict=False):
            _check(p, manifest, n, fut.result())
    if failure is not None:
        raise InputError(f"{p}: cannot read the layout of {device!r}: {failure}") from None
    try:
        lay = layout_from_frames(archs, runs, device=device,
                                 budgets=tuple(int(b) for b in entry["budgets"]),
                                 repeats=int(entry["repeats"]))
    except KeyError as exc:
        raise InputError(f"{p}: layout of {device!r} lacks column {exc}") from None
    except (TypeError, ValueError, IndexError) as exc:
        # checksums match, so the files are as written: written by something else
        raise InputError(f"{p}: layout of {device!r} is malformed ({type(exc).__name__}: "
                         f"{exc})") from None
    return lay, manifest
