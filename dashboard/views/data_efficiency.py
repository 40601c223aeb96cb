"""Data efficiency: the test score against labelled examples per class, with crossovers and the gain over the
random-init baseline."""
from __future__ import annotations

import streamlit as st

from transferlab.analysis import metric_label, summarize
from transferlab.compare import crossovers, score_intervals
from transferlab.dashboard.charts import data_efficiency_chart, gain_chart, store_colours
from transferlab.dashboard.common import filter_runs, guarded, load_runs, no_runs_message, train_runs
from transferlab.dashboard.tables import show_table


def render() -> None:
    st.title("Data efficiency")
    runs = filter_runs(train_runs(load_runs()), "efficiency", columns=("backbone", "strategy", "weights"))
    if runs.empty:
        no_runs_message("finished runs match")
        return
    task = st.selectbox("Task", sorted(runs["task"].unique()))
    runs = runs[runs["task"] == task]
    summary = summarize(runs)
    colours = store_colours(load_runs())  # one colour per configuration on every page
    left, right = st.columns(2)
    with left:
        st.plotly_chart(data_efficiency_chart(score_intervals(summary, runs), crossovers(summary), colours=colours),
                        width="stretch")
        st.caption(f"Mean {metric_label(summary)} over seeds with its 95 % confidence interval (Student t, cut at 0 "
                   "and 1, which a score cannot pass); a configuration run with one seed shows instead the Wilson "
                   "95 % interval of its test accuracy over the test examples. Stars mark where one configuration "
                   "overtakes another: every pair with up to 3 configurations, else pairs that are neighbours in "
                   "the ranking at one of the two sizes.")
    with right:
        st.plotly_chart(gain_chart(summary, colours=colours), width="stretch")
        st.caption("Gain over the random-init baseline (the strategy that trains from random weights) at the same "
                   "size, Welch 95 % CI cut at -1 and 1. Below zero: the starting point hurts.")
    show_table(summary.drop(columns=["label", "config"]),
               column_config={**{c: st.column_config.NumberColumn(format="%.3f")
                                 for c in ("mean", "ci95", "gain_vs_baseline", "gain_ci95")},
                              "examples_per_class": st.column_config.NumberColumn(
                                  help="— : all labelled examples")})


guarded(render)
