"""GPU validation kit: one command that proves (or disproves) the meters on a real GPU.

``ecnas validate gpu --out DIR`` runs, in one process tree and unattended, every comparison
that only a real board can answer (NVML counter against polled power and ``nvidia-smi``,
CUDA synchronization at window edges, short windows, metering overhead on a real loop, the
trainer at NAS-Bench-101's full width, ``CUDA_VISIBLE_DEVICES`` selection) and writes
``DIR/validation.json`` and ``DIR/validation.md``: every figure with its expectation and
pass/fail. See docs/validation.md.

Modules: :mod:`.plan` (how long and how big each phase is), :mod:`.results` (checks and the
report), :mod:`.loads` (the GPU work), :mod:`.nvml_probe` (raw NVML and ``nvidia-smi``
readings the meters are compared with), :mod:`.phases` (the seven phases), :mod:`.runner`
(the whole run).
"""

from __future__ import annotations

from ecnas.gpucheck.plan import ValidationPlan
from ecnas.gpucheck.results import Check, ValidationReport
from ecnas.gpucheck.runner import run_gpu_validation

__all__ = ["Check", "ValidationPlan", "ValidationReport", "run_gpu_validation"]
