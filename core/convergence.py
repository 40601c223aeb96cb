"""Whether a run had finished learning, from its validation losses: the "still improving" rule, and the
markers the run tables show. Pure: no TensorFlow (the dashboard imports it).

**Still improving** (:func:`still_improving`), the rule: a phase of at least :data:`MIN_EPOCHS_TO_JUDGE`
epochs was still improving when it ended if its lowest validation loss came in one of its last
:data:`BEST_WITHIN_LAST` epochs *and* the least-squares slope of the validation loss over its last
:data:`WINDOW` epochs is negative with one-sided p < :data:`SLOPE_P` (``scipy.stats.linregress``): more
training would very likely have lowered the loss further. A phase ended by early stopping is recorded as not
still improving whatever its losses (the runner sets False): its watch saw no better loss for ``patience``
epochs, though with patience 1 the best lies one epoch back, inside :data:`BEST_WITHIN_LAST`, and the rule
alone could say True. A noisy plateau whose last epoch happens to be the best is not still improving either
(its slope is not clearly negative). A run is still improving when its last phase is: that
phase made the weights it was tested with. The store keeps it in the ``still_improving`` column.
"""
from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

#: the last epochs the slope of the validation loss is fitted over
WINDOW = 5
#: the best validation loss must lie within this many last epochs
BEST_WITHIN_LAST = 2
#: one-sided p-value under which the fitted slope counts as clearly negative
SLOPE_P = 0.05
#: fewer epochs than this say nothing about convergence: still_improving is None (unknown); with fewer
#: points than the window, even a loss that fell every epoch has no slope clearly negative at p < 0.05
MIN_EPOCHS_TO_JUDGE = WINDOW

#: how the run tables mark a run, by what its record says
STILL_IMPROVING = "↗ still improving"
CONVERGED = "converged"
NO_LEARNING_SIGNAL = "no learning signal"


def still_improving(val_losses: Sequence[float | None]) -> bool | None:
    """Whether a phase with these per-epoch validation losses was still improving when it ended (the rule in
    the module docstring); None when fewer than :data:`MIN_EPOCHS_TO_JUDGE` finite losses are known."""
    from scipy import stats

    losses = np.array([v for v in val_losses if v is not None and math.isfinite(v)], dtype=float)
    if len(losses) < MIN_EPOCHS_TO_JUDGE:
        return None
    if int(np.argmin(losses)) < len(losses) - BEST_WITHIN_LAST:
        return False
    tail = losses[-WINDOW:]
    if np.ptp(tail) == 0:
        return False  # flat: nothing left to gain (and linregress cannot fit a constant)
    fit = stats.linregress(np.arange(len(tail)), tail, alternative="less")
    return bool(fit.slope < 0 and fit.pvalue < SLOPE_P)


def _phases(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return [p for p in value if isinstance(p, dict)] if isinstance(value, list) else []


def training_note(still: Any, phases_json: Any) -> str:
    """The marker of one run: :data:`STILL_IMPROVING`, :data:`CONVERGED` or empty (unknown), and
    :data:`NO_LEARNING_SIGNAL` (with the phases it names) where a phase's base received no gradient."""
    from transferlab.cells import known_bool

    notes = []
    known = known_bool(still)
    if known is not None:
        notes.append(STILL_IMPROVING if known else CONVERGED)
    silent = [p.get("phase", "?") for p in _phases(phases_json) if p.get("no_learning_signal")]
    if silent:
        notes.append(f"{NO_LEARNING_SIGNAL} ({', '.join(silent)})")
    return "; ".join(notes)


def training_notes(runs: Any) -> Any:
    """:func:`training_note` of every run of a runs frame, as a Series on its index (empty text: unknown)."""
    import pandas as pd

    if runs.empty:
        return pd.Series([], index=runs.index, dtype=object)
    still = runs["still_improving"] if "still_improving" in runs else pd.Series(None, index=runs.index)
    phases = runs["phases_json"] if "phases_json" in runs else pd.Series(None, index=runs.index)
    return pd.Series([training_note(s, p) for s, p in zip(still, phases)], index=runs.index, dtype=object)
