"""A self-contained static HTML report of every comparison plot (plotly.js inlined once).

The report is made to be passed on, so it never holds this machine's paths or secrets, in read-only mode
or not: its runs go through :func:`transferlab.redact.public_runs` first (a weights file shows as
``file:x.weights.h5 (sha256 1a2b3c4d)``).
"""
from __future__ import annotations

import html

import pandas as pd

from transferlab.analysis import summarize
from transferlab.compare import crossovers, curves, gain_per_run, negative_transfer, score_intervals
from transferlab.dashboard import charts
from transferlab.redact import public_runs


def report_figures(runs: pd.DataFrame, epochs: pd.DataFrame) -> list[tuple[str, object]]:
    """(title, figure) for every plot of the report, per task, coloured and bounded as on the pages (one
    colour per configuration from the whole store, Wilson intervals for single-seed accuracies)."""
    figures: list[tuple[str, object]] = []
    colours = charts.store_colours(runs)
    for task in sorted(runs["task"].unique()) if not runs.empty else []:
        part = runs[runs["task"] == task]
        summary = summarize(part)
        figures += [
            (f"{task}: data efficiency", charts.data_efficiency_chart(score_intervals(summary, part), crossovers(summary),
                                                                       colours=colours)),
            (f"{task}: gain over the random-init baseline", charts.gain_chart(summary, colours=colours)),
            (f"{task}: negative transfer", charts.negative_transfer_heatmap(negative_transfer(summary))),
            (f"{task}: gain vs transferability", charts.gain_vs_similarity_chart(gain_per_run(part), colours=colours)),
            (f"{task}: learning curves", charts.learning_curves_chart(
                curves(epochs[epochs["run_id"].isin(part["run_id"])], part), colours=colours)),
        ]
    return figures


def html_report(runs: pd.DataFrame, epochs: pd.DataFrame) -> str:
    """One HTML page, openable offline: every figure plus the summary table, with the runs made public
    (no local paths or secrets, whoever builds it)."""
    runs = public_runs(runs)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>transferlab report</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}</style></head><body>",
             "<h1>transferlab report</h1>",
             f"<p>{len(runs)} finished runs. Every number comes from a stored run.</p>"]
    first = True
    for title, fig in report_figures(runs, epochs):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=True if first else False))
        first = False
    if not runs.empty:
        parts.append("<h2>Summary</h2>")
        parts.append(summarize(runs).to_html(index=False, float_format=lambda v: f"{v:.3f}"))
    parts.append("</body></html>")
    return "\n".join(parts)
