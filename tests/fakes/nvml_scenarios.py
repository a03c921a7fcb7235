"""What the NVML stand-in tests run in a fresh interpreter: one function per scenario, each
returning the JSON-able result its test checks.

The stand-in ``libnvidia-ml.so.1`` is found through ``LD_LIBRARY_PATH``, which the dynamic
loader reads at process start, so these run in a child process
(``python -m fakes.nvml_scenarios NAME [ARG ...]``, see ``fakes.nvml.run_scenario``), which
prints the result as JSON on its last line. Being a module rather than code in a string, each
scenario can be linted, and debugged by running that command by hand with the same
environment (``LD_LIBRARY_PATH``, ``FAKE_NVML_STATE``, ``PYTHONPATH=tests``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ecnas import Monitor
from ecnas.errors import MeterUnavailable
from ecnas.meters import default_meters
from ecnas.meters.nvml import NvmlMeter
from fakes.nvml import ENERGY, INSTANT, FakeGpu, write_state


def _state() -> str:
    return os.environ["FAKE_NVML_STATE"]


def counter_two_gpus() -> dict[str, Any]:
    meter = NvmlMeter()
    status = meter.status()
    with Monitor([meter]) as mon:
        mon.begin("w")
        write_state(_state(), [FakeGpu("GPU-aaa", energy_mj=6500),
                               FakeGpu("GPU-bbb", energy_mj=350)])
        time.sleep(0.15)  # longer than the counter's 100 ms update period
        rep = mon.end("w")
    d = rep.to_dict()
    d["status"] = status.to_dict()
    return d


def short_window() -> dict[str, Any]:
    with Monitor([NvmlMeter()]) as mon:
        mon.begin("w")
        write_state(_state(), [FakeGpu("GPU-aaa", energy_mj=5040)])
        return mon.end("w").to_dict()


def instant_power() -> dict[str, Any]:
    meter = NvmlMeter(poll_interval_s=0.01)
    mode = meter.gpus()[0].mode
    with Monitor([meter]) as mon:
        mon.begin("w")
        time.sleep(0.3)
        rep = mon.end("w")
    d = rep.to_dict()
    d["mode"] = mode
    return d


def power_step() -> dict[str, Any]:
    with Monitor([NvmlMeter(poll_interval_s=0.01)]) as mon:
        mon.begin("w")
        time.sleep(0.2)
        write_state(_state(), [FakeGpu("GPU-aaa", flags=INSTANT, instant_mw=200_000)])
        time.sleep(0.2)
        return mon.end("w").to_dict()


def averaged_power() -> dict[str, Any]:
    meter = NvmlMeter(poll_interval_s=0.01)
    mode = meter.gpus()[0].mode
    with Monitor([meter]) as mon:
        mon.begin("w")
        time.sleep(0.2)
        rep = mon.end("w")
    d = rep.to_dict()
    d["mode"] = mode
    return d


def error_mid_window(flag: str) -> dict[str, Any]:
    with Monitor([NvmlMeter()]) as mon:
        mon.begin("w")
        write_state(_state(), [FakeGpu("GPU-aaa", energy_mj=3000)])
        time.sleep(0.12)
        mon.peek("w")
        write_state(_state(), [FakeGpu("GPU-aaa", energy_mj=9000,
                                       flags=ENERGY | INSTANT | int(flag))])
        return mon.end("w").to_dict()


def uuids_and_indices() -> dict[str, Any]:
    meter = NvmlMeter()
    with Monitor([meter]) as mon:
        mon.begin("w")
        write_state(_state(), [FakeGpu("GPU-aaa-0000", energy_mj=1000),
                               FakeGpu("GPU-bbb-1111", energy_mj=2000),
                               FakeGpu("GPU-ccc-2222", energy_mj=3000, pci=0x20B0,
                                       name="NVIDIA A100-SXM4-40GB")])
        time.sleep(0.12)
        d = mon.end("w").to_dict()
    d["map"] = {g.domain: [g.nvml_index, g.uuid] for g in meter.gpus()}
    return d


def status() -> dict[str, Any]:
    return NvmlMeter().status().to_dict()


def mig_refused() -> dict[str, Any]:
    meter_status = NvmlMeter().status().to_dict()
    try:
        Monitor([NvmlMeter()]).start()
        refused = ""
    except MeterUnavailable as exc:
        refused = str(exc)
    return {"status": meter_status, "refused": refused,
            "defaults": [m.name for m in default_meters()]}


def calibrate_steady_board(*boards: str) -> dict[str, Any]:
    """``ecnas calibrate --kind gpu`` against steady boards (``UUID:watts`` each; default one
    100 W board): counter in mJ and power reading in mW, moved by a thread while calibration
    runs."""
    from ecnas.profiles import load_profiles
    from ecnas.profiles.calibrate import CalibrationOptions, calibrate

    specs = [(u, float(w)) for u, w in (b.rsplit(":", 1) for b in boards or ("GPU-aaa:100",))]
    t0 = time.time()
    stop = threading.Event()

    def board() -> None:
        while not stop.is_set():
            dt = time.time() - t0
            write_state(_state(), [FakeGpu(u, energy_mj=int(dt * w * 1000),
                                           power_mw=int(w * 1000), instant_mw=int(w * 1000))
                                   for u, w in specs])
            stop.wait(0.01)

    th = threading.Thread(target=board, daemon=True)
    th.start()
    waiter = threading.Event()
    try:
        run = calibrate("gpu", profiles=load_profiles(), burn=waiter.wait,
                        options=CalibrationOptions(idle_s=0.5, load_s=0.8, probe_s=0.4,
                                                   steps_s=0.0, poll_s=0.05,
                                                   profile_id="my-rtx-6000"))
    finally:
        stop.set()
        th.join()
    d = run.to_dict()
    d["profile"] = run.profile.to_dict()
    return d


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {f.__name__: f for f in (
    counter_two_gpus, short_window, instant_power, power_step, averaged_power,
    error_mid_window, uuids_and_indices, status, mig_refused, calibrate_steady_board)}


def main(argv: list[str]) -> int:
    name, *args = argv
    print(json.dumps(SCENARIOS[name](*args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
