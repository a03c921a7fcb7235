"""The work the validation meters: steady matrix multiplies sized to the board, queued
(asynchronous) work, busy stretches of a given length and a real training step of a given
length.

On a GPU every call queues CUDA kernels and ``synchronize`` waits for them, so work can outlive
the Python call that launched it, which is what the window-semantics phase needs to show. The
test suite runs the same logic on the CPU (``TorchLoad("cpu")``): there, "asynchronous" work
runs in a thread and ``synchronize`` joins it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class TorchLoad:
    """Matrix multiplies on ``device`` ("cuda" or "cpu")."""

    def __init__(self, device: str = "cuda", n: int | None = None) -> None:
        import torch

        self.torch = torch
        self.cuda = device.startswith("cuda")
        self.device = torch.device(device)
        if self.cuda:
            props = torch.cuda.get_device_properties(self.device)
            # 8192² bf16 keeps an H100's tensor cores busy (~1 TFLOP a multiply); smaller
            # boards get 4096². Three matrices of that size are a few hundred MB at most.
            self.n = n or (8192 if props.total_memory >= 16 * 2**30 else 4096)
            bf16 = torch.cuda.is_bf16_supported()
            self.dtype = torch.bfloat16 if bf16 else torch.float16
        else:
            self.n = n or 256
            self.dtype = torch.float32
            # One intra-op thread (here and in the thread of launch()): on a small, busy
            # machine a two-thread OpenMP team waits a time slice at every barrier, which
            # made tiny multiplies ~100x slower on a thread than measured on the main one.
            torch.set_num_threads(1)
        gen = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(self.n, self.n, generator=gen) / self.n**0.5
        self.a = a.to(self.device, self.dtype)
        self.b = a.t().contiguous().to(self.device, self.dtype)
        self.out = torch.empty_like(self.a)
        self._thread: threading.Thread | None = None
        self.matmul_s = self._time_matmul()

    @property
    def description(self) -> str:
        """The load in words for the report, e.g. ``CUDA matmul 8192x8192 bfloat16``."""
        kind = "CUDA" if self.cuda else "CPU (test mode)"
        return f"{kind} matmul {self.n}x{self.n} {str(self.dtype).replace('torch.', '')}"

    def synchronize(self) -> None:
        """Wait until every piece of work launched so far has finished."""
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def _matmuls(self, count: int) -> None:
        for _ in range(count):
            self.torch.matmul(self.a, self.b, out=self.out)

    def _time_matmul(self) -> float:
        self._matmuls(3)  # kernel selection, allocator
        self.synchronize()
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            self._matmuls(10)
            self.synchronize()
            best = min(best, (time.perf_counter() - t0) / 10)
        return max(best, 1e-7)

    def count_for(self, seconds: float) -> int:
        """How many multiplies take about ``seconds`` (at least one), from the timed multiply of the
        constructor."""
        return max(1, round(seconds / self.matmul_s))

    def run_for(self, seconds: float) -> int:
        """A steady load for ``seconds`` of wall time (synchronized at the end); returns the
        number of multiplies."""
        chunk = self.count_for(0.05)  # check the clock every ~50 ms of work
        done = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self._matmuls(chunk)
            done += chunk
            if self.cuda:
                self.torch.cuda.synchronize(self.device)  # keep the queue short: honest timing
        return done

    def busy(self, seconds: float) -> None:
        """About ``seconds`` of work, finished when this returns."""
        self._matmuls(self.count_for(seconds))
        self.synchronize()

    def launch(self, seconds: float) -> None:
        """Queue about ``seconds`` of work and return at once."""
        count = self.count_for(seconds)
        if self.cuda:
            self._matmuls(count)
            return
        self.synchronize()

        def work() -> None:
            self.torch.set_num_threads(1)  # OpenMP's thread count is per calling thread
            self._matmuls(count)

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()

    def training_step(self, target_ms: float) -> Callable[[], None]:
        """A real training step (forward, backward, optimizer step, loss read back) of a small
        MLP, its inner repeat count tuned so one step takes about ``target_ms``."""
        torch = self.torch
        width = 2048 if self.cuda else 128
        model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(),
                                    torch.nn.Linear(width, width)).to(self.device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        x = torch.randn(256, width, device=self.device)
        target = torch.randn(256, width, device=self.device)
        inner = [1]

        def step() -> None:
            loss: Any = None
            for _ in range(inner[0]):
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.mse_loss(model(x), target)
                loss.backward()
                opt.step()
            loss.item()  # the loop reads its loss every step, as training loops do

        for _ in range(3):
            step()
        t0 = time.perf_counter()
        step()
        one = max(time.perf_counter() - t0, 1e-6)
        inner[0] = max(1, round(target_ms / 1000.0 / one))
        return step
