"""The benchmark bundle: a folder with the energy table as Parquet, the compact layout and a
manifest holding every file's SHA-256.

Folder (see docs/benchmark.md)::

    manifest.json             format, schema version, ecnas version, spaces, budgets, devices
                              (hardware profiles embedded), calibration state, row/run counts
                              by source, provenance, license, citation, layouts, files {sha256}
    table.parquet             the energy table (contract columns, one row per checkpoint);
                              ``pandas.read_parquet`` reads it as it is
    archs.<device>.parquet    one row per architecture (hash, matrix, ops, params, FLOPs)
    metrics.<device>.npy      float64 [arch × budget × repeat, len(layout.METRICS)], C order:
                              every run's metrics, dense (NaN where a run is absent)
    status.<device>.npy       int8 [arch × budget × repeat]: -1 absent, else the source code
                              (index into SOURCES) + 16 when estimated

``Benchmark.load`` reads the manifest and the archs file and memory-maps the two ``.npy``
files (nothing is copied or rebuilt); their SHA-256 is verified at every load, in parallel
chunks the manifest lists, before anything is returned. ``load_bundle`` returns the whole
table; ``verify_bundle`` checks every file, whole. Bundles of schema version 1 (a
``runs.<device>.parquet`` per device instead of the two ``.npy``) are still read.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import mmap
import os
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.lib import format as npy

from ecnas._version import __version__
from ecnas.benchmark.layout import (
    METRICS,
    Layout,
    arch_fields,
    devices_of,
    layout_from_frames,
    layout_from_table,
)
from ecnas.errors import InputError
from ecnas.outputs import atomic_folder, check_target, dumps_json, sha256_file
from ecnas.profiles import get_profile
from ecnas.profiles.model import profile_to_dict
from ecnas.tables import read_table, validate
from ecnas.tables.checks import run_checks
from ecnas.tables.metadata import KEY, get_metadata, merge_metadata, provenance_entry
from ecnas.tables.schema import ROW_KEYS, RUN_KEYS, SOURCES

FORMAT = "ecnas-benchmark-bundle"
SCHEMA_VERSION = 2
#: large files also get one SHA-256 per chunk of this size, so a load verifies them in parallel
CHUNK_BYTES = 64 << 20
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
        """Whether the file's SHA-256 matches the manifest's."""
        return self.expected == self.actual


@dataclass(frozen=True)
class BundleReport:
    """The result of verifying a bundle's checksums."""

    path: Path
    schema_version: int
    files: tuple[FileCheck, ...]

    @property
    def ok(self) -> bool:
        """Whether every file's SHA-256 matches the manifest's."""
        return all(f.ok for f in self.files)


def _sha256_range(path: Path, start: int, length: int) -> str:
    h = hashlib.sha256()
    buf = bytearray(min(length, 16 << 20))
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        fh.seek(start)
        left = length
        while left > 0:
            n = fh.readinto(view[:min(left, len(buf))])
            if not n:
                break
            h.update(view[:n])  # released GIL: the chunks of a file hash on several cores
            left -= n
    return h.hexdigest()


def chunk_digests(path: Path, size: int = CHUNK_BYTES) -> list[str]:
    """SHA-256 of each ``size``-byte chunk of ``path`` (the last one shorter)."""
    n = path.stat().st_size
    return [_sha256_range(path, i, min(size, n - i)) for i in range(0, max(n, 1), size)]


