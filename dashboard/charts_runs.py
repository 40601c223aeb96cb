"""Charts of one run's test predictions: pure functions from counts to a plotly Figure (no Streamlit here).

The confusion matrix is normalised by true class, so each row reads as "of the test images of this class,
the share predicted as each class" and a rare class is as visible as a common one; the counts stay in
the cells' text and hover.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from transferlab.dashboard.charts import TEMPLATE, empty_figure, finish_figure

__all__ = ["MAX_CELL_TEXT_CLASSES", "confusion_heatmap", "normalise_by_true_class"]

#: with more classes than this the cells carry no text (it would not fit); hover still tells each cell
MAX_CELL_TEXT_CLASSES = 15


def normalise_by_true_class(counts: np.ndarray) -> np.ndarray:
    """Each row of ``counts`` (true class x predicted class) divided by its total: the share of that class's
    test images predicted as each class. Rows of a class without test images are NaN (no colour, not 0)."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), np.nan)


def confusion_heatmap(counts: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str],
                      title: str = "Confusion matrix") -> go.Figure:
    """The confusion matrix (rows the true class, columns the predicted one) as a heatmap of shares normalised
    by true class (:func:`normalise_by_true_class`), coloured from white
    (none) to dark blue (all); each cell's text holds its share and count while the classes are few."""
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.size == 0 or counts.sum() == 0:
        return empty_figure("No confusion matrix stored for this run.")
    k = counts.shape[0]
    names = [str(n) for n in class_names][:k] + [str(i) for i in range(len(class_names), k)]
    shares = normalise_by_true_class(counts)
    text = [[("" if not np.isfinite(shares[i, j]) else f"{shares[i, j]:.2f}<br>({int(counts[i, j])})")
             for j in range(k)] for i in range(k)]
    show_text = k <= MAX_CELL_TEXT_CLASSES
    hover = [[f"true {names[i]} → predicted {names[j]}: {int(counts[i, j])} of {int(counts[i].sum())}"
              for j in range(k)] for i in range(k)]
    fig = go.Figure(go.Heatmap(
        z=shares, x=names, y=names, text=text if show_text else None, texttemplate="%{text}" if show_text else None,
        customdata=hover, hovertemplate="%{customdata}<br>share of the true class: %{z:.2f}<extra></extra>",
        colorscale="Blues", zmin=0.0, zmax=1.0, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="share of<br>true class"))))
    side = max(360, min(900, 120 + 36 * k))
    fig.update_xaxes(title_text="predicted class", type="category", automargin=True, tickangle=-45 if k > 8 else 0)
    fig.update_yaxes(title_text="true class", type="category", automargin=True, autorange="reversed")
    fig.update_layout(template=TEMPLATE, height=side, margin=dict(l=60, r=20, t=60, b=60))
    return finish_figure(fig, title, ("each row sums to 1: the share of that true class's test images predicted as "
                                      f"each class; counts in brackets, {int(counts.sum())} test images in all"))
