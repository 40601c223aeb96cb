"""Verdict: per training-set size, the winning configuration, whether its lead holds over seeds, its gain over
scratch and its cost; the Pareto fronts of score against training seconds and latency; more labels or another
backbone."""
from __future__ import annotations

import streamlit as st

from transferlab.dashboard.charts import pareto_chart, store_colours
from transferlab.dashboard.common import get_registry, get_store, guarded, load_runs, no_runs_message, public_text
from transferlab.dashboard.tables import show_table
from transferlab.latency import latency_lookup
from transferlab.pareto import pareto_front
from transferlab.verdict import recommend

VERDICT_TABLE = {"size": "size", "outcome": "outcome", "winner": "winner", "winner_mean": "mean",
                 "winner_n": "seeds", "winner_still_improving": "still improving", "runner_up": "runner-up", "runner_up_mean": "runner-up mean",
                 "difference": "difference", "evidence": "test", "gain_text": "gain over scratch",
                 "wall_seconds": "training s", "trainable_params": "trainable params", "latency_ms": "ms / image"}


def render() -> None:
    st.title("Verdict")
    runs = load_runs()
    recommendation = recommend(runs, baselines=get_registry().baseline_strategies(), latency=latency_lookup())
    verdicts = recommendation.verdicts
    if verdicts.empty:
        no_runs_message("finished training runs")
        return
    groups = sorted(recommendation.summaries())
    label = lambda g: g[0] + (f" (data {g[1]})" if g[1] else "")  # noqa: E731
    task, version = st.selectbox("Task", groups, format_func=label) if len(groups) > 1 else groups[0]
    chosen = verdicts[(verdicts["task"] == task) & (verdicts["data_version"] == version)]
    st.markdown(public_text(recommendation.summaries()[(task, version)]))
    st.caption(f"{chosen['metric_label'].iloc[0]}. Winner and runner-up are the two best means at each size; "
               "paired t-test where both ran the same seeds, else Welch's; a lead with one seed is not tested, "
               "and a lead that is not significant (p ≥ 0.05, or the 95 % CI of the difference holds zero) is a "
               "tie. The gain is over the strongest scratch configuration at that size, and is not claimed when "
               "that baseline was still improving when training stopped (unknown where its convergence was not measured: "
               "runs under 5 epochs, or stored before it was recorded).")
    table = chosen.sort_values(["size_key", "fraction_key"])
    shown = table[list(VERDICT_TABLE)].rename(columns=VERDICT_TABLE)
    models, links = _winner_links(table)
    at = list(shown.columns).index("winner") + 1  # beside the winner: the table scrolls sideways
    shown.insert(at, "inspect", links)
    shown.insert(at, "model", models)
    config = {c: st.column_config.NumberColumn(format="%.3f") for c in ("mean", "runner-up mean", "difference")}
    config["inspect"] = st.column_config.LinkColumn("inspect", display_text="mistakes · export",
                                                    help="The winner's best seed on the Inspect page")
    show_table(shown, column_config=config)

    st.subheader("What it costs: the Pareto fronts")
    table = recommendation.configurations
    mine = table[(table["task"] == task) & (table["data_version"] == version)]
    colours = store_colours(runs)
    # One chart at a time at full width: side by side, the configuration names left no room for the points.
    seconds, latency = st.tabs(["against training seconds", "against latency per image"])
    seconds.plotly_chart(pareto_chart(pareto_front(mine, "wall_seconds"), "wall_seconds", colours=colours),
                         width="stretch")
    latency.plotly_chart(pareto_chart(pareto_front(mine, "latency_ms"), "latency_ms", colours=colours),
                         width="stretch")
    st.caption("Each point is one configuration's mean over seeds at one size: its median training seconds, or its "
               "backbone's latency per image measured on this machine (`transferlab backbones --measure`).")

    st.subheader("More labels or a better backbone?")
    labels = recommendation.labels_or_backbone
    labels = labels[(labels["task"] == task) & (labels["data_version"] == version)] if not labels.empty else labels
    if labels.empty:
        st.info("Only whole-pool or fraction runs here: the question needs sizes in examples per class.")
    else:
        for answer, size in labels.sort_values("size_key")[["answer", "size"]].itertuples(index=False):
            st.markdown(public_text(f"- **At {size}**: {answer}"))
        st.caption("The doubling estimate follows the winner's measured means on a log2 size axis: between measured "
                   "sizes it interpolates; beyond the largest it extrapolates from the two largest and says so.")


def _winner_links(table) -> tuple[list[str], list[str | None]]:
    """Per verdict row: whether its winner's model is kept (``kept`` / ``not kept``), and the Inspect page's
    deep link to the run :func:`transferlab.verdict_text.winner_model` picks (the kept one, else the best seed)."""
    from transferlab.verdict_text import winner_model

    models = get_store().models_frame()
    kept = set(models["run_id"].astype(str)) if not models.empty else set()
    chosen = [winner_model(row, kept) for row in table.to_dict("records")]
    return ([("kept" if is_kept else "not kept") if run else "—" for run, is_kept in chosen],
            [f"inspect?run={run}" if run else None for run, _ in chosen])


guarded(render)
