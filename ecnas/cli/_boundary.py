"""The CLI's one error boundary: expected failures become one line and an exit status,
a true bug keeps its traceback and asks to be reported.

Expected (exit 2 unless the error says otherwise): every ``EcnasError``; every ``OSError``
(a full disk, a file-size limit, a read-only file system, a file that cannot be executed,
permissions, ...); ``RecursionError`` (input nested deeper than a parser follows);
``UnicodeError`` (a file name or text that is not valid in its encoding); ``MemoryError``;
SQLite's ``DatabaseError`` (a file that is not a usable database). Anything else is a bug in
ecnas: its traceback is printed, then a line asking to report it, and the exit status is 70
(``EX_SOFTWARE``).
"""

from __future__ import annotations

import codecs
import contextlib
import errno as _errno
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from ecnas.errors import EcnasError

#: exit status of a bug in ecnas (sysexits.h EX_SOFTWARE)
BUG_STATUS = 70
REPORT = ("this is a bug in ecnas: please report it (CONTRIBUTING.md) with the command line "
          "and the traceback above")


def _escape(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a byte of a file name that was not UTF-8 (decoded by Python as a
    lone surrogate U+DC80..U+DCFF) is written as ``\\xNN``, the byte it was; anything else
    the stream cannot encode as ``\\uNNNN``."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text = exc.object[exc.start:exc.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF
                   else c.encode("ascii", "backslashreplace").decode("ascii")
                   for c in text), exc.end


ESCAPE = "ecnas-escape"
codecs.register_error(ESCAPE, _escape)


def _name(value: Any) -> str:
    """A file name or message printable on any terminal (undecodable bytes escaped)."""
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    return str(value).encode("utf-8", ESCAPE).decode("utf-8")


def _oserror_line(exc: OSError) -> str:
    where = f" {_name(exc.filename)}:" if exc.filename else ""
    if exc.filename2:
        where = f" {_name(exc.filename)} -> {_name(exc.filename2)}:"
    code = _errno.errorcode.get(exc.errno or -1)
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = {_errno.ENOSPC: " (the disk is full; nothing was replaced)",
            _errno.EFBIG: " (the file-size limit, ulimit -f, was reached; nothing was replaced)",
            _errno.EROFS: " (the file system is read-only)",
            _errno.EDQUOT: " (the disk quota is used up; nothing was replaced)"}.get(
                exc.errno or -1, "")
    return f"{where} {reason}{f' [{code}]' if code else ''}{hint}"


def expected_failure(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit status) for an expected failure, None for a bug."""
    if isinstance(exc, EcnasError):
        return f" {_name(exc)}", exc.exit_status
    if isinstance(exc, OSError):
        return _oserror_line(exc), 2
    if isinstance(exc, RecursionError):
        return " input nested too deeply to read (a hostile or broken file?)", 2
    if isinstance(exc, UnicodeError):
        return f" text or file name not valid in its encoding ({_name(exc)})", 2
    if isinstance(exc, MemoryError):
        return " out of memory", 2
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(exc, sqlite3.OperationalError):
        return (f" SQLite could not read or write the database ({_name(exc)}; a full disk, "
                "a file-size limit or a read-only file?)"), 2
    if sqlite3 is not None and isinstance(exc, sqlite3.DatabaseError):
        return f" not a usable SQLite database ({_name(exc)})", 2
    return None


class Terminated(BaseException):
    """SIGTERM or SIGHUP reached ecnas: raised so that ``finally`` blocks run and every temp
    file an unfinished write made is removed (the default action would kill the process
    where it stands)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _termination_raises() -> Any:
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            # only where nobody chose a handler (an embedding program keeps its own)
            if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
                previous[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_guarded(command: str, func: Callable[[Any], Any], args: Any) -> int:
    """Run ``func(args)`` and turn what it raises into one stderr line and an exit status."""
    for stream in (sys.stdout, sys.stderr):
        # a file name that is not valid UTF-8 is printed escaped, never a crash mid-output
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors=ESCAPE)
    try:
        with _termination_raises():
            status = func(args)
    except KeyboardInterrupt:
        print(f"ecnas {command}: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"ecnas {command}: terminated by signal {exc.signum}; unfinished outputs "
              "removed", file=sys.stderr)
        return 128 + exc.signum
    except Exception as exc:  # the one boundary: every exception is sorted here
        known = expected_failure(exc)
        if known is None:
            traceback.print_exc()
            print(f"ecnas {command}: internal error ({type(exc).__name__}): {REPORT}",
                  file=sys.stderr)
            return BUG_STATUS
        message, status = known
        print(f"ecnas {command}: error:{message}".rstrip(), file=sys.stderr)
        return status
    return int(status or 0)
