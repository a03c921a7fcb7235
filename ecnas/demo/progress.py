"""Step-by-step progress for the demo, on stderr so ``--json`` keeps stdout clean."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class StepPrinter:
    """Prints ``[k/n] title`` when a step starts and its duration when it ends."""

    total: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    _index: int = 0
    _started: float = 0.0
    _title: str = ""

    def start(self, title: str) -> None:
        """Print ``[k/n] title …`` for the next step and start its clock."""
        self._index += 1
        self._title = title
        self._started = time.perf_counter()
        self.say(f"[{self._index}/{self.total}] {title} …")

    def done(self, detail: str = "") -> None:
        """Print how long the current step took in seconds, with ``detail`` after it."""
        took = time.perf_counter() - self._started
        tail = f": {detail}" if detail else ""
        self.say(f"      done in {took:.1f} s{tail}")

    def say(self, line: str) -> None:
        """Print one line to the stream (stderr by default) and flush it."""
        print(line, file=self.stream, flush=True)
