"""Meter an external command (what ``ecnas measure -- CMD …`` runs).

The command's exit status is passed through (128 + N when a signal N killed it, as shells do),
signals sent to us (INT, TERM, HUP, QUIT, USR1, USR2) are forwarded to it, and the report is
produced (and written, when a path is given) whether the command succeeded or not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecnas.errors import InputError
from ecnas.meters.base import Meter
from ecnas.monitor import distributed
from ecnas.monitor.distributed import JobReport, Topology
from ecnas.monitor.monitor import Monitor
from ecnas.monitor.report import EnergyReport
from ecnas.outputs import check_target, write_text

FORWARDED = tuple(getattr(signal, n) for n in
                  ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
                  if hasattr(signal, n))


@dataclass(frozen=True)
class CommandResult:
    """The metered command's exit status and the energy report of its run."""

    command: tuple[str, ...]
    returncode: int  # shell convention: 128 + N when killed by signal N
    report: EnergyReport
    job: JobReport | None = None  # every node's energy, with gather=True


def exit_status(returncode: int) -> int:
    """The shell's exit status for a subprocess return code: ``128 + N`` for a process killed by
    signal N (return code ``-N``), the code itself otherwise."""
    return 128 - returncode if returncode < 0 else returncode


def run_command(command: Sequence[str], *, meters: Sequence[Meter] | None = None,
                name: str | None = None, out: str | os.PathLike[str] | None = None,
                idle_subtract: bool = False, profile_paths: Sequence[str | Path] = (),
                gather: bool = False, topo: Topology | None = None,
                rendezvous: str | None = None, timeout: float | None = None
                ) -> CommandResult:
    """Run ``command`` under the meters (the whole machine: a launcher such as ``torchrun``
    runs its ranks below it); return its exit status and energy report.

    ``gather``: this is one of several such wrappers, one per node (``topo``: its place, else
    ``srun``'s tasks), and the report's ``job`` holds every node's energy, brought together
    through ``rendezvous`` (docs/distributed.md) within ``timeout`` seconds."""
    if gather:
        topo = topo if topo is not None else distributed.topology()
        if topo is None:
            raise InputError("--gather: this is not one of several tasks: give --nodes and "
                             "--node-rank, or start one 'ecnas measure' per node with srun")
    cmd = tuple(command)
    if not cmd:
        raise InputError("no command given: use 'ecnas measure -- CMD ARGS…'")
    label = name or os.path.basename(cmd[0])
    if out is not None:
        # the target is checked before the command runs (it may run for hours), not after
        check_target(out, force=True)
    before = _identity(out)
    job = None
    with Monitor(meters, profile_paths=profile_paths, idle_subtract=idle_subtract,
                 sync_cuda=False, strict_profile_path=True, placed=False) as monitor:
        monitor.begin(label)
        try:
            proc = subprocess.Popen(cmd)
        except FileNotFoundError as exc:
            monitor.end(label)
            raise CommandNotRun(f"command not found: {cmd[0]}", 127) from exc
        except PermissionError as exc:
            monitor.end(label)
            raise CommandNotRun(f"command not executable: {cmd[0]}", 126) from exc
        except OSError as exc:  # ENOEXEC (a script without '#!'), E2BIG, ELOOP, ...
            monitor.end(label)
            hint = " (a script needs a '#!' line)" if exc.errno == errno.ENOEXEC else ""
            raise CommandNotRun(f"cannot run {cmd[0]}: {exc.strerror or exc}{hint}", 126) from exc
        previous: dict[int, Any] = {}  # what signal.signal returned: a handler, SIG_DFL, None

        def forward(signum: int, _frame: object) -> None:
            # ProcessLookupError: the command has already exited; nothing left to signal.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        if threading.current_thread() is threading.main_thread():  # handlers: main only
            tty_sigint = _terminal_foreground()
            for sig in FORWARDED:
                # Ctrl-C at a terminal already reaches the command (same process group);
                # forwarding it too would interrupt the command twice.
                handler = signal.SIG_IGN if sig == signal.SIGINT and tty_sigint else forward
                previous[sig] = signal.signal(sig, handler)
        try:
            returncode = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            report = monitor.end(label)
        if gather:
            # while the meters are open: their GPUs' UUIDs tell the boards apart
            job = distributed.gather(report, monitor=monitor, topo=topo,
                                     rendezvous=rendezvous, timeout=timeout)
    extra: dict[str, object] = {"command": list(cmd), "returncode": exit_status(returncode)}
    if job is not None:
        extra["job"] = job.to_dict()
    report = dataclasses.replace(report, extra=extra)
    result = CommandResult(cmd, exit_status(returncode), report, job)
    if out is not None:
        try:
            if _identity(out) != before:
                # the command made or changed the file meanwhile: it is the command's now
                raise InputError(f"--out {os.fsdecode(out)}: the command wrote this file while "
                                 "it ran; ecnas does not replace it")
            write_report(report, out)
        except InputError as exc:
            # the command has run: its report and exit status are not lost with the file
            raise ReportNotWritten(str(exc), result) from exc
    return result


def _identity(path: str | os.PathLike[str] | None) -> tuple[int, ...] | None:
    """What tells a file apart from one written in its place (None: no file there)."""
    if path is None:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class CommandNotRun(InputError):
    """The command could not be started; its exit status is the shell's: 127 when it is not
    found, 126 when it is found but cannot be run (not executable, not a program)."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class ReportNotWritten(InputError):
    """``--out`` could not be written after the command ran; ``result`` still holds the
    command's exit status and its report (the CLI prints both)."""

    def __init__(self, message: str, result: CommandResult) -> None:
        super().__init__(message)
        self.result = result


def _terminal_foreground() -> bool:
    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False  # stdin is not a terminal


def write_report(report: EnergyReport, path: str | os.PathLike[str]) -> Path:
    """Write the report as JSON (atomically: a reader never sees half a file)."""

    target = Path(path)
    try:
        write_text(target, report.to_json() + "\n")
    except OSError as exc:
        raise InputError(f"--out {target}: cannot write the report: "
                         f"{exc.strerror or exc}") from exc
    return target
