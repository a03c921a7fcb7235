"""One way to write an output: checked first, written atomically, modes from the umask.

Every file or folder ecnas writes goes through here (tables, TFRecords, bundles, model files,
measure reports, contribution archives, plots, the profile cache). The rules (docs/outputs.md):

* **Checked before any work starts.** :func:`check_target` refuses, with one line, a target
  whose folder is missing or not writable, a target that is one of the command's inputs, ``.``
  or another folder where a file is meant, a read-only file, and an existing output unless
  ``force`` — so an hour-long command never fails at its very end because of its ``--out``.
* **Atomic.** Data goes to a temp file (or folder) beside the target and is renamed over it
  only once complete: a full disk, a file-size limit or a crash leaves the old output whole
  and no half-written one; the temp is removed.
* **Modes follow the umask**, like ``cp`` and ``tar``: files ``0666 & ~umask``, folders
  ``0777 & ~umask`` (``mkstemp``/``mkdtemp`` alone would give 0600/0700).
* **Only what ecnas wrote is replaced.** A single file is replaced only with ``force`` and
  only when ecnas wrote it and it is unchanged since: every file written here is entered in
  the *written ledger* (its real path and SHA-256, one small file per output under
  ``$ECNAS_STATE_DIR``, by default ``$XDG_STATE_HOME/ecnas/written`` or
  ``~/.local/state/ecnas/written``), which ``force`` consults. Writers whose files carry their
  own mark (a campaign store, a calibration run, the demo's folder) pass their own ``owner``
  check instead. A folder output (a bundle) is replaced only when everything in it is listed
  by its own manifest: a foreign file inside it makes ecnas refuse, naming the file, so
  nothing a user added is ever deleted.

This module sits at the bottom of the package: it imports only :mod:`ecnas.errors` (which
imports nothing), so every room may use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import socket
import stat
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ecnas.errors import InputError

PathLike = str | os.PathLike[str]


# ------------------------------------------------------------------ modes
def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (threads may run)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic set-and-restore
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of a new file under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """The mode of a new folder under the current umask (``0o777 & ~umask``)."""
    return 0o777 & ~current_umask()


# ------------------------------------------------------------------ JSON
def json_safe(value: Any) -> Any:
    """``value`` with NaN/±inf as ``None`` (JSON has neither), numpy scalars as numbers,
    tuples as lists and keys as strings: what every JSON consumer can parse."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars and 0-d arrays
        try:
            return json_safe(value.item())
        except (TypeError, ValueError):
            return str(value)
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON (``allow_nan=False``) of :func:`json_safe` ``(value)``."""
    kwargs.setdefault("default", str)
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)



# ------------------------------------------------------------------ the written ledger
STATE_ENV = "ECNAS_STATE_DIR"


def written_dir() -> Path:
    """Where the written ledger lives: ``$ECNAS_STATE_DIR``, else ``$XDG_STATE_HOME/ecnas``,
    else ``~/.local/state/ecnas`` (XDG's place for state that outlives a run)."""
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit) / "written"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return Path(base) / "ecnas" / "written"


