"""Reading and writing single table cells, one helper per idea: a True/False/None flag, a JSON-ready value, a
training-set size in words. Imports numpy and pandas only, so the store, the verdict and the ranking share them."""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

__all__ = ["json_ready", "known_bool", "records", "size_text"]


def known_bool(value: Any) -> bool | None:
    """A True/False/None cell as Python: None for a missing value (None, NaN as pandas reads SQL NULL,
    ``pd.NA``), else ``bool(value)`` (numpy bools and 0/1 included)."""
    if value is None or value is pd.NA:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):  # a list or array is not a cell
        pass
    return bool(value)


def json_ready(value: Any) -> Any:
    """``value`` as strict JSON data: NaN, infinities, ``pd.NA`` and NaT as None, numpy scalars as Python ones,
    dicts, lists and tuples converted item by item."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def records(frame: pd.DataFrame, drop: Iterable[str] = ()) -> list[dict[str, Any]]:
    """A DataFrame's rows as JSON-ready dicts (:func:`json_ready`), without the columns in ``drop``."""
    frame = frame.drop(columns=[c for c in drop if c in frame])
    return [json_ready(row) for row in frame.to_dict(orient="records")]


def size_text(examples_per_class: Any = None, fraction: Any = None) -> str:
    """How a training-set size reads: ``5 per class``, ``fraction 0.25``, ``all labelled examples``. A missing
    value (None, NaN, or the -1 the verdict uses as a sortable "not set") means not set."""
    def given(value: Any) -> bool:
        return value is not None and value is not pd.NA and np.isfinite(float(value)) and float(value) != -1

    if given(examples_per_class):
        return f"{int(examples_per_class)} per class"
    if given(fraction):
        return f"fraction {float(fraction):g}"
    return "all labelled examples"
