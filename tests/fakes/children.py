"""Code that tests run in a child process, as importable (and linted) functions.

Run as ``python tests/fakes/children.py NAME ARG...`` (by path, so it needs no PYTHONPATH of
its own; ``wrapping_counter`` imports ``fakes.sysfs`` and so needs the tests folder on it)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def rapl_probe(root: str) -> None:
    """The RAPL meter's status on ``root``, read as user nobody when started as root (after
    the interpreter and ecnas are loaded, as a user without read access would see it)."""
    from ecnas.meters.rapl import RaplMeter

    meter = RaplMeter(root)
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    print(json.dumps(meter.status().to_dict()))


def sigterm_child() -> None:
    """Say ready, then wait; SIGTERM makes it exit 7 (its own handler ran)."""
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))
    print("ready", flush=True)
    time.sleep(60)


def wrapping_counter(path: str) -> None:
    """8 x 0.4 J on a 1 J counter: three wraps inside the metered command's window."""
    from fakes.sysfs import FakeZone

    zone = FakeZone(Path(path), "package-0", 1_000_000)
    value = 0
    for _ in range(8):
        value += 400_000
        zone.set(value % 1_000_000)
        time.sleep(0.03)  # the guard reads every 0.25 ms at the default 1000 W ceiling


def busy(seconds: str) -> None:
    """Burn ``seconds`` of this process's CPU time."""
    t = time.process_time()
    while time.process_time() - t < float(seconds):
        pass


CHILDREN = {f.__name__: f for f in (rapl_probe, sigterm_child, wrapping_counter, busy)}
PATH = str(Path(__file__).resolve())

if __name__ == "__main__":
    CHILDREN[sys.argv[1]](*sys.argv[2:])
