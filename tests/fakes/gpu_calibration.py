"""Run ``calibrate("gpu")`` on the stand-in NVML library (imported by a fresh interpreter that
loads the stub, see :func:`fakes.nvml.run_python`) and print the run as JSON.

Boards are described by ``FAKE_BOARDS`` (``uuid:watts,uuid:watts``): each is a steady board
whose energy counter (mJ) and power readings (mW) follow its watts, rewritten every 10 ms.
"""

from __future__ import annotations

import json
import os
import threading
import time

from ecnas.profiles import load_profiles
from ecnas.profiles.calibrate import CalibrationOptions, calibrate
from fakes.nvml import FakeGpu, write_state


def _boards() -> list[tuple[str, float]]:
    out = []
    for item in os.environ.get("FAKE_BOARDS", "GPU-aaa:100").split(","):
        uuid, watts = item.rsplit(":", 1)
        out.append((uuid, float(watts)))
    return out


def main() -> None:
    state = os.environ["FAKE_NVML_STATE"]
    boards = _boards()
    t0 = time.time()
    stop = threading.Event()

    def run_boards() -> None:
        while not stop.is_set():
            dt = time.time() - t0
            write_state(state, [FakeGpu(uuid, energy_mj=int(dt * w * 1000),
                                        power_mw=int(w * 1000), instant_mw=int(w * 1000))
                                for uuid, w in boards])
            stop.wait(0.01)

    thread = threading.Thread(target=run_boards, daemon=True)
    thread.start()
    waiter = threading.Event()
    try:
        run = calibrate("gpu", profiles=load_profiles(), burn=waiter.wait,
                        options=CalibrationOptions(idle_s=0.5, load_s=0.8, probe_s=0.4,
                                                   steps_s=0.0, poll_s=0.05,
                                                   profile_id="my-rtx-6000"))
    finally:
        stop.set()
        thread.join()
    d = run.to_dict()
    d["profile"] = run.profile.to_dict()
    print(json.dumps(d))


if __name__ == "__main__":
    main()
