"""The Keras callbacks a run uses: epoch log, live progress, NaN guard."""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

EpochLogger = Callable[[int, str, dict[str, float], float], None]


def finite_weights(model: Any) -> bool:
    """Whether every weight of ``model`` is finite."""
    from transferlab.runner.freezing import model_weights

    return all(np.isfinite(v.numpy()).all() for v in model_weights(model))


def nan_guard():
    """A callback that stops training at the first non-finite loss; its ``hit`` tells whether it fired."""
    import keras

    class NaNGuard(keras.callbacks.Callback):
        """Stops training at the first non-finite loss (the run then ends with status ``nan``)."""

        def __init__(self) -> None:
            super().__init__()
            self.hit = False

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.hit = True
                self.model.stop_training = True

    return NaNGuard()



def epoch_log_callback(log_epoch: EpochLogger, phase: str, score_key: str = "val_accuracy"):
    """A Keras callback that forwards each epoch's metrics (epochs numbered across phases) and duration.

    The task's validation score (``score_key``, e.g. ``val_accuracy`` or ``val_map50``) is also sent as
    ``val_score``, and its training counterpart (``accuracy``), where Keras logs one, as ``score``: the
    store's columns that learning curves draw.
    """
    import keras

    class _EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            if score_key in metrics:
                metrics["val_score"] = metrics[score_key]
            if score_key.removeprefix("val_") in metrics:
                metrics["score"] = metrics[score_key.removeprefix("val_")]
            log_epoch(epoch + 1, phase, metrics, time.perf_counter() - self.t0)

    return _EpochLog()


def progress_callback(report: Callable[[dict[str, Any]], None], phase: str, offset: int, epochs: int, steps: int,
                       every_s: float = 2.0):
    """A Keras callback that reports (phase, epoch, step, loss) at most every ``every_s`` seconds."""
    import keras

    class _Progress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.last = 0.0
            self.epoch = offset
            self.metrics: dict[str, float] = {}

        def _send(self, step: int, force: bool = False) -> None:
            now = time.perf_counter()
            if force or now - self.last >= every_s:
                self.last = now
                report(dict(phase=phase, epoch=self.epoch + 1, first_epoch=offset + 1, last_epoch=offset + epochs,
                            step=step, steps=steps, metrics=self.metrics))

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self._send(0, force=True)

        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                self.metrics["loss"] = float(logs["loss"])
            self._send(batch + 1)

        def on_epoch_end(self, epoch, logs=None):
            self.metrics = {k: float(v) for k, v in (logs or {}).items()}
            self._send(steps, force=True)

    return _Progress()
