"""The ``[cluster]`` table of a campaign file: :class:`ClusterSpec` and its checks.

A campaign file is passed around a lab, so nothing in it may run a command that is not visibly
a command. Every value that reaches a worker job's batch script is checked here, up front,
with a one-line error naming the key: names carry no spaces or shell metacharacters (so one
value cannot become several ``#SBATCH`` options), ``python`` is a path or an executable name,
``memory``, ``walltime`` and the counts are bounded, ``extra_directives`` are one option each.
``prologue`` is the one explicit shell hook: its lines run as written, before the worker.

Job logs stay under the store's folder (:func:`job_log_directory`) unless the user names an
absolute folder on the command line (``ecnas run --log-directory``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ecnas.errors import InputError

KINDS = ("slurm", "pbs")
CLUSTER_KEYS = ("kind", "cores", "memory", "gres", "partition", "account", "walltime",
                "extra_directives", "prologue", "interface", "python", "log_directory")
#: bounds of what a job may ask for: beyond them a value is a typo, not a machine
MAX_CORES = 768                    # 2 sockets x 192 cores x 2 threads: the largest node sold
MAX_GPUS = 64
MIN_MEMORY_B = 64 * 10**6          # a Python worker does not start on less
MAX_MEMORY_B = 64 * 10**12         # 64 TB: more than any node sold today
MAX_WALLTIME_S = 365 * 86400
MAX_LINES = 64                     # entries of extra_directives / prologue
MAX_LINE = 1000                    # characters of one entry
#: one scheduler name (partition, account, gres type): what SLURM and PBS accept, and every
#: character one that shlex.quote leaves alone (no spaces, no shell metacharacters)
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+@-]{0,63}"
_NAME_RE = re.compile(_NAME)
_PARTITION_RE = re.compile(rf"{_NAME}(,{_NAME}){{0,15}}")   # SLURM: -p a,b
_GRES_RE = re.compile(r"([A-Za-z][A-Za-z0-9_.-]{0,31})(?::([A-Za-z0-9_.-]{1,32}))??"
                      r"(?::(\d{1,4}))?")
_MEMORY_RE = re.compile(r"(\d{1,9})(\.\d{1,3})?([A-Za-z]{0,3})")
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}
_WALLTIME_RE = re.compile(r"(?:(\d{1,3})-)?(\d{1,4}):([0-5]\d):([0-5]\d)")
#: one directive: one option, with at most one value (no second option hidden in it)
_DIRECTIVE_RE = re.compile(r"-{1,2}[A-Za-z][A-Za-z0-9_-]{0,63}(?:[= ][^\s'\"\\#;`$]{1,400})?")
_INTERFACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}")   # Linux IFNAMSIZ - 1
_PATH_RE = re.compile(r"[A-Za-z0-9_./+@-]{1,4096}")


@dataclass(frozen=True)
class ClusterSpec:
    """What each worker job asks the batch scheduler for. ``gres`` defaults to ``gpu:1`` on
    GPU campaigns (one run, one board per worker) and to nothing on CPU campaigns.
    ``given_log_directory`` is an absolute folder named on the command line
    (``--log-directory``), never read from a campaign file."""

    kind: str | None = None  # slurm or pbs; None: the table does not say (--cluster does)
    cores: int = 1
    memory: str = "2GB"
    gres: str | None = None
    partition: str | None = None
    account: str | None = None
    walltime: str | None = None
    extra_directives: tuple[str, ...] = ()
    prologue: tuple[str, ...] = ()
    interface: str | None = None
    python: str | None = None
    log_directory: str | None = None
    given_log_directory: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (part of :meth:`Campaign.to_dict`)."""
        d = dict(self.__dict__)
        d["extra_directives"], d["prologue"] = list(self.extra_directives), list(self.prologue)
        return d

    def with_kind(self, kind: str) -> ClusterSpec:
        """A copy with ``kind`` set (``--cluster`` over the ``[cluster]`` table); an unknown
        kind is an :class:`~ecnas.errors.InputError`."""
        if kind not in KINDS:
            raise InputError(f"--cluster {kind!r}: must be one of {', '.join(KINDS)}")
        return replace(self, kind=kind)

    def with_log_directory(self, folder: str | Path) -> ClusterSpec:
        """A copy whose job logs go to ``folder``, an absolute folder the user named on the
        command line (``--log-directory``); a relative or unsafe one is an InputError."""
        text = str(folder)
        if not Path(text).is_absolute():
            raise InputError(f"--log-directory {text!r}: must be an absolute folder")
        if not _PATH_RE.fullmatch(text) or "/../" in f"{text}/":
            raise InputError(f"--log-directory {text!r}: letters, digits and _.+@-/ only, "
                             "no '..' (the folder is written into #SBATCH/#PBS lines)")
        return replace(self, given_log_directory=text)


