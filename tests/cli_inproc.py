"""The ``ecnas`` command run in the test's own process: ``ecnas.cli.main(argv)`` with stdout and
stderr captured, the exit status as the process would have it, and the environment and working
folder of the call isolated (set for the call, restored after).

It returns what ``subprocess.run(..., capture_output=True, text=True)`` returns, so a test helper
switches from a subprocess to this by one line. A real subprocess costs ~2 s of imports
(pandas, torch) per call on a busy 2-core machine; this costs the command's own work.

Use a real subprocess instead (``subprocess.run([sys.executable, "-m", "ecnas", ...])``) where
the process boundary is what the test checks: signals, ``kill -9``, the exit status of
``ecnas measure`` and of the command it runs, file-size limits and umasks (tests/faults.py),
extras in their own venv, torchrun, or a library loaded with ``ctypes`` that must not stay in
the test process (tests/README.md says how to count the tests that spawn processes).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path

from ecnas.cli import main


def run_cli(*argv: object, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
            stdin: str = "", timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """``ecnas ARGV`` in-process. ``env`` replaces the environment for the call (as
    ``subprocess.run(env=...)`` does), ``cwd`` the working folder; ``timeout`` is accepted for
    the same signature as a subprocess and not enforced (a hang fails the whole test run)."""
    del timeout
    args = [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in argv]
    out_b, err_b = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_b, encoding="utf-8", errors="backslashreplace", newline="")
    err = io.TextIOWrapper(err_b, encoding="utf-8", errors="backslashreplace", newline="")
    saved_env, saved_cwd, saved_in = dict(os.environ), os.getcwd(), sys.stdin
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin = io.StringIO(stdin)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(args)
            except SystemExit as exc:  # argparse's usage errors, --help, --version
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if exc.code is not None and not isinstance(exc.code, int):
                    print(exc.code, file=sys.stderr)
            except BaseException:  # what Python prints for an uncaught exception, status 1
                traceback.print_exc()
                rc = 1
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        sys.stdin = saved_in
        os.chdir(saved_cwd)
        if env is not None:
            os.environ.clear()
            os.environ.update(saved_env)
    out.flush()
    err.flush()
    return subprocess.CompletedProcess(["ecnas", *args], int(rc or 0),
                                       out_b.getvalue().decode("utf-8", "backslashreplace"),
                                       err_b.getvalue().decode("utf-8", "backslashreplace"))
