"""A stand-in ``nvidia-smi`` for the GPU validation kit's tests: answers
``--query-gpu=timestamp,power.draw --format=csv,noheader,nounits -lms=N --id=I`` from the
stand-in NVML library's state file ($FAKE_NVML_STATE), as the real one answers from the driver.
$FAKE_SMI_SCALE multiplies the watts (to make it disagree on purpose)."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time


def main(argv: list[str]) -> int:
    opts = dict(a.split("=", 1) for a in argv if a.startswith("-") and "=" in a)
    fields = opts.get("--query-gpu", "").split(",")
    index = int(opts.get("--id", "0"))
    period = float(opts.get("-lms", "0")) / 1000.0
    scale = float(os.environ.get("FAKE_SMI_SCALE", "1"))
    state = os.environ["FAKE_NVML_STATE"]
    while True:
        with open(state) as fh:
            lines = fh.read().splitlines()
        watts = int(lines[index].split()[3]) / 1000.0 * scale
        now = dt.datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
        values = {"timestamp": now, "power.draw": f"{watts:.2f}"}
        print(", ".join(values[f] for f in fields), flush=True)
        if period <= 0:
            return 0
        time.sleep(period)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