def _file_entry(path: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    if entry["bytes"] > CHUNK_BYTES:
        entry["chunks"] = {"bytes": CHUNK_BYTES, "sha256": chunk_digests(path, CHUNK_BYTES)}
    return entry


# ------------------------------------------------------------------ manifest parts
def profile_entries(dev: str, profile: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(devices entry, calibration entry) of the manifest for ``dev`` and its profile (None:
    ecnas has no profile with that id)."""

    if profile is None:
        return ({"id": dev, "profile": None, "note": "no ecnas hardware profile with this id"},
                {"calibrated": False, "note": "no hardware profile"})
    info = profile.calibration_info
    return ({"id": dev, "profile": json.loads(json.dumps(profile_to_dict(profile), default=str))},
            {"calibrated": bool(profile.calibrated), "reference": info.reference,
             "date": info.date, "by": info.by, "method": info.method})


def _profiles(device_ids: Iterable[str], embedded: Mapping[str, tuple[dict[str, Any], Any]]
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(devices, calibration): each device with its hardware profile embedded (``embedded``
    first: what a merged bundle or contribution carried; else ecnas's profile with that id,
    null when none) and whether it is calibrated."""

    devices, calibration = [], {}
    for dev in device_ids:
        entry, cal = embedded[dev] if dev in embedded else profile_entries(dev, get_profile(dev))
        devices.append(entry)
        calibration[dev] = cal
    return devices, calibration


def space_names(table: Any) -> list[str]:
    """The search space of a table with an ``ops`` column, as EC-NAS names it: the vertex
    limit and NAS-Bench-101's 9-edge limit (e.g. ``["5V9E"]``)."""
    longest = int(table["ops"].astype(str).str.count(",").max()) + 1
    return [f"{longest}V9E"]


def _counts(table: Any) -> dict[str, Any]:
    rows = table["source"].value_counts()
    runs = table.drop_duplicates(list(RUN_KEYS))["source"].value_counts()
    return {"rows": len(table), "runs": int(runs.sum()),
            "architectures": int(table["arch_hash"].nunique()),
            "rows_by_source": {s: int(rows.get(s, 0)) for s in SOURCES},
            "runs_by_source": {s: int(runs.get(s, 0)) for s in SOURCES}}


def _layout_names(devices: list[str]) -> dict[str, tuple[str, str, str]]:
    out = {}
    for k, dev in enumerate(devices):
        tag = dev if _SAFE.match(dev) else f"device{k}"
        out[dev] = (f"archs.{tag}.parquet", f"metrics.{tag}.npy", f"status.{tag}.npy")
    return out


# ------------------------------------------------------------------ write
def _write_arrow(columns: Mapping[str, Any], path: Path, *, dictionary: Iterable[str] = (),
                 compression: str = "zstd") -> None:
    # pa.array(numpy) keeps NaN as NaN (from_pandas would turn it into null, and nulls cost a
    # copy on load); one row group, so each column reads back as one contiguous chunk.
    arrow = pa.table({k: pa.array(v) for k, v in columns.items()})
    pq.write_table(arrow, path, compression=compression, use_dictionary=list(dictionary),
                   row_group_size=max(arrow.num_rows, 1))


def status_codes(lay: Any) -> Any:
    """The int8 status of each run of ``lay``: -1 absent, else source code + 16 if estimated."""

    code = lay.source.astype("int8") | (lay.estimated.astype("int8") << 4)
    return np.where(lay.present, code, np.int8(-1)).astype("int8").ravel()


def _write_layout(lay: Any, archs_path: Path, metrics_path: Path, status_path: Path) -> None:
    _write_arrow({"arch_hash": lay.arch_hash.astype(str), "matrix": lay.matrix.astype(str),
                  "ops": lay.ops.astype(str), "trainable_params": lay.trainable_params,
                  "flops": lay.flops}, archs_path, dictionary=("ops",))
    # the dense arrays as they sit in memory: a load memory-maps them instead of rebuilding
    with open(metrics_path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(lay.metrics, dtype="<f8"), allow_pickle=False)
    with open(status_path, "wb") as fh:
        np.save(fh, status_codes(lay), allow_pickle=False)


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
    # a listed file counts as ecnas's only when its bytes are the ones the manifest records:
    # a manifest edited to list a user's file does not get that file deleted
    return [MANIFEST, *(n for n, e in files.items()
                        if isinstance(n, str) and _SAFE.match(n) and _unchanged(path / n, e))]


def _unchanged(f: Path, entry: Any) -> bool:
    if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)):
        return False
    try:
        if f.is_symlink() or not f.is_file():
            return False
        if _is_int(entry.get("bytes")) and f.stat().st_size != entry["bytes"]:
            return False
        return sha256_file(f) == entry["sha256"]
    except OSError:
        return False


