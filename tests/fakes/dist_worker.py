"""One rank of a distributed job the distributed-metering tests launch (torchrun, srun, or
plain processes with RANK/WORLD_SIZE): ``python -m fakes.dist_worker MODE OUTDIR [WINDOW]``.

The rank opens ``measure(WINDOW, gather=True)``, says it is ready (``OUTDIR/ready.<rank>``),
waits for the test to move the fake counters and touch ``OUTDIR/go``, ends the window and
writes its job report to ``OUTDIR/rank<rank>.json`` (or the error it got to
``OUTDIR/error<rank>.txt``). MODE ``wait`` only waits for ``go`` (the work ``ecnas measure`` meters around torchrun); ``pg`` initializes a gloo process group first (the
process group's store carries the reports); ``env`` leaves it to torchrun's store or
``ECNAS_RENDEZVOUS``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ecnas.errors import InputError
from ecnas.monitor import measure
from ecnas.monitor.distributed import topology


def _wait_for_go(out: Path) -> None:
    deadline = time.monotonic() + 120
    while not (out / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("the test never said go")
        time.sleep(0.01)


def main() -> int:
    mode, out = sys.argv[1], Path(sys.argv[2])
    window = sys.argv[3] if len(sys.argv) > 3 else "train"
    if mode == "placement":  # what the default Monitor of this process reads, as JSON
        from ecnas.monitor import default_monitor
        from ecnas.monitor.distributed import placement_record

        print(__import__("json").dumps(placement_record(default_monitor())))
        return 0
    if mode == "wait":  # a rank that only works: ``ecnas measure`` around torchrun meters it
        (out / f"ready.{os.environ['RANK']}").write_text(str(os.getpid()))
        _wait_for_go(out)
        return 0
    if mode == "pg":
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=__import__("datetime").timedelta(seconds=60))
    topo = topology()
    assert topo is not None, "not a rank"
    rank = topo.rank
    try:
        with measure(window, gather=True) as m:
            (out / f"ready.{rank}").write_text(str(os.getpid()))
            _wait_for_go(out)
    except InputError as exc:
        (out / f"error{rank}.txt").write_text(str(exc))
        return 3
    (out / f"rank{rank}.json").write_text(m.job.to_json())
    (out / f"local{rank}.json").write_text(m.report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
