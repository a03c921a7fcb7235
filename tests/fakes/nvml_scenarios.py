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


def _polled_window(seconds: float) -> dict[str, Any]:
    """One window of ``seconds`` on a meter polling every 10 ms, and the mode it chose."""
    meter = NvmlMeter(poll_interval_s=0.01)
    mode = meter.gpus()[0].mode
    with Monitor([meter]) as mon:
        mon.begin("w")
        time.sleep(seconds)
        rep = mon.end("w")
    d = rep.to_dict()
    d["mode"] = mode
    return d


def instant_power() -> dict[str, Any]:
    return _polled_window(0.3)


def power_step() -> dict[str, Any]:
    with Monitor([NvmlMeter(poll_interval_s=0.01)]) as mon:
        mon.begin("w")
        time.sleep(0.2)
        write_state(_state(), [FakeGpu("GPU-aaa", flags=INSTANT, instant_mw=200_000)])
        time.sleep(0.2)
        return mon.end("w").to_dict()


def averaged_power() -> dict[str, Any]:
    return _polled_window(0.2)


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
    from ecnas.calibration.procedure import CalibrationOptions, calibrate
    from ecnas.profiles import load_profiles

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


# -- slow NVML (FAKE_NVML_DELAY_US): the background sampler ----------------------------------

_BACKGROUND = {"auto": None, "on": True, "off": False}


def _calls() -> tuple[int, int]:
    """NVML reads logged by the stand-in so far: (by this thread, by any other thread)."""
    path = os.environ["FAKE_NVML_CALLS"]
    me = str(threading.get_native_id())
    try:
        with open(path) as fh:
            tids = [line.split()[0] for line in fh if line.strip()]
    except FileNotFoundError:
        return 0, 0
    mine = sum(t == me for t in tids)
    return mine, len(tids) - mine


def _threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("ecnas-nvml"))


def slow_counter(background: str, windows: str = "20", long_s: str = "0.5") -> dict[str, Any]:
    """Empty windows back to back, then one long window, on a counter whose reads take
    FAKE_NVML_DELAY_US: how many NVML reads the windows' edges made on this thread."""
    meter = NvmlMeter(background=_BACKGROUND[background])
    meter_status = meter.status().to_dict()
    with Monitor([meter], use_profiles=False) as mon:
        out: dict[str, Any] = {"sampling": meter.sampling, "threads": _threads()}
        mine0, other0 = _calls()
        late0 = meter._late_reads
        for _ in range(int(windows)):
            mon.begin("w")
            mon.end("w")
        mine1, _ = _calls()
        out["edge_calls"] = mine1 - mine0
        out["late_reads"] = meter._late_reads - late0
        mon.begin("long")
        time.sleep(float(long_s))
        rep = mon.end("long")
        out["other_calls"] = _calls()[1] - other0
    out["status"] = meter_status
    out["report"] = rep.to_dict()
    out["threads_after_close"] = _threads()
    return out


def _until(meter: NvmlMeter, joules: float) -> None:
    """Wait (without calling NVML: reads return the sampler's newest) until gpu:0 reads
    ``joules``."""
    deadline = time.monotonic() + 10.0
    while meter.read().energy_j["gpu:0"] != joules:
        if time.monotonic() > deadline:
            raise AssertionError(f"the sampler never published {joules} J")
        time.sleep(0.005)


def slow_counter_goes_back() -> dict[str, Any]:
    """A driver reload while the sampler reads: 5000 → 9000 → 1000 (restarted) → 1500 mJ."""
    meter = NvmlMeter()
    with Monitor([meter], use_profiles=False) as mon:
        sampling = meter.sampling
        mon.begin("w")
        for mj, total in ((9000, 4.0), (1000, 5.0), (1500, 5.5)):
            write_state(_state(), [FakeGpu("GPU-aaa", energy_mj=mj)])
            _until(meter, total)
        time.sleep(0.1)  # more sampler passes over the restarted counter: counted once still
        d = mon.end("w").to_dict()
    d["sampling"] = sampling
    return d


def slow_counter_sampler_dies() -> dict[str, Any]:
    """The sampler stops mid-window (as if it died): the end edge reads NVML itself."""
    meter = NvmlMeter()
    with Monitor([meter], use_profiles=False) as mon:
        sampling = meter.sampling
        mon.begin("w")
        meter._stop_thread()  # the sampler is gone; the meter still thinks it samples
        write_state(_state(), [FakeGpu("GPU-aaa", energy_mj=7000)])
        time.sleep(0.3)  # longer than the staleness bound
        mine0, _ = _calls()
        d = mon.end("w").to_dict()
        d["edge_calls"] = _calls()[0] - mine0
    d["sampling"] = sampling
    return d


def slows_down_after_start() -> dict[str, Any]:
    """NVML fast when the meter starts, slow (3 ms a read) afterwards: the edges switch."""
    meter = NvmlMeter()
    with Monitor([meter], use_profiles=False) as mon:
        out: dict[str, Any] = {"sampling_at_start": meter.sampling}
        os.environ["FAKE_NVML_DELAY_US"] = "3000"  # the stand-in reads it at every call
        mon.begin("w")
        for _ in range(10):
            mon.begin("step")
            mon.end("step")
        d = mon.end("w").to_dict()
        out.update(sampling=meter.sampling, threads=_threads(), warnings=d["warnings"],
                   reason=meter.status().reason)
    return out


def slow_instant_power() -> dict[str, Any]:
    """Polled instantaneous power with slow reads: sampled by the same thread."""
    meter = NvmlMeter(poll_interval_s=0.01)
    with Monitor([meter], use_profiles=False) as mon:
        mon.begin("w")
        time.sleep(0.3)
        d = mon.end("w").to_dict()
        d.update(sampling=meter.sampling, threads=_threads(), mode=meter.gpus()[0].mode,
                 reason=meter.status().reason)
    return d


def default_nvml_background() -> dict[str, Any]:
    """The ``background`` option of the nvml meter the defaults and create_meters build."""
    from ecnas.errors import InputError
    from ecnas.meters.registry import create_meters

    try:
        built = [m for m in default_meters() if isinstance(m, NvmlMeter)]
        named = create_meters(["nvml"])
    except InputError as exc:
        return {"error": str(exc)}
    return {"default": [m._background for m in built],
            "named": [m._background for m in named if isinstance(m, NvmlMeter)]}


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {f.__name__: f for f in (
    counter_two_gpus, short_window, instant_power, power_step, averaged_power,
    error_mid_window, uuids_and_indices, status, mig_refused, calibrate_steady_board,
    slow_counter, slow_counter_goes_back, slow_counter_sampler_dies, slows_down_after_start,
    slow_instant_power, default_nvml_background)}


def main(argv: list[str]) -> int:
    name, *args = argv
    print(json.dumps(SCENARIOS[name](*args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
