"""What ``ecnas demo`` wrote into its folder: each file's SHA-256, kept in ``.ecnas-demo.json``.

A second demo run replaces only files whose bytes are still the ones the demo wrote: a user's
``campaign.toml`` or a ``summary.md`` edited since is never overwritten, and the run refuses
naming it. The store (``store.sqlite`` and its WAL files) is checked by the store itself (a
foreign SQLite file is refused), the ``bundle`` folder by its own manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

from ecnas.errors import InputError
from ecnas.outputs import sha256_file, write_json

LEDGER = ".ecnas-demo.json"
#: entries each checked by their own rule (the store's format, the bundle's manifest)
_SELF_CHECKED = {"store.sqlite", "store.sqlite-wal", "store.sqlite-shm", "bundle", LEDGER}


def read(out_dir: Path) -> dict[str, str]:
    """{file name: SHA-256} of the files the demo wrote (empty when there is no ledger)."""
    path = out_dir / LEDGER
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeError):
        raise InputError(f"--out {out_dir}: {LEDGER} is not the demo's ledger; choose a new "
                         "or empty folder") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise InputError(f"--out {out_dir}: {LEDGER} is not the demo's ledger; choose a new "
                         "or empty folder")
    return dict(files)


def record(out_dir: Path, *paths: Path) -> None:
    """Add ``paths`` (just written by the demo, inside ``out_dir``) to the ledger."""

    files = read(out_dir)
    for p in paths:
        files[p.name] = sha256_file(p)
    write_json(out_dir / LEDGER, {"format": "ecnas-demo-ledger/1", "files": files}, indent=1)


def check_replaceable(out_dir: Path) -> None:
    """Refuse (one line, naming the file) a folder holding anything the demo did not write or
    a file changed since it did; every other entry may be replaced by a new run."""
    files = read(out_dir)
    for entry in sorted(out_dir.iterdir()):
        if entry.name in _SELF_CHECKED:
            continue
        want = files.get(entry.name)
        if want is None or entry.is_symlink() or not entry.is_file():
            raise InputError(f"--out {out_dir}: holds {entry.name}, which the demo did not "
                             "write; move it away or choose a new folder")
        if sha256_file(entry) != want:
            raise InputError(f"--out {out_dir}: {entry.name} changed since the demo wrote it; "
                             "ecnas does not replace it (move it away or choose a new folder)")
