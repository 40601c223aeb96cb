"""Tables on the dashboard pages: ``st.dataframe`` with missing values shown as ``—`` and text columns wide
enough to read their longest cell.

Numbers stay numbers (so a column still sorts numerically): Streamlit's ``placeholder`` draws every missing
cell, numeric or text, as :data:`MISSING` instead of the literal ``None`` it shows by default.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import streamlit as st

MISSING = "—"
#: the header's tooltip of a run table's ``training`` column (:func:`with_training_notes`)
TRAINING_HELP = ("↗ still improving: the validation loss was still clearly falling over the last epochs when "
                 "training ended (lowest in the last 2, slope over the last 5 negative at p < 0.05), so a longer budget "
                 "(--min-steps, --early-stopping) would likely score higher. converged: it was not. no learning "
                 "signal: weights meant to train received no gradient in that phase (fine-tuning from random init "
                 "with BatchNorm in inference mode). Empty: too few epochs to tell, or a run from before.")
# Streamlit sizes text columns to a fixed default and cuts longer cells with "…"; these turn the longest
# cell's length into pixels (Source Sans at the table's 14 px averages under 8 px a character).
CHAR_PX = 7.5
PADDING_PX = 32
# A wide column makes the table scroll sideways, which loses nothing; a cut cell loses the end of a sentence
# (a task's "about" says how to get its data). 240 characters, the longest description shipped, fit.
MAX_PX = 1900


def _is_text(column: pd.Series) -> bool:
    return column.dtype == object or isinstance(column.dtype, pd.StringDtype)


def text_widths(frame: pd.DataFrame) -> dict[str, int]:
    """Pixels per text column of ``frame``: enough for its longest cell and its header, at most ``MAX_PX``."""
    widths = {}
    for name in frame.columns:
        column = frame[name]
        if not _is_text(column):
            continue
        longest = max([len(str(name))] + [len(str(v)) for v in column.dropna()])
        widths[str(name)] = int(min(MAX_PX, longest * CHAR_PX + PADDING_PX))
    return widths


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as a table shows it: empty strings in text columns become missing (drawn as ``—``)."""
    shown = frame.copy()
    for name in shown.columns:
        if _is_text(shown[name]):
            shown[name] = shown[name].map(lambda v: None if isinstance(v, str) and not v.strip() else v)
    return shown


def show_table(frame: pd.DataFrame, column_config: Mapping[str, Any] | None = None, **kwargs: Any):
    """``st.dataframe`` of ``frame`` without its index, stretched to the page, missing cells drawn as ``—``,
    and every text column the caller did not configure sized to its content (``column_config`` entries
    win; keyword arguments go to ``st.dataframe``)."""
    shown = display_frame(frame)
    config: dict[str, Any] = {name: st.column_config.TextColumn(width=width)
                              for name, width in text_widths(shown).items()}
    config.update(column_config or {})
    options = dict(hide_index=True, width="stretch", placeholder=MISSING)
    options.update(kwargs)
    return st.dataframe(shown, column_config=config, **options)


def with_training_notes(table: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``table`` (one row per run of ``runs``, in the same order) with a ``training`` column after its first:
    each run's marker (:func:`transferlab.convergence.training_notes`: ``↗ still improving``, ``converged``,
    ``no learning signal``), and the column configuration that explains it, for :func:`show_table`."""
    from transferlab.convergence import training_notes

    out = table.copy()
    out.insert(min(1, len(out.columns)), "training", training_notes(runs).to_numpy())
    width = text_widths(display_frame(out[["training"]])).get("training")
    return out, {"training": st.column_config.TextColumn(help=TRAINING_HELP, width=width)}
