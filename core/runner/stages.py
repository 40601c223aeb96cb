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


def step_timer():
    """A Keras callback adding up the wall time of training batches (``seconds``): the optimizer steps
    themselves (the first one traces the step), without validation or the callbacks between epochs."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        seconds = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds += time.perf_counter() - self.t0

    return StepTimer()
