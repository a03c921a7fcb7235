"""Does the NVML background sampler slow a training loop, and what do window edges cost?"""
import statistics, time, sys
from ecnas.validate.loads import TorchLoad
from ecnas.monitor import Monitor
load = TorchLoad("cuda", n=4096)
for ms in (50.0, 20.0):
    step = load.training_step(ms)
    n = max(5, round(1000 / ms))
    res = {k: [] for k in ("A no monitor", "B sampler running, no windows", "C windows + sync", "D windows, no sync")}
    for r in range(5):
        t0 = time.perf_counter()
        for _ in range(n): step()
        res["A no monitor"].append((time.perf_counter() - t0) / n)
        mon = Monitor().start()
        t0 = time.perf_counter()
        for _ in range(n): step()
        res["B sampler running, no windows"].append((time.perf_counter() - t0) / n)
        t0 = time.perf_counter()
        for _ in range(n):
            mon.begin("s"); step(); mon.end("s")
        res["C windows + sync"].append((time.perf_counter() - t0) / n)
        mon.sync_cuda = False
        t0 = time.perf_counter()
        for _ in range(n):
            mon.begin("s"); step(); mon.end("s")
        res["D windows, no sync"].append((time.perf_counter() - t0) / n)
        reason = [s.reason for s in mon.statuses() if s.meter == "nvml"]
        mon.close()
    base = statistics.median(res["A no monitor"])
    print(f"~{ms:g} ms steps, {n} per block, 5 rounds; nvml: {reason}")
    for k, v in res.items():
        med = statistics.median(v)
        print(f"  {k:32s} median {med*1e3:7.3f} ms  ({(med-base)/base*100:+.2f} % vs A)  blocks: {[round(x*1e3,2) for x in v]}")
    sys.stdout.flush()
