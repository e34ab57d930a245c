"""Wall-clock timing of a stage or an iteration, in one way everywhere."""
from __future__ import annotations

import time


class Stopwatch:
    """Started when made; `seconds()` is the wall-clock time since then (`time.perf_counter`), `lap()` the time since
    the previous lap (or the start), for a run of stages timed one after another."""

    def __init__(self):
        self.start = self.last_lap = time.perf_counter()

    def seconds(self, digits: int | None = None) -> float:
        elapsed = time.perf_counter() - self.start
        return elapsed if digits is None else round(elapsed, digits)

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.last_lap = now - self.last_lap, now
        return elapsed
