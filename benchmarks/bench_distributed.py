"""The cost of a distributed window's end: ``with measure("w", gather=True): pass`` on rank 0
of a job of 2 and 4 ranks, the other ranks real processes doing the same windows.

The ranks meet through a TCPStore served by rank 0 (``tcp://127.0.0.1:PORT``: what torchrun's
and a process group's stores are) or a shared folder (``ECNAS_RENDEZVOUS=DIR``, for jobs
without torch). Every rank reads a fake two-socket powercap tree (rank 0 its zones, the others
the CPU-time estimate is not needed: RAPL is readable, so they read nothing but their GPU,
and there is none here). Also timed: a fresh non-distributed ``with measure(): pass`` (no
``RANK`` in the environment), which must stay what it was (< 20 µs; bench_peers.py).

Run: python3 -m pytest -q benchmarks/bench_distributed.py  (ECNAS_BENCH_QUICK=1: fewer rounds)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecnas.monitor import measure, refresh

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
ROUNDS = 20 if QUICK else 200
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from fakes.sysfs import FakePowercap  # noqa: E402  (test helper, found through tests/)

RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "ECNAS_RENDEZVOUS",
            "ECNAS_JOB_ID", "ECNAS_NODE_ID", "ECNAS_GATHER_TIMEOUT")


@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    """A two-socket fake powercap tree for the whole module."""
    with tempfile.TemporaryDirectory(prefix="ecnas-bench-dist-") as d:
        fake = FakePowercap(Path(d))
        fake.package(0, dram=True)
        fake.package(1, dram=True)
        old = os.environ.get("ECNAS_SYSFS_ROOT")
        os.environ["ECNAS_SYSFS_ROOT"] = str(fake.root)
        try:
            yield fake.root
        finally:
            if old is None:
                os.environ.pop("ECNAS_SYSFS_ROOT", None)
            else:
                os.environ["ECNAS_SYSFS_ROOT"] = old
            refresh()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def windows(n: int) -> None:
    """One rank's side: ``n`` gathered windows."""
    for _ in range(n):
        with measure("w", gather=True) as m:
            pass
        assert m.job is not None and m.job.complete, m.job


@pytest.mark.parametrize("kind", ["tcp", "folder"])
@pytest.mark.parametrize("ranks", [2, 4])
def test_distributed_window_end(benchmark, tree: Path, ranks: int, kind: str,
                                tmp_path: Path) -> None:
    if kind == "tcp":
        pytest.importorskip("torch.distributed")
        spec = f"tcp://127.0.0.1:{_port()}"
    else:
        spec = str(tmp_path / "rdv")
    job = {"WORLD_SIZE": str(ranks), "LOCAL_WORLD_SIZE": str(ranks), "ECNAS_RENDEZVOUS": spec,
           "ECNAS_JOB_ID": f"bench-{ranks}-{kind}", "ECNAS_NODE_ID": "bench-node",
           "ECNAS_GATHER_TIMEOUT": "60"}
    saved = {k: os.environ.get(k) for k in RANK_ENV}
    os.environ.update({**job, "RANK": "0", "LOCAL_RANK": "0"})
    refresh()  # the default Monitor is placed for rank 0 now
    helpers = [subprocess.Popen([sys.executable, __file__, str(ROUNDS + 1)],
                                env={**os.environ, **job, "RANK": str(r), "LOCAL_RANK": str(r),
                                     "PYTHONPATH": str(REPO)})
               for r in range(1, ranks)]
    try:
        windows(1)  # the rendezvous opened (the TCPStore's server on rank 0), outside timing
        benchmark.pedantic(windows, args=(1,), rounds=ROUNDS, iterations=1)
        for h in helpers:
            assert h.wait(timeout=120) == 0
    finally:
        for h in helpers:
            if h.poll() is None:
                h.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        refresh()
    benchmark.extra_info["per_window_end_ms_median"] = benchmark.stats.stats.median * 1e3


def test_fresh_measure_not_distributed(benchmark, tree: Path) -> None:
    """A fresh ``with measure(): pass`` of a single process: unchanged by distributed
    metering (its placement is decided once, when the default Monitor starts)."""
    assert not any(os.environ.get(k) for k in ("RANK", "WORLD_SIZE"))

    def fresh() -> None:
        with measure():
            pass

    fresh()
    benchmark(fresh)
    benchmark.extra_info["per_window_us_median"] = benchmark.stats.stats.median * 1e6


if __name__ == "__main__":  # a helper rank: python bench_distributed.py WINDOWS
    windows(int(sys.argv[1]))
