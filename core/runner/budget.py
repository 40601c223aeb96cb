"""How long a phase trains: the step budget, and early stopping that restores the best weights.

The floor of a phase is ``ceil(min_steps / steps_per_epoch)`` epochs: ``min_steps`` gives a small training
set (50 images are two steps an epoch) as many optimizer steps as a large one gets from its epochs. Its budget
(the most epochs it runs) is ``max(epochs, floor)``, except where early stopping is on and the floor reaches
the epochs: then it is ``floor + ROOM_PATIENCES * patience`` (:data:`ROOM_PATIENCES`), since a budget equal
to the floor would leave the watch no epoch to stop in (``--min-steps 50 --early-stopping 5`` with the
default 10 epochs ran exactly its 25-epoch floor at 5 images per class, never stopping early; now its cap is
75 and the small CNN from scratch on Animal-MNIST, seed 0, stops converged after 48, at 0.610). A floor below
the epochs leaves the budget at the epochs, as before. With ``early_stopping = p > 0`` Keras'
``EarlyStopping(monitor="val_loss", patience=p, restore_best_weights=True)`` ends the phase ``p`` epochs after
its best validation loss and puts the weights of that epoch back; it watches only once the phase has run its
``min_steps`` (``start_from_epoch``), so the early rise of the validation loss while BatchNorm statistics
settle from random init ends nothing, and every phase runs at least ``min_steps`` steps. Whether the phase
was still improving when it ended is :func:`transferlab.convergence.still_improving` of the losses the watch
records (False when the watch stopped it).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


#: where the step floor reaches a phase's epochs and early stopping is on, the phase may run this many times
#: its patience past the floor: room for the watch to find a later best more than once before the cap; a run
#: that reaches the cap still improving says so (``still_improving``)
ROOM_PATIENCES = 10


def phase_epochs(epochs: int, steps_per_epoch: int, min_steps: int, patience: int = 0) -> tuple[int, int]:
    """``(budget, floor)`` in epochs: the phase runs at most ``budget`` epochs, and at least ``floor`` (enough
    for ``min_steps`` optimizer steps; 0 without a step budget): early stopping watches from the epoch that
    completes the floor on (``start_from_epoch`` = the offset + ``floor - 1``). The budget is
    ``max(epochs, floor)``, or ``floor + ROOM_PATIENCES * patience`` when ``patience > 0`` and the floor is at
    or above ``epochs`` (the module docstring says why)."""
    floor = math.ceil(min_steps / steps_per_epoch) if min_steps and steps_per_epoch else 0
    if patience > 0 and floor and floor >= epochs:
        return floor + ROOM_PATIENCES * patience, floor
    return max(epochs, floor), floor


def phase_watch(patience: int, start_from_epoch: int):
    """The callback that keeps a phase's validation losses and, with ``patience > 0``, stops it early and
    restores its best weights (Keras ``EarlyStopping`` on ``val_loss``, from ``start_from_epoch``, an
    epoch index as ``fit`` counts them). Its state travels in the epoch backup (:func:`state` /
    :func:`restore`), so a resumed phase stops where an uninterrupted one would."""
    import keras

    class PhaseWatch(keras.callbacks.EarlyStopping):
        """EarlyStopping on the validation loss that also records the loss of every epoch of the phase."""

        def __init__(self) -> None:
            super().__init__(monitor="val_loss", patience=max(patience, 1), restore_best_weights=True,
                             start_from_epoch=start_from_epoch)
            self.stops = patience > 0
            self.losses: list[float | None] = []
            self.stopped = False

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self.losses, self.stopped = [], False

        def get_monitor_value(self, logs):
            # an epoch before the step floor may skip validation (:func:`validation_epochs`): nothing to warn of
            return (logs or {}).get(self.monitor)

        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("val_loss")
            self.losses.append(None if loss is None else float(loss))
            if self.stops:
                super().on_epoch_end(epoch, logs)
                self.stopped = self.stopped_epoch > 0

        def on_train_end(self, logs=None):
            if self.stops:
                super().on_train_end(logs)

        @property
        def best_epoch_index(self) -> int | None:
            """The epoch (as ``fit`` counts them) whose weights the phase ends with, when it restores any."""
            return self.best_epoch if self.stops and self.best_weights is not None else None

    return PhaseWatch()


#: before a phase's step floor, early stopping does not watch, so validating there only draws the learning curve:
#: every this many epochs is enough for it (a 5-per-class fine-tune phase of Lite0 at 96 px spent most of its time
#: pushing 500 validation images through the network in the 24 epochs before its 25-epoch floor)
VALIDATE_BEFORE_FLOOR_EVERY = 5


#: the last epochs of a phase that are always validated (the window `transferlab.convergence.still_improving` reads)
LAST_VALIDATED = 5


def validation_epochs(offset: int, epochs: int, floor: int) -> list[int] | int:
    """Keras ``validation_freq`` for a phase of ``epochs`` epochs from epoch index ``offset`` with a step floor of
    ``floor`` epochs: every epoch from the first one the watch judges (index ``offset + floor - 1``) on, and every
    :data:`VALIDATE_BEFORE_FLOOR_EVERY`-th before it, and the last :data:`LAST_VALIDATED` of the budget; 1 (every
    epoch) without a floor. The watch's decisions and the phase's weights are the same as validating every
    epoch; the learning curve before the floor is sparser. The runner thins only where early stopping is on:
    without it a phase's ``best_epoch`` is its lowest validation loss over every epoch."""
    watched_from = offset + max(floor - 1, 0)
    if watched_from <= offset:
        return 1
    # the last few epochs of the budget always: `still_improving` judges the phase on them
    last = offset + epochs - LAST_VALIDATED
    return [e + 1 for e in range(offset, offset + epochs)
            if e >= watched_from or e >= last or (e + 1 - offset) % VALIDATE_BEFORE_FLOOR_EVERY == 0]


# ------------------------------------------------------------------------------------------ backup state

def state(watch: Any) -> dict[str, Any]:
    """What a backup keeps of a :func:`phase_watch` (the best weights go in a file of their own)."""
    best = None if watch.best is None else float(watch.best)  # Keras may hold a NumPy scalar: JSON takes floats
    return dict(losses=watch.losses, stopped=watch.stopped, best=best, best_epoch=int(watch.best_epoch),
                wait=int(watch.wait), stopped_epoch=int(watch.stopped_epoch))


def restore(watch: Any, saved: dict[str, Any], best_weights: list[np.ndarray] | None) -> None:
    """Put a backed-up state back into ``watch`` (after its ``on_train_begin`` reset it)."""
    watch.losses = list(saved["losses"])
    watch.stopped = bool(saved["stopped"])
    watch.best, watch.best_epoch, watch.wait = saved["best"], int(saved["best_epoch"]), int(saved["wait"])
    watch.stopped_epoch = int(saved["stopped_epoch"])
    watch.best_weights = best_weights


def write_weights(path: Path, weights: list[np.ndarray]) -> str:
    """Save a list of weight arrays (``model.get_weights()``) atomically; returns its sha256."""
    from transferlab.safe_io import VerifiedFile

    return VerifiedFile(path).write(lambda tmp: np.savez(tmp, *weights))


def read_weights(path: Path, sha256: str) -> list[np.ndarray] | None:
    """The arrays :func:`write_weights` saved, or None when the file is missing or fails its hash."""
    from transferlab.safe_io import VerifiedFile

    if not VerifiedFile(path).check(sha256):
        return None
    with np.load(path, allow_pickle=False) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]
