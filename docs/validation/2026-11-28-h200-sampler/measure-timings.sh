#!/bin/bash
# One-shot GPU validation on the lent machine (second run: NVML background sampler). Output in $OUT.
export PYTHONUNBUFFERED=1 ECNAS_CACHE_DIR=/tmp/ecnas-cache PYTHONPATH=$PWD
exec > >(tee $OUT/log.txt) 2>&1
date -u; nvidia-smi --query-gpu=name,driver_version,power.draw --format=csv
git log --oneline | head -1
python3 -m ecnas hardware --json > $OUT/hardware.json; echo "hardware rc=$?"; grep -m2 '"reason"' $OUT/hardware.json
python3 - <<'PY'
import os, time, resource, threading
import ecnas, torch
from ecnas.monitor import Monitor
a = torch.randn(4096, 4096, device="cuda")
with ecnas.measure() as m:
    for _ in range(200): a @ a
print("report:", m.report.energy_j, {k: (d.joules, d.meter, d.status) for k, d in m.report.domains.items()})
def timed(n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        with ecnas.measure(): pass
        ts.append(time.perf_counter_ns() - t0)
    ts.sort(); return ts[n // 2] / 1e3, ts[0] / 1e3, ts[int(n * .9)] / 1e3
for setting, n in (("auto", 3000), ("off", 300), ("on", 3000)):
    os.environ["ECNAS_NVML_BACKGROUND"] = setting
    ecnas.measure  # the default Monitor is re-discovered on the change
    with ecnas.measure(): pass
    from ecnas.monitor.default import default_monitor
    mon = default_monitor()
    nv = [x for x in mon.meters if x.name == "nvml"][0]
    c0 = time.thread_time(); p0 = time.process_time(); w0 = time.perf_counter()
    med, mn, p90 = timed(n)
    w1 = time.perf_counter(); p1 = time.process_time()
    print(f"ECNAS_NVML_BACKGROUND={setting}: fresh measure() median {med:.1f} us, min {mn:.1f}, p90 {p90:.1f} "
          f"(sampling={nv.sampling}); process CPU {(p1-p0)/(w1-w0)*100:.0f}% of one core during the loop")
    print("   reason:", nv.status().reason)
# CPU cost of the sampler alone while idle: 5 s with the default (auto) Monitor held open
os.environ["ECNAS_NVML_BACKGROUND"] = "auto"
with ecnas.measure():
    p0 = time.process_time(); time.sleep(5); p1 = time.process_time()
print(f"sampler CPU while idle in an open window: {(p1-p0)/5*100:.1f}% of one core")
PY
echo "=== validate gpu (full) ==="
time python3 -m ecnas validate gpu --out $OUT/val --json > $OUT/val.json.stdout
echo "validate rc=$?"
