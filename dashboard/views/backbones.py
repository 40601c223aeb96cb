"""Backbones: published figures beside measured ones (parameters, CPU latency on this machine, frozen-feature
accuracy in the store), Kornblith et al.'s ImageNet-vs-transfer question on real runs, and freeze checks."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from transferlab.analysis import summarize
from transferlab.backbone_study import (
    frozen_accuracy,
    frozen_accuracy_table,
    imagenet_vs_transfer,
    transfer_correlations,
)
from transferlab.compare import freeze_checks, parameter_table
from transferlab.dashboard.charts import imagenet_transfer_chart, parameter_chart, store_colours
from transferlab.dashboard.common import get_registry, guarded, load_runs, public_text, train_runs
from transferlab.dashboard.tables import show_table
from transferlab.latency import latency_lookup
from transferlab.registry import availability_label


def _offline(source) -> str:
    return public_text(availability_label(source, "offline", "downloads on first use"))


def render() -> None:
    st.title("Backbones")
    registry = get_registry()
    latency = latency_lookup()
    table = pd.DataFrame([dict(backbone=b.name, family=b.family, min_input=b.min_input_size,
                               default_input=b.default_input_size,
                               imagenet_top1=b.imagenet_top1, published_params=b.published_params,
                               latency_ms=latency.get(b.name),
                               weights=", ".join(["none"] + [f"{w.name} ({_offline(w)})" for w in b.weight_sources]),
                               about=b.description)
                          for b in registry.backbones.values()])
    st.caption("Published: ImageNet top-1 and parameter counts from each model's release. Measured: **latency** is "
               "the median CPU time of one image at the default input size on the machine serving this page "
               "(`transferlab backbones --measure`; empty: not measured here).")
    show_table(table, column_config={"imagenet_top1": st.column_config.NumberColumn("ImageNet top-1", format="%.3f"),
                                     "published_params": st.column_config.NumberColumn("published params",
                                                                                       format="%d"),
                                     "latency_ms": st.column_config.NumberColumn("latency (ms/image, measured)",
                                                                                 format="%.1f")})
    runs = train_runs(load_runs())
    summary = summarize(runs, baselines=registry.baseline_strategies()) if not runs.empty else pd.DataFrame()

    st.subheader("Frozen-feature accuracy, measured")
    st.caption("Test score of each backbone and weight source with the whole base frozen (the best frozen "
               "strategy when several ran), mean ± 95 % CI over seeds, per task and training-set size.")
    frozen = frozen_accuracy_table(frozen_accuracy(summary, registry.frozen_strategies())) if not summary.empty \
        else pd.DataFrame()
    if frozen.empty:
        st.info("No frozen-feature runs yet. `transferlab demo --backbones` runs the offline backbone ladder.")
    else:
        show_table(frozen)

    st.subheader("Do better ImageNet models transfer better?")
    st.caption("Kornblith et al. (2019) found ImageNet top-1 to predict transfer accuracy well for fine-tuning and "
               "less so for frozen features. Here the same question is asked of the runs in the store: one point "
               "per ImageNet checkpoint, one facet per task and size, with the correlation per facet below. The x "
               "axis is each checkpoint's published top-1 (measured by its authors at 224–260 px); the transfer "
               "runs use whatever input size they were given (the backbone demo: 96 px for all). With a handful of "
               "backbones a correlation is weak evidence (p-values are exact), and a strategy run with one seed "
               "has no interval: the table says so.")
    points = imagenet_vs_transfer(summary, registry.imagenet_top1()) if not summary.empty else pd.DataFrame()
    colours = store_colours(runs)
    st.plotly_chart(imagenet_transfer_chart(points, colours=colours), width="stretch")
    correlations = transfer_correlations(points)
    if not correlations.empty:
        show_table(correlations)  # the reading column is as wide as its sentence

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
        show_table(checks)


guarded(render)