def check_out(out_dir: str | Path, *, force: bool = False, inputs: Iterable[str | Path] = ()
              ) -> Path:
    """Check a bundle target before any work (see :func:`ecnas.outputs.check_target`); a
    symbolic link is refused (a bundle is renamed into place: the link would be replaced by
    a folder and what it points to left half-updated)."""

    if Path(out_dir).is_symlink():
        raise InputError(f"--out {out_dir}: is a symbolic link; ecnas writes a bundle folder "
                         "in place of its target, so name the folder itself "
                         f"({os.path.realpath(out_dir)})")
    return check_target(out_dir, folder=True, owned=owned_files, force=force, inputs=inputs)


def write_bundle(table: Any, out_dir: str | Path, *, metadata: Mapping[str, Any] | None = None,
                 license: str = DEFAULT_LICENSE, citation: str = DEFAULT_CITATION,
                 overwrite: bool = True,
                 embedded: Mapping[str, tuple[dict[str, Any], Any]] | None = None,
                 extra: Mapping[str, Any] | None = None, profiles: Any = None) -> Path:
    """Write ``table`` (an energy table) as a bundle folder ``out_dir``; returns its path.

    The folder is built next to its destination and renamed into place, so readers never see
    half a bundle. An existing bundle is replaced when ``overwrite``, and only when everything
    in it is listed by its manifest: a folder that is not a bundle, or a bundle holding files
    ecnas did not write, is never replaced (``InputError`` names the foreign file).
    ``metadata`` is merged over the table's ``df.attrs["ecnas"]``. A table that fails an
    error-level ``ecnas check`` is refused (``InputError`` naming the checks): a bundle serves
    what it holds as a benchmark. ``embedded``: device id → (devices entry, calibration entry)
    kept as given (a merge keeps the profiles its bundles carried); ``extra``: more manifest
    fields (a merge's ``contributions``); ``profiles``: what the checks judge devices by
    (default: ecnas's loaded profiles; a merge adds the contributed one).
    """

    out = check_out(out_dir, force=overwrite)
    full = validate(table)
    if full.empty:
        raise InputError("the table has no rows: nothing to put in a bundle")
    report = run_checks(full, profiles=profiles, validated=True)  # the schema: just above
    if not report.ok:
        failed = "; ".join(f"{r.name}: {r.explanation}" for r in report.failed
                           if r.severity == "error")
        raise InputError(f"the table fails ecnas check ({failed}); a bundle serves its rows as "
                         "a benchmark: fix the table (ecnas check TABLE lists the rows)")
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
            a_name, m_name, s_name = names[dev]
            _write_layout(lay, tmp / a_name, tmp / m_name, tmp / s_name)
            layouts.append({"device": dev, "archs": a_name, "metrics": m_name, "status": s_name,
                            "metric_columns": list(METRICS),
                            "architectures": lay.num_archs, "budgets": list(lay.budgets),
                            "repeats": lay.repeats, "runs_present": int(lay.present.sum())})

        profiles, calibration = _profiles(devices, embedded or {})
        manifest = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "ecnas_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "spaces": space_names(ordered),
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
            "checks": {"ok": True, "warnings": [f"{r.name}: {r.explanation}"
                                                for r in report.failed]},
            **dict(extra or {}),
            "files": {p.name: _file_entry(p) for p in sorted(tmp.iterdir())},
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


def _is_int(v: Any) -> TypeGuard[int]:
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
        files_keys = ("archs", "metrics", "status") if "metrics" in entry else ("archs", "runs")
        for key in ("device", *files_keys):
            if not isinstance(entry.get(key), str):
                raise InputError(f"{mf}: layouts[{i}].{key} is {entry.get(key)!r}, not text")
        for key in files_keys:
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
    wanted = list(names if names is not None else sorted(mf["files"]))
    checks = tuple(_check(p, mf, n) for n in wanted)
    # and every chunk digest the manifest lists: none may disagree with the file either
    verify_pieces(p, {"files": {n: e for n, e in mf["files"].items()
                                if isinstance(e, dict) and "chunks" in e}},
                  [n for n in wanted if "chunks" in mf["files"].get(n, {})])()
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


