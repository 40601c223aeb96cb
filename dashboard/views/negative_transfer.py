"""Negative transfer: gain over the random-init baseline per starting point and size, and gain against
transferability."""
from __future__ import annotations

import streamlit as st

from transferlab.analysis import metric_label, summarize
from transferlab.compare import gain_per_run, negative_transfer
from transferlab.dashboard.charts import gain_vs_similarity_chart, negative_transfer_heatmap, store_colours
from transferlab.dashboard.common import guarded, load_runs, no_runs_message, train_runs


def render() -> None:
    st.title("Negative transfer")
    runs = train_runs(load_runs())
    if runs.empty:
        no_runs_message("finished runs")
        return
    task = st.selectbox("Task", sorted(runs["task"].unique()))
    runs = runs[runs["task"] == task]
    summary = summarize(runs)
    st.plotly_chart(negative_transfer_heatmap(negative_transfer(summary)), width="stretch")
    st.caption(f"Each cell: mean gain in {metric_label(runs)} over the random-init baseline at that size, ± its "
               "95 % CI. ▼ marks gains significantly below zero (negative transfer), ▲ significantly above. Rows "
               "are the starting points in the store: pretrained weight sources, sources the engine pretrained on "
               "another task, and corrupted (shuffled-label) sources. `docs/sweeps/` holds ready-made sweeps that "
               "add them.")
    st.plotly_chart(gain_vs_similarity_chart(gain_per_run(runs), colours=store_colours(load_runs())),
                    width="stretch")
    st.caption("Each run's gain against LogME, the transferability of its starting features to the target's "
               "training subset, measured before any training (higher: the features explain the labels better). "
               "One facet per training-set size, each with its own Spearman correlation: pooled over sizes, the "
               "correlation would mostly measure the size, which moves both numbers.")


guarded(render)
