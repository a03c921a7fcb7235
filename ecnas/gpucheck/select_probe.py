"""Run as ``python -m ecnas.gpucheck.select_probe`` with CUDA_VISIBLE_DEVICES set: prints, as
one JSON line, the UUID of the board the NVML meter calls gpu:0 and the one torch calls
cuda:0 (when torch sees CUDA). The device-selection phase compares them."""

from __future__ import annotations

import json

from ecnas.meters.nvml import NvmlMeter


def main() -> None:
    """Print one JSON line with the UUID of the NVML meter's gpu:0 and of torch's cuda:0 (None when
    torch sees no CUDA), and NVML's status reason."""
    out: dict[str, object] = {}
    meter = NvmlMeter()
    gpus = meter.gpus()
    out["nvml_uuid"] = gpus[0].uuid if gpus else None
    out["nvml_reason"] = meter.status().reason
    meter.close()
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        uuid = getattr(torch.cuda.get_device_properties(0), "uuid", None)
        out["torch_uuid"] = f"GPU-{uuid}" if uuid is not None else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
