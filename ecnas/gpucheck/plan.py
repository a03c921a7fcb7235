"""How long and how large each phase of the GPU validation is.

Three plans: ``full`` (under 8 minutes on one H100), ``quick`` (under 4) and ``test`` (seconds,
for the test suite: the load runs on the CPU against the stand-in NVML library)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ValidationPlan:
    """Lengths and sizes of every phase of one validation run; the comments give each field's
    meaning and unit."""

    name: str
    steady_load_s: float  # counter vs power: length of the steady load
    poll_interval_s: float  # NVML power polling period (the issue asks for ~10 ms)
    update_probe_s: float  # how long the counter is polled to find its update period
    async_work_s: float  # window semantics: seconds of queued GPU work
    short_windows_ms: tuple[float, ...]  # short-window lengths
    short_window_repeats: int
    loop_steps_ms: tuple[float, ...]  # overhead: target step lengths
    loop_block_s: float  # one block of steps (metered or not)
    loop_rounds: int  # alternating metered / plain blocks per step length
    train_images: int  # the trainer at full width: training images (one epoch)
    eval_images: int  # evaluation images per split
    stem_channels: int  # 128 in NAS-Bench-101
    num_stacks: int
    cells_per_stack: int
    batch_size: int
    matrix_n: int | None  # matmul size for the steady load (None: sized to the board)

    @classmethod
    def full(cls) -> ValidationPlan:
        """The full plan: 30 s of steady load and one training epoch on 40,000 images (under 8
        minutes on one H100)."""
        return cls("full", steady_load_s=30.0, poll_interval_s=0.01, update_probe_s=2.0,
                   async_work_s=2.0, short_windows_ms=(5.0, 20.0, 100.0),
                   short_window_repeats=20, loop_steps_ms=(5.0, 20.0, 50.0), loop_block_s=2.0,
                   loop_rounds=4, train_images=40_000, eval_images=10_000, stem_channels=128,
                   num_stacks=3, cells_per_stack=3, batch_size=256, matrix_n=None)

    @classmethod
    def quick(cls) -> ValidationPlan:
        """The quick plan: 10 s of steady load and one training epoch on 10,000 images (under 4
        minutes on one H100)."""
        return cls("quick", steady_load_s=10.0, poll_interval_s=0.01, update_probe_s=1.0,
                   async_work_s=1.5, short_windows_ms=(5.0, 20.0, 100.0),
                   short_window_repeats=10, loop_steps_ms=(5.0, 20.0, 50.0), loop_block_s=1.0,
                   loop_rounds=3, train_images=10_000, eval_images=2_000, stem_channels=128,
                   num_stacks=3, cells_per_stack=3, batch_size=256, matrix_n=None)

    @classmethod
    def test(cls) -> ValidationPlan:
        """For the test suite only: CPU load, the stand-in NVML library, a narrow network."""
        return cls("test", steady_load_s=1.0, poll_interval_s=0.01, update_probe_s=0.5,
                   async_work_s=0.4, short_windows_ms=(5.0, 20.0, 100.0),
                   short_window_repeats=3, loop_steps_ms=(5.0, 20.0), loop_block_s=0.2,
                   loop_rounds=2, train_images=64, eval_images=32, stem_channels=8,
                   num_stacks=1, cells_per_stack=1, batch_size=32, matrix_n=96)