def sha256_file(path: PathLike) -> str:
    """The hex SHA-256 of a file's bytes (read in 16 MiB chunks; hashlib releases the GIL on
    them, so other threads run meanwhile)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()


def _entry_path(path: Path) -> Path:
    # one file per output, named by the output's real path: no lock, no shared file to corrupt
    key = hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:40]
    return written_dir() / key


#: a ledger entry is ~200 bytes of JSON: anything larger is not one of ecnas's entries
LEDGER_ENTRY_MAX = 64 << 10
#: ledger folders a warning was printed for (once per folder and process)
_WARNED: set[str] = set()


def ledger_problem() -> str | None:
    """Why the written ledger cannot be written (``$ECNAS_STATE_DIR`` a file, ``/dev/null``,
    a read-only folder), or None when it can as far as can be told without writing."""
    folder = written_dir()
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{_describe(probe)} is not a folder"
    if not _writable(probe):
        return f"{_describe(probe)} is not writable"
    return None


def _warn_unrecorded(p: Path, reason: str) -> None:
    folder = os.fsdecode(written_dir())
    if folder in _WARNED:
        return
    _WARNED.add(folder)
    # at write time, not an hour later at a refused --force: the output is written all the
    # same, only its later replacement is refused
    print(f"ecnas: warning: {_describe(p)} is written but not recorded in the written ledger "
          f"{folder} ({reason}; set {STATE_ENV} to a writable folder): --force will refuse "
          "to replace it later", file=sys.stderr, flush=True)


def record_written(path: PathLike) -> bool:
    """Enter ``path`` (a regular file ecnas has just written) in the written ledger; False
    when the ledger cannot be written (``$ECNAS_STATE_DIR`` a file, ``/dev/null``, a
    read-only home), said once on stderr: ``force`` then refuses to replace the file later,
    naming the ledger, which is the safe side."""
    p = Path(path)
    problem = ledger_problem()  # a folder without write bits is read-only, even to root
    if problem is not None:
        _warn_unrecorded(p, problem)
        return False
    try:
        entry = {"path": os.fsdecode(os.path.realpath(p)), "sha256": sha256_file(p),
                 "bytes": p.stat().st_size}
        folder = written_dir()
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".entry-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entry, fh)
            os.replace(tmp, _entry_path(p))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except (OSError, ValueError) as exc:
        _warn_unrecorded(p, ledger_problem() or getattr(exc, "strerror", None) or str(exc))
        return False
    return True


def _read_entry(path: Path) -> Any:
    """A ledger entry's JSON, or None: opened without following a link and without blocking
    (a FIFO put in its place), read only when a regular file of at most LEDGER_ENTRY_MAX
    bytes (not /dev/zero, not a huge file)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > LEDGER_ENTRY_MAX:
            return None
        data = os.read(fd, LEDGER_ENTRY_MAX + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > LEDGER_ENTRY_MAX:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def wrote(path: PathLike) -> bool:
    """Whether ecnas wrote ``path`` (a regular file) and it still holds exactly those bytes."""
    p = Path(path)
    entry = _read_entry(_entry_path(p))
    try:
        return (isinstance(entry, dict) and entry.get("path") == os.fsdecode(os.path.realpath(p))
                and entry.get("bytes") == p.stat().st_size
                and entry.get("sha256") == sha256_file(p))
    except (OSError, ValueError):
        return False


def owned_by_caller(_path: Path) -> bool:
    """``check_target``'s ``owner`` for a caller that has already judged the file by its own
    mark (a store's schema, the demo's ledger, a table's metadata) before asking."""
    return True


# ------------------------------------------------------------------ checks
def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _writable(path: Path) -> bool:
    """Writable by this process, and not marked read-only: a file or folder without any write
    bit is read-only to ecnas even for root (who may write anything), like ``rm -i`` asks."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    access = os.W_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)
    return bool(mode & 0o222) and os.access(path, access)


def is_writable(path: PathLike) -> bool:
    """Whether ecnas may write into ``path`` (a folder) or over it (a file): by its mode bits
    as well as ``access()``, which says yes to root for a folder of mode 555."""
    return _writable(Path(path))


def _describe(path: Path) -> str:
    # as the OS gave it: the CLI prints a byte that is not UTF-8 as \xNN (ecnas.cli._boundary)
    return os.fsdecode(path)


def check_target(path: PathLike, *, inputs: Iterable[PathLike] = (), force: bool = False,
                 folder: bool = False, owned: Callable[[Path], Iterable[str]] | None = None,
                 option: str = "--out", companions: Iterable[PathLike] = (),
                 owner: Callable[[Path], bool] = wrote) -> Path:
    """Check an output target before any work starts; return it as a Path.

    ``folder``: the output is a folder (a bundle) rather than a file. ``owned(path)`` names
    the entries of an existing output folder that ecnas wrote (its manifest's files); it
    raises ``InputError`` when the folder is not an ecnas output. ``companions`` are files
    written beside the target (a CSV table's metadata sidecar), checked the same way.
    ``owner(path)`` says whether an existing single file is ecnas's own output, the only kind
    ``force`` replaces (default: :func:`wrote`, the written ledger).
    Raises ``InputError`` (one line, naming the target) on every refusal.
    """
    p = Path(path)
    name = _describe(p)
    if not os.fspath(p) or p.name in ("", ".", ".."):
        raise InputError(f"{option} {name}: name a {'folder' if folder else 'file'} to write, "
                         "not the current or parent folder")
    parent = p.parent
    if not parent.is_dir():
        raise InputError(f"{option} {name}: folder {_describe(parent)} does not exist")
    if not _writable(parent):
        raise InputError(f"{option} {name}: folder {_describe(parent)} is not writable")
    for src in inputs:
        s = Path(src)
        if _same(p, s) or (p.exists() and s.exists() and p.resolve() == s.resolve()):
            raise InputError(f"{option} {name}: is the command's input {_describe(s)}; "
                             "write the output elsewhere")
        if folder and s.exists() and p.exists() and p.resolve() in s.resolve().parents:
            raise InputError(f"{option} {name}: holds the command's input {_describe(s)}; "
                             "write the output elsewhere")
    if p.is_symlink():
        # a rename would replace the link, or --force write wherever it points (/dev/stdout)
        raise InputError(f"{option} {name}: is a symbolic link; ecnas does not write through "
                         "or over one (name the file itself)")
    for c in companions:  # first: a link beside the target is the graver fault to name
        cp = Path(c)
        if cp.exists() or cp.is_symlink():
            _check_existing_file(cp, _describe(cp), force=force, option=option, owner=owner)
    if p.exists():
        if folder:
            _check_existing_folder(p, name, force=force, owned=owned, option=option)
        else:
            _check_existing_file(p, name, force=force, option=option, owner=owner)
    return p


def _check_existing_file(p: Path, name: str, *, force: bool, option: str,
                         owner: Callable[[Path], bool]) -> None:
    if p.is_symlink():  # a companion (a CSV's sidecar) as much as the target itself
        raise InputError(f"{option} {name}: is a symbolic link; ecnas does not write through "
                         "or over one (name the file itself)")
    if p.is_dir():
        raise InputError(f"{option} {name}: is a folder; name a file")
    if not p.is_file():
        raise InputError(f"{option} {name}: exists and is not a regular file")
    if not _writable(p):
        raise InputError(f"{option} {name}: is read-only; ecnas does not replace it")
    if not force:
        raise InputError(f"{option} {name}: exists (use --force to replace it)")
    if not owner(p):
        ledger = ""
        if owner is wrote:  # say where ecnas looked: a ledger that cannot be written is why
            problem = ledger_problem()
            ledger = (f" (not in the written ledger {_describe(written_dir())}"
                      + (f", which cannot be written: {problem}; set {STATE_ENV}" if problem
                         else "") + ")")
        raise InputError(f"{option} {name}: exists and ecnas did not write it (or it changed "
                         f"since){ledger}; --force replaces only ecnas's own outputs: move it "
                         "away or name another file")


def _check_existing_folder(p: Path, name: str, *, force: bool,
                           owned: Callable[[Path], Iterable[str]] | None, option: str) -> None:
    if not p.is_dir():
        raise InputError(f"{option} {name}: exists and is not a folder")
    entries = sorted(e.name for e in p.iterdir())
    if not entries:
        return  # an empty folder is free to use
    if owned is None:
        raise InputError(f"{option} {name}: folder exists and is not empty; choose a new folder")
    mine = set(owned(p))  # raises InputError when the folder is not ecnas's
    foreign = [e for e in entries if e not in mine or not (p / e).is_file()
               or (p / e).is_symlink()]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise InputError(f"{option} {name}: holds {_describe(Path(foreign[0]))}, which ecnas "
                         f"did not write{more}"
                         "; move it away or choose another folder (ecnas never deletes files "
                         "it did not write)")
    if not _writable(p):
        raise InputError(f"{option} {name}: folder is not writable")
    if not force:
        raise InputError(f"{option} {name}: an output exists there (use --force to replace it)")


# ------------------------------------------------------------------ writes
def _refuse_readonly(p: Path) -> None:
    if p.is_symlink():
        raise InputError(f"{_describe(p)}: is a symbolic link; ecnas does not write over one")
    if p.is_dir():
        raise InputError(f"{_describe(p)}: is a folder; cannot write a file there")
    if p.exists() and not _writable(p):
        raise InputError(f"{_describe(p)}: is read-only; ecnas does not replace it")


def _safe_name(p: Path) -> str:
    # plain characters: writers that encode file names as UTF-8 (pyarrow) must not fail on a
    # target name that is not
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_"
                   for c in p.name)[:64]


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'replace')):08x}"


def _temp_prefix(p: Path) -> str:
    # hidden, and naming the host and process that own it: a temp left by a process killed
    # outright (SIGKILL, a power cut) is recognised and removed by the next write there
    return f".{_safe_name(p)}.ecnas-{_host_tag()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def sweep_stale_temps(path: PathLike) -> list[Path]:
    """Remove temps a killed ecnas left beside ``path``: only names :func:`atomic_path` and
    :func:`atomic_folder` make, of this host, whose process is gone. Returns what it removed."""
    p = Path(path)
    head = f".{_safe_name(p)}.ecnas-{_host_tag()}-"
    removed: list[Path] = []
    try:
        entries = list(os.scandir(p.parent))
    except OSError:
        return removed

    for e in entries:
        if not (e.name.startswith(head) and e.name.endswith(".tmp")):
            continue
        pid_text = e.name[len(head):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        try:
            if e.name.endswith(".old.tmp") and not os.path.lexists(p):
                os.replace(e.path, p)  # killed mid-swap: the previous output comes back
            elif e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def atomic_path(path: PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside ``path``; on a clean exit it becomes ``path`` (mode from the
    umask), on an error it is removed and ``path`` is left as it was.

    For writers that want a path (pyarrow, numpy, tarfile); see :func:`atomic_open` for a
    file object. The folder must exist; a read-only target or a folder is refused.
    """
    p = Path(path)
    if not p.parent.is_dir():
        raise InputError(f"{_describe(p)}: folder {_describe(p.parent)} does not exist")
    _refuse_readonly(p)
    sweep_stale_temps(p)

    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(p), suffix=suffix, dir=p.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, p)
        record_written(p)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[Any]:
    """``open`` for writing, atomically: the data appears at ``path`` only when complete."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (and enter it in the written ledger); returns the
    path."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` as UTF-8, atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, value: Any, **kwargs: Any) -> Path:
    """Strict JSON (NaN/inf as null) written atomically, with a final newline."""
    return write_text(path, dumps_json(value, **kwargs) + "\n")


@contextlib.contextmanager
def atomic_folder(path: PathLike, *, owned: Callable[[Path], Iterable[str]] | None = None
                  ) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on a clean exit it replaces ``path``.

    An existing ``path`` is replaced only when it is empty or everything in it is named by
    ``owned(path)`` (checked again here, just before the swap): files ecnas did not write are
    never deleted. Folder and files get their modes from the umask.
    """
    p = Path(path)
    if not p.parent.is_dir():
        raise InputError(f"{_describe(p)}: folder {_describe(p.parent)} does not exist")
    if p.is_symlink():
        raise InputError(f"{_describe(p)}: is a symbolic link; ecnas does not write over one")
    sweep_stale_temps(p)

    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(p), suffix=".tmp", dir=p.parent))
    try:
        yield tmp
        fmode = file_mode()
        for f in tmp.rglob("*"):
            os.chmod(f, folder_mode() if f.is_dir() else fmode)
        os.chmod(tmp, folder_mode())
        if p.exists():
            # same rule as check_target, as the folder may have changed during the work
            _check_existing_folder(p, _describe(p), force=True, owned=owned, option="output")
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(p), suffix=".old.tmp",
                                        dir=p.parent))
            os.rmdir(old)  # a free name of the sweepable kind: a kill here leaves no debris
            os.replace(p, old)
            try:
                os.replace(tmp, p)
            except OSError:
                os.replace(old, p)
                raise
            shutil.rmtree(old)  # only ecnas's own files are in it (checked above)
        else:
            os.replace(tmp, p)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