def parse_cluster(data: Any, error: Callable[[str, str], InputError],
                  base_dir: Path | None = None) -> ClusterSpec:
    """The ``[cluster]`` table, checked key by key (``error(key, reason)`` builds the error).
    ``base_dir`` (the campaign file's folder) is not used: a relative ``log_directory`` is
    under the store's folder (:func:`job_log_directory`)."""
    del base_dir
    if not isinstance(data, dict):
        raise error("cluster", f"must be a table, got {type(data).__name__}")
    unknown = sorted(set(data) - set(CLUSTER_KEYS))
    if unknown:
        raise error(f"cluster.{unknown[0]}", f"unknown key (allowed: {', '.join(CLUSTER_KEYS)})")
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[key] = _CHECKS[key](value, _naming(error, f"cluster.{key}"))
    return ClusterSpec(**out)


def _naming(error: Callable[[str, str], InputError], key: str) -> Callable[[str], InputError]:
    return lambda reason: error(key, reason)


def _kind(value: Any, error: Callable[[str], InputError]) -> str:
    if value not in KINDS:
        raise error(f"must be one of {', '.join(KINDS)}, got {value!r}")
    return str(value)


def _cores(value: Any, error: Callable[[str], InputError]) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CORES:
        raise error(f"must be an integer ≥ 1 and ≤ {MAX_CORES}, got {_short(value)}")
    return value


def _text(value: Any, error: Callable[[str], InputError]) -> str:
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        raise error(f"must be a one-line non-empty string, got {_short(value)}")
    return value


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[Any, Callable[[str], InputError]],
                                                             str]:
    def check(value: Any, error: Callable[[str], InputError]) -> str:
        if not regex.fullmatch(_text(value, error)):
            raise error(f"must be {what}, got {_short(value)}")
        return str(value)
    return check


def memory_bytes(value: str) -> int | None:
    """Bytes of an amount of memory such as ``"16GB"`` or ``"512MiB"`` (Dask's units), or
    None when ``value`` is not one."""
    m = _MEMORY_RE.fullmatch(value)
    if m is None or m.group(3).lower() not in _UNITS:
        return None
    return int(float(m.group(1) + (m.group(2) or "")) * _UNITS[m.group(3).lower()])


def _memory(value: Any, error: Callable[[str], InputError]) -> str:
    n = memory_bytes(_text(value, error))
    if n is None:
        raise error(f"must be an amount of memory such as \"16GB\" or \"512MiB\", got "
                    f"{_short(value)}")
    if not MIN_MEMORY_B <= n <= MAX_MEMORY_B:
        raise error(f"must be between 64MB and 64TB, got {_short(value)}")
    return str(value)


def gres_gpus(gres: str) -> int:
    """The count of a ``name[:type][:count]`` gres (1 when it names none)."""
    m = _GRES_RE.fullmatch(gres)
    return int(m.group(3)) if m and m.group(3) else 1


def _gres(value: Any, error: Callable[[str], InputError]) -> str:
    text = _text(value, error)
    m = _GRES_RE.fullmatch(text)
    if m is None:
        raise error(f"must be NAME[:TYPE][:COUNT] such as \"gpu:1\" or \"gpu:a100:2\", got "
                    f"{_short(value)}")
    if not 1 <= gres_gpus(text) <= MAX_GPUS:
        raise error(f"count must be between 1 and {MAX_GPUS}, got {_short(value)}")
    return text


