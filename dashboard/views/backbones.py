"""Backbones: sizes, inputs, published figures, parameter counts measured in runs, and freeze checks."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from transferlab.compare import freeze_checks, parameter_table
from transferlab.dashboard.charts import parameter_chart
from transferlab.dashboard.common import get_registry, guarded, load_runs, train_runs


def render() -> None:
    st.title("Backbones")
    registry = get_registry()
    table = pd.DataFrame([dict(backbone=b.name, family=b.family, min_input=b.min_input_size,
                               default_input=b.default_input_size,
                               imagenet_top1=b.imagenet_top1, published_params=b.published_params,
                               weights=", ".join(["none"] + [w.name for w in b.weight_sources]),
                               about=b.description)
                          for b in registry.backbones.values()])
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"imagenet_top1": st.column_config.NumberColumn("ImageNet top-1", format="%.3f"),
                                "published_params": st.column_config.NumberColumn("published params", format="%d")})
    runs = train_runs(load_runs())
    st.subheader("Parameter counts in runs")
    st.caption("Total and trainable parameters (with each run's head), as measured in stored runs; log scale. "
               "`transferlab backbones` prints the same for every backbone without running anything.")
    published = {b.name: b.published_params for b in registry.backbones.values()}
    params = parameter_table(runs, published)
    st.plotly_chart(parameter_chart(params), width="stretch")
    st.subheader("Freeze checks")
    st.caption("After every phase the runner compares every weight before and after: only the weights declared "
               "trainable may change (BatchNorm statistics included). A run that breaks this fails.")
    checks = freeze_checks(runs)
    if checks.empty:
        st.info("No runs yet.")
    else:
        st.dataframe(checks, hide_index=True, width="stretch")


guarded(render)
