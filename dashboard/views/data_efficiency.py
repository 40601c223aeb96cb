"""Data efficiency: the test score against labelled examples per class, with crossovers and the gain over the
random-init baseline."""
from __future__ import annotations

import streamlit as st

from transferlab.analysis import metric_label, summarize
from transferlab.compare import crossovers
from transferlab.dashboard.charts import data_efficiency_chart, gain_chart
from transferlab.dashboard.common import filter_runs, guarded, load_runs, no_runs_message, train_runs


def render() -> None:
    st.title("Data efficiency")
    runs = filter_runs(train_runs(load_runs()), "efficiency", columns=("backbone", "strategy", "weights"))
    if runs.empty:
        no_runs_message("finished runs match")
        return
    task = st.selectbox("Task", sorted(runs["task"].unique()))
    summary = summarize(runs[runs["task"] == task])
    left, right = st.columns(2)
    with left:
        st.plotly_chart(data_efficiency_chart(summary, crossovers(summary)), width="stretch")
        st.caption(f"Mean {metric_label(summary)} over seeds with its 95 % confidence interval; stars mark where "
                   "one configuration overtakes another.")
    with right:
        st.plotly_chart(gain_chart(summary), width="stretch")
        st.caption("Gain over the random-init baseline (the strategy that trains from random weights) at the same "
                   "size, Welch 95 % CI. Below zero: the starting point hurts.")
    st.dataframe(summary.drop(columns=["label", "config"]), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("mean", "ci95", "gain_vs_baseline", "gain_ci95")})


guarded(render)
