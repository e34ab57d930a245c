"""Wall-clock timing of a stage or an iteration, in one way everywhere."""
from __future__ import annotations

import time


class Stopwatch:
    """Started when made; `seconds()` is the wall-clock time since then (`time.perf_counter`)."""

    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self, digits: int | None = None) -> float:
        elapsed = time.perf_counter() - self.start
        return elapsed if digits is None else round(elapsed, digits)