def _hash_jobs(p: Path, manifest: Mapping[str, Any],
               name: str) -> list[tuple[str, int, int, str, bool]]:
    """(name, start, length, expected SHA-256, whole file?) for each digest the manifest holds
    for ``name``: each chunk's it lists, and the whole file's. Every one must match: a file
    edited with its chunk digests updated and its whole-file digest left stale is refused
    (the chunks hash in parallel and say where the file changed; the whole-file digest is
    the one ``sha256sum`` checks)."""
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise InputError(f"{p / MANIFEST}: no checksum for {name}")
    f = p / name
    if not f.is_file():
        raise InputError(f"{f}: missing (listed in the bundle's manifest)")
    size = f.stat().st_size
    if _is_int(entry.get("bytes")) and entry["bytes"] != size:
        raise InputError(f"{f}: {size} bytes, the manifest says {entry['bytes']}: the file "
                         "changed after the bundle was written")
    whole = [(name, 0, size, entry["sha256"], True)]
    chunks = entry.get("chunks")
    if chunks is None:
        return whole
    if isinstance(chunks, dict) and _is_int(chunks.get("bytes")) and chunks["bytes"] > 0:
        step, digests = chunks["bytes"], chunks.get("sha256")
        if (isinstance(digests, list) and all(isinstance(d, str) for d in digests)
                and len(digests) == max(1, -(-size // step))):
            # the whole file first: the longest job starts first, the chunks share the rest
            return whole + [(name, i * step, min(step, size - i * step), d, False)
                            for i, d in enumerate(digests)]
    raise InputError(f"{p / MANIFEST}: files[{name!r}].chunks does not match the file's "
                     f"{size} bytes")


def verify_pieces(p: Path, manifest: Mapping[str, Any], names: Iterable[str]) -> Any:
    """Start verifying every digest the manifest holds for ``names`` (chunks and whole files
    in parallel threads); returns a function that waits and raises ``InputError`` naming the
    first file with a digest that does not match (a changed chunk before a stale whole-file
    digest)."""
    jobs = [j for n in names for j in _hash_jobs(p, manifest, n)]
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1)))
    futures = [pool.submit(_sha256_range, p / j[0], j[1], j[2]) for j in jobs]
    pool.shutdown(wait=False)

    def wait() -> None:
        results = [fut.result() for fut in futures]
        bad = [(j, a) for j, a in zip(jobs, results, strict=True) if a != j[3]]
        if not bad:
            return
        (n, start, _, expected, whole), actual = min(bad, key=lambda b: b[0][4])  # chunks first
        chunked = sum(j[0] == n for j in jobs) > 1
        where = ("" if not chunked else f" at bytes {start}.." if not whole else
                 " (whole file; every chunk digest matches: the manifest was edited)")
        raise InputError(f"{p / n}: SHA-256 mismatch{where} (manifest {expected[:16]}..., "
                         f"file {actual[:16]}...): the file changed after the bundle was "
                         "written")
    return wait


def _map_npy(path: Path, dtype: str, shape: tuple[int, ...]) -> Any:
    """A read-only array over the ``.npy`` file ``path``, memory-mapped (nothing is read
    until used); its dtype, order and shape must be the ones given."""

    with open(path, "rb") as fh:
        try:
            version = npy.read_magic(fh)
            header = (npy.read_array_header_1_0 if version == (1, 0)
                      else npy.read_array_header_2_0)(fh)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not a .npy array ({exc})") from None
        got_shape, fortran, got_dtype = header
        offset = fh.tell()
        want = np.dtype(dtype)
        if got_dtype != want or fortran or tuple(got_shape) != tuple(shape):
            raise InputError(f"{path}: holds {got_dtype} {tuple(got_shape)}"
                             f"{' (Fortran order)' if fortran else ''}, the manifest's layout "
                             f"needs {want} {tuple(shape)}")
        size = os.fstat(fh.fileno()).st_size
        count = int(np.prod(shape))
        if size != offset + count * want.itemsize:
            raise InputError(f"{path}: {size} bytes, an array of {tuple(shape)} needs "
                             f"{offset + count * want.itemsize}")
        if count == 0:
            return np.empty(shape, dtype=want)
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    # frombuffer over the map: a plain read-only ndarray (np.memmap's subclass would slow
    # every row a query reads); the map stays open as long as the array lives
    return np.frombuffer(mm, dtype=want, count=count, offset=offset).reshape(shape)


