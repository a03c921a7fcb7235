"""The campaign's results store: one SQLite file in WAL mode, written by the coordinator only.

A completed run is one row of ``runs`` holding all its table rows and its provenance, inserted
in one transaction: after a crash (kill -9 included) a run is either wholly there or absent,
never half there, and never twice (the run key is the primary key). Failed attempts go to
``failures`` with their error. ``synchronous=NORMAL`` with WAL survives a crash of the
process; a power cut may lose the last commits (they are re-run on resume), never corrupts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from ecnas.campaign.tasks import RunResult
from ecnas.errors import InputError
from ecnas.outputs import check_target, owned_by_caller
from ecnas.tables import empty_table, validate, write_table
from ecnas.tables.metadata import provenance_entry, set_metadata

FORMAT = "ecnas-campaign-store/1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY, arch_hash TEXT NOT NULL, budget_epochs INTEGER NOT NULL,
    repeat INTEGER NOT NULL, device TEXT NOT NULL, energy_j REAL NOT NULL,
    estimated INTEGER NOT NULL, rows_json TEXT NOT NULL, provenance_json TEXT NOT NULL,
    finished REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_key TEXT NOT NULL, attempt INTEGER NOT NULL,
    error TEXT NOT NULL, host TEXT, at REAL NOT NULL);
"""


#: the tables of an ecnas store (sqlite_sequence: SQLite's own, for AUTOINCREMENT)
_TABLES = {"meta", "runs", "failures", "sqlite_sequence"}


def _check_writable(path: Path) -> None:
    """A store written to needs a writable file and folder (WAL files live beside it)."""
    if path.is_file() and path.stat().st_nlink > 1:
        # SQLite names its WAL after the name it was opened by: two names of one store give
        # two WALs, two coordinators and a corrupt store (sqlite.org/howtocorrupt.html)
        raise InputError(f"{path}: the store has {path.stat().st_nlink} hard links; use the "
                         "store by one name (a symbolic link is fine)")
    if path.exists() and not path.stat().st_mode & 0o222:
        raise InputError(f"{path}: the store is read-only; 'ecnas table' reads it as it is, "
                         "'ecnas run' needs a writable copy")
    # a store is written in place, never replaced: a link to it (a store kept on another disk)
    # is checked as the file it names
    check_target(path.resolve() if path.is_symlink() else path, force=True, option="--store",
                 owner=owned_by_caller)  # _open refuses a file that is not a store


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if not readonly:
        return sqlite3.connect(path, timeout=30.0, isolation_level=None)
    folder_frozen = not os.access(path.parent, os.W_OK) or not path.parent.stat().st_mode & 0o222
    if not folder_frozen and os.access(path, os.W_OK) and path.stat().st_mode & 0o222:
        # A read-write connection that refuses writes: as the last connection to close it
        # checkpoints and deletes the -wal/-shm files it needed, where a mode=ro one would
        # leave them beside the store (a running `ecnas run` keeps them: it is still open).
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA query_only=1")
        return db
    # a store that cannot get WAL files (a read-only file or folder: an archive): read it
    # immutable, which creates no file beside it
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size:
        # immutable reads ignore the WAL: runs committed there would be missing silently
        where = "folder" if folder_frozen else "file"
        raise InputError(f"{path}: the store's {where} is read-only and {wal.name} holds "
                         "changes not yet in the store; copy the folder somewhere writable")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)


def _check_foreign(db: sqlite3.Connection, path: Path) -> None:
    """Refuse an SQLite database ecnas did not make (its tables are never added to one)."""
    tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return  # a new, empty file
    fmt = None
    if "meta" in tables:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            fmt = row[0] if row else None
        except sqlite3.DatabaseError:
            fmt = "?"
    if fmt == FORMAT:
        return
    if fmt is None and tables <= _TABLES:
        # ecnas's schema, never bound to a campaign (a run stopped before its first commit)
        try:
            empty = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
        except sqlite3.DatabaseError:
            empty = False
        if empty:
            return
    raise InputError(f"{path}: not a campaign store (an SQLite database ecnas did not make: "
                     f"tables {', '.join(sorted(tables))}); ecnas leaves it as it is")


@dataclass(frozen=True)
class Failure:
    """One failed attempt of a run as the store keeps it: the run's key, the attempt number, the
    error, the host (None if unknown) and its Unix time."""

    run_key: str
    attempt: int
    error: str
    host: str | None
    at: float


