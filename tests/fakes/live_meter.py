"""A fake RAPL package whose counter follows a real process's CPU load, and a wall meter that
logs it live with its own gain, offset and clock: ``python -m fakes.live_meter ...``.

Every ``--tick-s`` it reads the CPU time of the process (all its threads: BLAS workers
count), turns it into package power (``--idle-w`` plus ``--core-w`` per
busy core), advances the fake zone's ``energy_uj`` by that power × time, and every
``--period-s`` appends a row to ``--log``:

    timestamp = host time + --shift-s        (the meter's clock)
    watts     = --gain × package power + --offset-w

where package power is the mean since the previous row (a wall meter logs the mean over its
update period). Rows are flushed one by one, so a reader sees the log grow. It exits when the
process is gone (after ``--linger-s``) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path

from fakes.sysfs import DEFAULT_RANGE_UJ, FakeZone


def cpu_seconds(pid: int) -> float | None:
    """CPU time of a process, all its threads (None once it is gone). Nanoseconds from
    ``/proc/PID/task/*/schedstat`` where the kernel keeps them: ``/proc/PID/stat`` counts in
    10 ms ticks, which would make the counter jump by whole joules."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None  # a zombie: it has finished
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that just ended
        return total / 1e9
    except (FileNotFoundError, ProcessLookupError):
        return None
    except (OSError, ValueError, IndexError):
        pass  # no schedstat here: clock ticks
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _prompt_wakeups() -> str:
    """Ask to be scheduled first (where allowed): a late wakeup leaves the counter stale,
    which reads as timing noise between the counter and the log. Not needed for
    correctness, only for less noise on a busy machine."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        return "SCHED_FIFO"
    except (AttributeError, OSError):
        pass
    try:
        os.nice(-10)
        return "nice -10"
    except OSError:
        return "default"


def run(args: argparse.Namespace) -> None:
    _prompt_wakeups()
    zone = FakeZone(Path(args.zone), "package-0", DEFAULT_RANGE_UJ)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    energy = 0.0
    last_t = time.time()
    last_cpu = cpu_seconds(args.pid) or 0.0
    row_t, row_e = last_t, energy
    gone_at = None
    with open(args.log, "w", encoding="utf-8", buffering=1) as log:
        log.write("timestamp,watts\n")
        while not stop.wait(args.tick_s):
            now = time.time()
            cpu = cpu_seconds(args.pid)
            if cpu is None:
                gone_at = gone_at or now
                cpu = last_cpu
            busy = max(cpu - last_cpu, 0.0) / (now - last_t)
            energy += (args.idle_w + args.core_w * busy) * (now - last_t)
            zone.set(int(energy * 1e6))
            last_t, last_cpu = now, cpu
            if now - row_t >= args.period_s:
                watts = args.gain * (energy - row_e) / (now - row_t) + args.offset_w
                log.write(f"{now + args.shift_s:.4f},{watts:.4f}\n")
                row_t, row_e = now, energy
            if gone_at is not None and now - gone_at >= args.linger_s:
                break


def main() -> None:
    p = argparse.ArgumentParser(prog="live_meter")
    p.add_argument("--zone", required=True, help="the fake zone's folder (holds energy_uj)")
    p.add_argument("--pid", type=int, required=True, help="process whose CPU load is followed")
    p.add_argument("--log", required=True, help="the meter's CSV log")
    p.add_argument("--gain", type=float, default=1.15)
    p.add_argument("--offset-w", type=float, default=12.0)
    p.add_argument("--shift-s", type=float, default=0.0, help="meter clock - host clock")
    p.add_argument("--period-s", type=float, default=0.1, help="meter log period")
    p.add_argument("--tick-s", type=float, default=0.005, help="counter update period")
    p.add_argument("--idle-w", type=float, default=20.0)
    p.add_argument("--core-w", type=float, default=40.0, help="watts per busy core")
    p.add_argument("--linger-s", type=float, default=0.5)
    run(p.parse_args())


if __name__ == "__main__":
    main()
