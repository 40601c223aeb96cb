"""Where a run's time goes: wall seconds per stage, kept in the run's manifest (``stage_seconds``).

A short run is mostly fixed cost (building, loading weights, tracing, validation, the test pass, checkpoints);
``benchmarks/run_fixed_cost.py`` reads these to show which stage a change cut.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class StageClock:
    """Adds the wall time spent inside each ``with clock("stage"):`` block to that stage's total."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0

    def rounded(self) -> dict[str, float]:
        """The totals, to the millisecond, for the manifest."""
        return {stage: round(value, 3) for stage, value in self.seconds.items()}
