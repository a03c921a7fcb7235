"""Issue 37.7: how a short CPU training run degrades under other processes, by thread count.

Runs a fixed number of training steps of a small conv net (the demo's scale) with torch's
intra-op threads at the default and at 1, first alone, then beside K CPU-bound processes of
two kinds: plain single-threaded loops, and multi-threaded torch matmul loops (OpenMP threads
at their default, spinning wait policy). Every background process is bounded (it exits after
``--bg-seconds``) and is ended by its pid. Prints one JSON line per case with the load average.

    python3 benchmarks/threads_under_load.py --steps 30 --bg 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PLAIN = "import time\nt=time.time()\nwhile time.time()-t<{s}:\n    sum(range(10000))\n"
THREADED = ("import time, torch\na=torch.randn(256,256)\nt=time.time()\n"
            "while time.time()-t<{s}:\n    a@a\n")
TRAIN = """
import os, sys, time, json, torch
threads = int(sys.argv[1]); steps = int(sys.argv[2])
if threads > 0:
    torch.set_num_threads(threads)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16),
    torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
x = torch.randn(64, 3, 32, 32); y = torch.randint(0, 10, (64,))
for _ in range(3):
    opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()
c0 = time.process_time(); t0 = time.perf_counter()
for _ in range(steps):
    opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()
print(json.dumps({"threads": torch.get_num_threads(), "wall_s": time.perf_counter() - t0,
                  "cpu_s": time.process_time() - c0}))
"""


def _train(threads: int, steps: int, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", TRAIN, str(threads), str(steps)], env=env,
                         capture_output=True, text=True, timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run every case and print one JSON line each."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--bg", type=int, default=2, help="background processes")
    ap.add_argument("--bg-seconds", type=float, default=120.0)
    ap.add_argument("--kinds", default="none,plain,threaded",
                    help="background kinds to run, comma-separated")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    for kind, code in (("none", None), ("plain", PLAIN), ("threaded", THREADED)):
        if kind not in args.kinds.split(","):
            continue
        procs = []
        if code is not None:
            procs = [subprocess.Popen([sys.executable, "-c", code.format(s=args.bg_seconds)])
                     for _ in range(args.bg)]
            time.sleep(3.0)  # let them start (torch import)
        try:
            for threads in (0, 1):
                for policy in ("default", "PASSIVE"):
                    env = dict(os.environ)
                    env.pop("OMP_WAIT_POLICY", None)
                    if policy == "PASSIVE":
                        env["OMP_WAIT_POLICY"] = "PASSIVE"
                    r = _train(threads, args.steps, env)
                    r.update(background=kind, bg_processes=len(procs), cores=cores,
                             omp_wait_policy=policy, requested=threads or "default",
                             loadavg=Path("/proc/loadavg").read_text().split()[:3])
                    print(json.dumps(r), flush=True)
        finally:
            for p in procs:  # ours only, by pid
                p.terminate()
                p.wait(timeout=30)


if __name__ == "__main__":
    main()