def walltime_seconds(value: str) -> int | None:
    """Seconds of a ``HH:MM:SS`` or ``D-HH:MM:SS`` walltime, or None when it is not one."""
    m = _WALLTIME_RE.fullmatch(value)
    if m is None or (m.group(1) is not None and int(m.group(2)) > 23):
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _walltime(value: Any, error: Callable[[str], InputError]) -> str:
    s = walltime_seconds(_text(value, error))
    if s is None:
        raise error(f"must be HH:MM:SS or D-HH:MM:SS such as \"04:00:00\", got {_short(value)}")
    if not 0 < s <= MAX_WALLTIME_S:
        raise error(f"must be positive and at most 365 days, got {_short(value)}")
    return str(value)


def pbs_walltime(value: str) -> str:
    """A checked walltime as PBS takes it: ``HH:MM:SS`` with the days folded into hours."""
    s = walltime_seconds(value) or 0
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _lines(value: Any, error: Callable[[str], InputError]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise error(f"must be a list of strings, got {_short(value)}")
    if len(value) > MAX_LINES:
        raise error(f"at most {MAX_LINES} entries, got {len(value)}")
    for v in value:
        if any(c in v for c in "\n\r\0"):
            raise error("one line per entry (no newlines inside an entry)")
        if len(v) > MAX_LINE:
            raise error(f"entries of at most {MAX_LINE} characters, got {len(v)}")
    return tuple(value)


def _directives(value: Any, error: Callable[[str], InputError]) -> tuple[str, ...]:
    lines = _lines(value, error)
    for v in lines:
        if not _DIRECTIVE_RE.fullmatch(v):
            raise error(f"one option per entry such as \"--constraint=a100\" (no spaces "
                        f"inside its value, no quotes or ;`$#), got {_short(v)}")
    return lines


def _log_directory(value: Any, error: Callable[[str], InputError]) -> str:
    text = _text(value, error)
    if not _PATH_RE.fullmatch(text) or ".." in Path(text).parts:
        raise error(f"must be a folder under the store's folder (letters, digits and _.+@-/, "
                    f"no '..'); another folder goes on the command line: ecnas run "
                    f"--log-directory /abs/path; got {_short(value)}")
    return text


_CHECKS: dict[str, Callable[[Any, Callable[[str], InputError]], Any]] = {
    "kind": _kind, "cores": _cores, "memory": _memory, "gres": _gres,
    "partition": _pattern(_PARTITION_RE, "a partition name, or names joined by commas "
                          "(letters, digits and _.+@-)"),
    "account": _pattern(_NAME_RE, "an account name (letters, digits and _.+@-, at most 64)"),
    "walltime": _walltime, "extra_directives": _directives, "prologue": _lines,
    "interface": _pattern(_INTERFACE_RE, "a network interface name such as \"ib0\""),
    "python": _pattern(_PATH_RE, "a path or an executable name such as "
                       "\"/opt/venv/bin/python\" (letters, digits and _.+@-/)"),
    "log_directory": _log_directory,
}


def job_log_directory(spec: ClusterSpec, store_path: str | Path) -> Path:
    """Where the worker jobs' ``.out``/``.err`` logs go: the folder named on the command line,
    else the table's ``log_directory`` under the store's folder (an absolute one only when
    it lies there), else ``STORE.jobs`` beside the store. A table's folder that leads out of
    the store's folder (through ``..`` or a symbolic link) is an InputError."""
    if spec.given_log_directory:
        return Path(spec.given_log_directory)
    store = Path(store_path).absolute()
    if spec.log_directory is None:
        return store.with_name(store.name + ".jobs")
    home = store.parent.resolve()
    folder = home / spec.log_directory   # an absolute value replaces home
    if not folder.resolve().is_relative_to(home):
        raise InputError(f"cluster.log_directory {spec.log_directory!r}: job logs stay under "
                         f"the store's folder ({home}); name another folder on the command "
                         "line: ecnas run --log-directory /abs/path")
    return folder


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