class ResultsStore:
    """Open (or create) a store. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, *, create: bool = False, readonly: bool = False
                 ) -> None:
        self.path = Path(path)
        self._lock: Any = None  # the open STORE.lock while this object coordinates
        if not create and not self.path.is_file():
            raise InputError(f"{self.path}: no campaign store here")
        if create and not self.path.parent.is_dir():
            raise InputError(f"{self.path}: folder {self.path.parent} does not exist")
        if not readonly:
            _check_writable(self.path)
        try:
            self._db = _connect(self.path, readonly)
            _check_foreign(self._db, self.path)
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
        except sqlite3.OperationalError as exc:  # I/O, a full disk, a locked or read-only file
            raise InputError(f"{self.path}: cannot use the campaign store ({exc})") from None
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path}: not a campaign store ({exc})") from None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the store's lock and close its database."""
        self._db.close()
        self.release()

    # -- one coordinator at a time -------------------------------------------------------------
    def claim(self) -> None:
        """Become the store's only coordinator, or raise :class:`InputError` naming the one that
        is. An OS lock (``flock``) on the store file itself, so a hard link or a symbolic link
        to the same store meets the same lock, and no file beside the store is created (or
        truncated: ``--store Pipfile`` must not touch ``Pipfile.lock``). SQLite's own locks are
        POSIX record locks, independent of ``flock`` on Linux. The kernel drops the lock when
        the process dies (kill -9 included), so a crash never leaves a stale lock behind.
        The holder (pid and host) is kept in the store's ``meta`` to name it. No-op without
        ``fcntl``."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks, no guard
            return
        if self._lock is not None:
            return
        fh = open(self.path, "rb")  # noqa: SIM115 - held open while this object coordinates
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            holder = self.meta().get("coordinator") or "another process"
            raise InputError(f"{self.path}: another coordinator is running on this store "
                             f"({holder}); wait for it, or use another --store") from None
        self._lock = fh
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('coordinator', ?)",
                             (f"pid {os.getpid()} on {socket.gethostname()}",))

    def release(self) -> None:
        """Give up :meth:`claim` (closing the file drops the lock)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- campaign identity ---------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        """The store's metadata (campaign hash, versions …) as text keys and values."""
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def bind(self, campaign_hash: str, campaign_json: dict[str, Any], *,
             allow_other: bool = False) -> None:
        """Tie the store to a campaign; refuse one that belongs to another campaign."""
        meta = self.meta()
        have = meta.get("campaign_hash")
        if have is not None and have != campaign_hash and not allow_other:
            raise InputError(
                f"{self.path}: store belongs to campaign {have} "
                f"({json.loads(meta.get('campaign', '{}')).get('name', '?')}), not {campaign_hash}; "
                "use another --store (or --allow-other-campaign / allow_other_campaign=True "
                "to add to it)")
        with self._transaction():
            for key, value in (("format", FORMAT), ("campaign_hash", campaign_hash),
                               ("campaign", json.dumps(campaign_json))):
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)",
                             (str(time.time()),))

    # -- writing -------------------------------------------------------------------------------
    def _transaction(self) -> Any:
        return _Transaction(self._db)

    def commit_run(self, run_key: str, rows: list[dict[str, Any]],
                   provenance: dict[str, Any]) -> bool:
        """Store a completed run atomically; False when it was already there (kept as is)."""
        if not rows:
            raise ValueError(f"run {run_key}: no rows to store")
        last = rows[-1]
        arch, budget, repeat = run_key.split("/")
        with self._transaction():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_key, arch, int(budget), int(repeat), str(last.get("device", "")),
                 float(last.get("energy_j", 0.0)),
                 int(any(bool(r.get("estimated")) for r in rows)),
                 json.dumps(rows, default=_json_default), json.dumps(provenance, default=str),
                 time.time()))
        return cur.rowcount == 1

    def commit_result(self, result: RunResult) -> bool:
        """Keep what came back of one attempt: an ok result's rows and provenance as a
        completed run (:meth:`commit_run`; False when it was already there), a failed one as a
        failure (:meth:`record_failure`; False)."""
        if result.ok:
            return self.commit_run(result.run_key, list(result.rows), dict(result.provenance))
        self.record_failure(result.run_key, result.attempt, str(result.error), result.host)
        return False

    def record_failure(self, run_key: str, attempt: int, error: str,
                       host: str | None = None) -> None:
        """Keep a failed attempt of a run (its error and host); the run stays to do."""
        with self._transaction():
            self._db.execute("INSERT INTO failures (run_key, attempt, error, host, at) "
                             "VALUES (?, ?, ?, ?, ?)", (run_key, attempt, error, host, time.time()))

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the store file and empty it (``PRAGMA
        wal_checkpoint(TRUNCATE)``): the file alone then holds every committed run, for a copy
        taken while this store is open or after its process was killed."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # -- reading -------------------------------------------------------------------------------
    def done_keys(self) -> set[str]:
        """The keys of the runs stored complete."""
        return {k for (k,) in self._db.execute("SELECT run_key FROM runs")}

    def count(self) -> int:
        """How many runs are stored complete."""
        return int(self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def failures(self) -> list[Failure]:
        """Every failed attempt kept, oldest first."""
        return [Failure(*r) for r in self._db.execute(
            "SELECT run_key, attempt, error, host, at FROM failures ORDER BY id")]

    def energy(self) -> tuple[float, float]:
        """(measured, estimated) joules of the stored runs, by each run's final checkpoint."""
        m, e = self._db.execute(
            "SELECT COALESCE(SUM(CASE WHEN estimated=0 THEN energy_j END), 0), "
            "COALESCE(SUM(CASE WHEN estimated=1 THEN energy_j END), 0) FROM runs").fetchone()
        return float(m), float(e)

    def provenance(self) -> dict[str, dict[str, Any]]:
        """Per run key, the provenance recorded with its rows."""
        return {k: self._decoded(p, dict, f"provenance of run {k}") for k, p in
                self._db.execute("SELECT run_key, provenance_json FROM runs ORDER BY run_key")}

    def rows(self) -> list[dict[str, Any]]:
        """Every stored run's energy-table rows, as dicts, runs ordered by key."""
        out: list[dict[str, Any]] = []
        for key, text in self._db.execute("SELECT run_key, rows_json FROM runs ORDER BY run_key"):
            rows = self._decoded(text, list, f"rows of run {key}")
            if not all(isinstance(r, dict) for r in rows):
                raise InputError(f"{self.path}: rows of run {key} are not JSON objects")
            out += rows
        return out

    def campaign(self) -> dict[str, Any]:
        """The campaign this store was made for, as stored ({} before the first run)."""
        return self._decoded(self.meta().get("campaign", "{}"), dict, "the campaign")

    def _decoded(self, text: Any, kind: type, what: str) -> Any:
        # the store is a file: what it holds is checked like any input, one line if broken
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            raise InputError(f"{self.path}: {what} is not JSON (a damaged store?)") from None
        if not isinstance(value, kind):
            raise InputError(f"{self.path}: {what} is not a JSON {kind.__name__}")
        return value

    def table(self) -> Any:
        """All completed runs as a validated energy table, with the campaign's metadata."""
        rows = self.rows()
        df = validate(pd.DataFrame(rows)) if rows else empty_table()
        prov = self.provenance()
        # the same reason differs only by process id from run to run: list it once
        reasons = sorted({re.sub(r"process \d+", "process <pid>", str(r))
                          for p in prov.values() for r in p.get("estimate_reasons", [])})
        meters = sorted({str(m) for p in prov.values() for m in p.get("meters", [])})
        meta = self.meta()
        shared = sorted(k for k, p in prov.items() if p.get("cpu_share", 1.0) < 1.0)
        metadata: dict[str, Any] = {
            "producer": "ecnas campaign",
            "campaign_hash": meta.get("campaign_hash"),
            "campaign": self.campaign(),
            "meters": meters,
            "provenance": [provenance_entry("ecnas campaign", str(self.path),
                                            runs=len(prov))],
            "runs": prov,
            "energy_note": "energy_j is cumulative over wall time, evaluations included",
        }
        if reasons:
            metadata["estimate_reasons"] = reasons
        if shared:
            metadata["cpu_share_note"] = (
                "cpu_energy_j and dram_energy_j of runs that shared a CPU socket were split by "
                f"process CPU time (column cpu_share); {len(shared)} run(s) affected")
        return set_metadata(df, metadata)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not exc_type:
            self._db.execute("COMMIT")
            return
        # SQLite may have rolled back already (a full disk, an I/O error): the error that
        # caused it is the one to report, not "no transaction is active"
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def export_table(store_path: str | Path, out_path: str | Path) -> Path:
    """Write the store's table (Parquet or CSV by suffix) with its metadata."""
    with ResultsStore(store_path, readonly=True) as store:
        return write_table(store.table(), out_path)
