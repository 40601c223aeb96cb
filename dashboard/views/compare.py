"""Compare: learning curves side by side (runs that differ only by seed drawn as mean with a band)."""
from __future__ import annotations

import streamlit as st

from transferlab.analysis import differing_settings, metric_label, run_labels
from transferlab.compare import GROUPS_PER_PAGE, curve_groups, curves
from transferlab.convergence import STILL_IMPROVING
from transferlab.dashboard.charts import learning_curves_chart, store_colours
from transferlab.dashboard.common import filter_runs, guarded, load_epochs, load_runs, no_runs_message, train_runs
from transferlab.dashboard.tables import show_table, with_training_notes


def render() -> None:
    st.title("Compare learning curves")
    runs = filter_runs(train_runs(load_runs()), "compare")
    if runs.empty:
        no_runs_message("finished runs match")
        return
    sizes = sorted(runs["examples_per_class"].dropna().unique())
    c1, c2, c3, c4 = st.columns(4)
    size = c1.selectbox("Labelled examples per class", ["all"] + [int(s) for s in sizes])
    score = metric_label(runs).removeprefix("test ")  # the task heads' name for it: accuracy, mAP@0.5, ...
    metric = c2.radio("Metric", ["score", "loss"], horizontal=True, format_func=lambda m: score if m == "score" else m)
    band = c3.radio("Band over seeds", ["minmax", "ci95"], horizontal=True,
                    format_func=lambda b: "min–max" if b == "minmax" else "95 % CI")
    smoothing = c4.slider("Smoothing", 0.0, 0.9, 0.0, 0.1)
    if size != "all":
        runs = runs[runs["examples_per_class"] == size]
    labels = run_labels(runs)  # named over the whole selection, so a group keeps its name on every page
    groups = curve_groups(runs, labels)
    names = sorted(groups.unique())
    if len(names) > GROUPS_PER_PAGE:
        pages = -(-len(names) // GROUPS_PER_PAGE)
        page = st.number_input(f"Page of groups ({len(names)} groups, {GROUPS_PER_PAGE} a page)", 1, pages, 1)
        shown = names[(page - 1) * GROUPS_PER_PAGE:page * GROUPS_PER_PAGE]
        st.caption(f"Groups {(page - 1) * GROUPS_PER_PAGE + 1}–{(page - 1) * GROUPS_PER_PAGE + len(shown)} of "
                   f"{len(names)}, in name order; narrow them with the filters in the sidebar or a size.")
        on_screen = groups.isin(shown)
        runs, labels = runs[on_screen], labels[on_screen]
    epochs = load_epochs(tuple(runs["run_id"]))
    frame = curves(epochs, runs, metric=metric, band=band, smoothing=smoothing, labels=labels)
    # curves() names the score for the axis; colours come from the whole store, so they match every page
    st.plotly_chart(learning_curves_chart(frame, colours=store_colours(load_runs())), width="stretch")
    st.caption("Solid: validation; dashed: training. Runs that differ only by seed are one line (their mean) with "
               "a band: the lowest to the highest seed, or the Student-t 95 % CI cut at what the metric can be "
               "(0 and 1 for a score, 0 for a loss). Epochs are counted across phases (e.g. head, then fine-tune).")
    st.subheader("Settings that differ between these runs")
    table, config = with_training_notes(differing_settings(runs), runs)
    show_table(table, column_config=config)
    if (table["training"].str.startswith(STILL_IMPROVING)).any():
        st.caption(f"{STILL_IMPROVING}: the validation loss was still falling when training ended, so these runs "
                   "had not converged and a longer budget would likely score higher; their comparison with runs that "
                   "converged is not yet fair. Give them more steps (`--min-steps`) with early stopping "
                   "(`--early-stopping`).")


guarded(render)
