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


def verdict_html(runs: pd.DataFrame) -> str:
    """The verdict panel of the report: a paragraph per task and the table per size (empty without runs)."""
    from transferlab.verdict import recommend

    recommendation = recommend(runs)
    verdicts = recommendation.verdicts
    if verdicts.empty:
        return ""
    parts = ["<h2>Verdict</h2>"]
    for (task, version), text in recommendation.summaries().items():
        name = task + (f" (data {version})" if version else "")
        parts.append(f"<p><b>{html.escape(name)}</b>: {html.escape(text)}</p>")
    table = verdicts.sort_values(["task", "data_version", "size_key", "fraction_key"])[
        ["task", "size", "outcome", "winner", "winner_mean", "winner_n", "runner_up", "runner_up_mean", "evidence",
         "gain_text", "wall_seconds", "trainable_params"]]
    whole = lambda v: "—" if pd.isna(v) else f"{v:,.0f}"  # noqa: E731 (seconds and parameters are counts here)
    parts.append(table.to_html(index=False, na_rep="—", float_format=lambda v: f"{v:.3f}",
                               formatters={"wall_seconds": whole, "trainable_params": whole}))
    parts.append("<p>Paired t-test over seeds where both configurations ran the same seeds, else Welch's; a lead "
                 "with one seed is not tested; a lead that is not significant is a tie. The gain is over the "
                 "strongest scratch configuration at the size, not claimed when it was still improving.</p>")
    return "\n".join(parts)


def html_report(runs: pd.DataFrame, epochs: pd.DataFrame) -> str:
    """One HTML page, openable offline: every figure plus the summary table, with the runs made public
    (no local paths or secrets, whoever builds it)."""
    runs = public_runs(runs)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>transferlab report</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}</style></head><body>",
             "<h1>transferlab report</h1>",
             f"<p>{len(runs)} finished runs. Every number comes from a stored run.</p>", verdict_html(runs)]
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
