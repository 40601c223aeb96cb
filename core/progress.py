"""Progress bars (tqdm) for weight conversion, feature extraction and training."""
from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm

_POSITION = int(os.environ.get("TRANSFERLAB_BAR_POSITION", "0"))


def bar(desc: str, total: int | None, unit: str = "it", leave: bool = False) -> tqdm:
    """A progress bar on stderr; quiet when ``TRANSFERLAB_QUIET`` is set, sparse when not a terminal."""
    quiet = os.environ.get("TRANSFERLAB_QUIET", "") not in ("", "0")
    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        leave=leave,
        disable=quiet,
        position=_POSITION,
        mininterval=0.5 if tty else 15.0,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def say(text: str) -> None:
    """Print a line without breaking the progress bars."""
    if os.environ.get("TRANSFERLAB_QUIET", "") in ("", "0"):
        tqdm.write(text, file=sys.stderr)


def keras_bar_callback(desc: str, total_steps: int, unit: str = "batch") -> Any:
    """A Keras callback that advances one bar per batch (training or prediction)."""
    import keras

    class _BarCallback(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.bar = None

        def _open(self):
            if self.bar is None:
                self.bar = bar(desc, total_steps, unit)

        def on_train_batch_end(self, batch, logs=None):
            self._open()
            self.bar.update(1)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

        def on_predict_batch_end(self, batch, logs=None):
            self._open()
            self.bar.update(1)

        def on_epoch_end(self, epoch, logs=None):
            if self.bar is not None and logs and "val_accuracy" in logs:
                self.bar.set_postfix(epoch=epoch + 1, val_acc=f"{float(logs['val_accuracy']):.3f}", refresh=False)

        def close(self):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

        on_train_end = on_predict_end = lambda self, logs=None: self.close()

    return _BarCallback()


def import_tensorflow_quietly(threads: tuple[int, int] | None = None) -> None:
    """Import TensorFlow with its start-up chatter (CUDA probing, oneDNN notices) kept off the terminal.

    TensorFlow writes those lines from C++ before its log level applies, so stderr is pointed at
    /dev/null for the import and the first device query, then restored. ``threads`` = (intra-op,
    inter-op) sizes the thread pools; it must happen here, between the import and the first device
    query, because once the runtime has started the setters raise and change nothing.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        if threads is not None:
            tf.config.threading.set_intra_op_parallelism_threads(threads[0])
            tf.config.threading.set_inter_op_parallelism_threads(threads[1])
        tf.config.list_logical_devices()
        # Keras predicts a last, smaller batch per split; TF's retracing notice about it is noise here.
        tf.get_logger().setLevel("ERROR")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