def _dense_layout(p: Path, entry: Mapping[str, Any], archs: Mapping[str, Any], device: str) -> Any:
    if list(entry.get("metric_columns", [])) != list(METRICS):
        raise InputError(f"{p / MANIFEST}: layout of {device!r} holds the metrics "
                         f"{entry.get('metric_columns')!r}; this ecnas reads {list(METRICS)}")
    budgets = tuple(int(b) for b in entry["budgets"])
    n_a, n_b, n_r = len(archs["arch_hash"]), len(budgets), int(entry["repeats"])
    if n_a != entry.get("architectures"):
        raise InputError(f"{p / entry['archs']}: {n_a} architectures, the manifest says "
                         f"{entry.get('architectures')!r}")
    total = n_a * n_b * n_r
    metrics = _map_npy(p / entry["metrics"], "<f8", (total, len(METRICS)))
    status = np.load(p / entry["status"], allow_pickle=False, mmap_mode=None)
    if status.dtype != np.int8 or status.shape != (total,):
        raise InputError(f"{p / entry['status']}: holds {status.dtype} {status.shape}, the "
                         f"manifest's layout needs int8 ({total},)")
    present = status >= 0
    code = status & 15
    if int(code[present].max(initial=0)) >= len(SOURCES):
        raise InputError(f"{p / entry['status']}: a source code beyond {list(SOURCES)}")
    shape = (n_a, n_b, n_r)
    return Layout(device=device, budgets=budgets, repeats=n_r,
                  **arch_fields(archs),
                  metrics=metrics, present=present.reshape(shape),
                  source=np.where(present, code, 0).astype("int8").reshape(shape),
                  estimated=(present & (status & 16 != 0)).reshape(shape))


def load_bundle_layout(path: str | Path, *, device: str | None = None,
                       verify: bool = True) -> tuple[Any, dict[str, Any]]:
    """(Layout, manifest) of one device of the bundle (default: the device with most runs).

    The dense arrays are memory-mapped; the checksums of the device's files are computed in
    threads (one per chunk the manifest lists) while the architecture file is parsed, and a
    mismatch raises ``InputError`` before anything is returned. The table file's footer is
    read too (a few kB), so a corrupt ``table.parquet`` is refused here as well.
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
    dense = "metrics" in entry
    names = (entry["archs"], entry["metrics"], entry["status"]) if dense else \
        (entry["archs"], entry["runs"])
    for n in names:
        if not (p / n).is_file():
            raise InputError(f"{p / n}: missing (listed in the bundle's manifest)")
    if TABLE in manifest["files"]:
        check_table_file(p, manifest)
    wait = verify_pieces(p, manifest, names) if verify else (lambda: None)
    try:
        archs = _columns(p / names[0])
        runs = None if dense else _columns(p / names[1])
        failure = None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        failure = exc
    wait()  # a changed file is reported as such, even when it no longer parses
    if failure is not None:
        raise InputError(f"{p}: cannot read the layout of {device!r}: {failure}") from None
    try:
        if dense:
            lay = _dense_layout(p, entry, archs, device)
        else:
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


def check_table_file(p: Path, manifest: Mapping[str, Any]) -> None:
    """The bundle's ``table.parquet`` is a Parquet file with the manifest's row count and the
    contract's columns (its footer only: milliseconds). A table rewritten together with its
    checksum is refused here rather than served beside it."""

    f = p / TABLE
    try:
        meta = pq.read_metadata(f)
        names = set(meta.schema.names)
    except (OSError, ValueError) as exc:
        raise InputError(f"{f}: not a readable Parquet file ({exc}); the bundle is corrupt") \
            from None
    rows = manifest.get("row_counts", {}).get("rows") if isinstance(
        manifest.get("row_counts"), dict) else None
    if _is_int(rows) and meta.num_rows != rows:
        raise InputError(f"{f}: {meta.num_rows} rows, the manifest says {rows}; the bundle is "
                         "corrupt")
    missing = [c for c in (*ROW_KEYS, "energy_j", "source", "estimated") if c not in names]
    if missing:
        raise InputError(f"{f}: lacks the contract column(s) {', '.join(missing)}; the bundle "
                         "is corrupt")
