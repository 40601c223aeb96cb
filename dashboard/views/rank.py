"""Rank: backbones ranked by their frozen features before any training (``transferlab rank``), as stored; a
ranking computed in the background on request; and, once runs exist, how well the ranking predicted them.

Computing runs in a separate process (:mod:`transferlab.rank_launch`), never in this page: a cold ranking
takes about a minute on 2 CPU cores and needs TensorFlow, which viewing pages never import. Viewing only
reads the stored JSON files and the store.
"""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from transferlab.dashboard.charts import rank_chart, rank_vs_realised_chart
from transferlab.dashboard.common import (data_path_input, guarded, load_runs, public_text, read_only,
                                         session_registry, train_runs)
from transferlab.dashboard.tables import show_table
from transferlab.rank_store import p_text, ranking_frame, stored_rankings

def _rankable(registry) -> list[str]:
    """Registered image-classification tasks that are not stubs (what `transferlab rank --task` takes)."""
    return [t.name for t in registry.select("task", stub=False, modality="image")
            if t.data is None and t.task_head.kind == "classification"]


def _choose_task(registry, stored: list[dict]) -> tuple[str | None, str | None]:
    """(task name, data location or None) from the path field (not in read-only mode) or the task list."""
    data = None
    if not read_only():
        text = data_path_input()
        if text:
            from transferlab.userdata import resolve_data

            return resolve_data(registry, text).name, text
    with_rankings = list(dict.fromkeys(r["task"] for r in stored))
    options = with_rankings + [t for t in ([] if read_only() else _rankable(registry)) if t not in with_rankings]
    if not options:
        return None, data
    task = st.selectbox("Task", options, help="Tasks with a stored ranking come first.")
    return task, data


def _ranking_label(result: dict) -> str:
    version = result.get("data_version") or "pinned data"
    return (f"{result['input_size']} px · {result['n_images']:,} images · {version} · computed "
            f"{result.get('computed_at', '?').replace('T', ' ')}")


def _table(frame: pd.DataFrame, input_size: int) -> pd.DataFrame:
    rows = pd.DataFrame({
        "rank": frame["rank"], "pair": frame["pair"], "probe accuracy": frame["probe_mean"],
        "fold std": frame["probe_std"],
        "vs top": [f"{v} (p {p_text(p)})" if v in ("tie", "below") else v for v, p in zip(frame["vs_top"],
                                                                                       frame["p_vs_top"])],
        "LogME": frame.get("logme"), "k-NN": frame.get("knn_mean"), "seconds": frame.get("seconds"),
        "features cached": frame.get("features_cached"), "parameters": frame.get("params"),
        "latency (ms/image)": frame.get("latency_ms"),
    })
    other = frame.get("latency_input_size")
    if other is not None and (pd.notna(other) & (other != input_size)).any():
        rows["latency measured at (px)"] = other
    if "error" in frame and frame["error"].notna().any():
        rows["error"] = [public_text(str(e)) if isinstance(e, str) else None for e in frame["error"]]
    return rows


@st.fragment(run_every=2)
def _launches(task: str) -> None:
    """The background rankings of ``task``: running, finished or failed; a finished one reloads the page."""
    from transferlab.rank_launch import rank_launches

    records = rank_launches(task)[:3]
    if not records:
        return
    seen = st.session_state.setdefault("rank-running", set())
    for record in records:
        age = time.time() - record.created_at
        if record.alive or (record.pid is None and record.exit_code is None and age < 30):
            seen.add(record.launch_id)
            st.info(f"Ranking {task} in the background ({record.launch_id}, {age:.0f} s so far).")
        elif record.exit_code == 0:
            if record.launch_id in seen:  # it finished while this page watched: show the new ranking
                seen.discard(record.launch_id)
                st.rerun(scope="app")
        elif age < 3600:
            tail = public_text(record.log_tail())
            st.error(f"The ranking started at {time.strftime('%H:%M:%S', time.localtime(record.created_at))} "
                     f"did not finish (exit status {record.exit_code if record.exit_code is not None else 'unknown'})."
                     + (f"\n\n```\n{tail}\n```" if tail else ""))


def _compute(task: str, data: str | None) -> None:
    from transferlab.rank_launch import launch_rank, rank_command
    from transferlab.ranking import DEFAULT_MAX_IMAGES, RANK_INPUT_CAP

    with st.expander("Rank this task now", expanded=False):
        c1, c2 = st.columns(2)
        max_images = c1.number_input("Training-pool images scored (stratified)", 20, 100_000, DEFAULT_MAX_IMAGES,
                                     step=100)
        size = c2.number_input(f"Input size (px; 0 = the task's default capped at {RANK_INPUT_CAP})", 0, 512, 0, step=8)
        st.caption("Every image backbone with weights available offline, and random init of one of them as a "
                   "control. It runs in the background (about a minute on 2 CPU cores the first time, some 15 s "
                   "once the features are cached) and appears here when done.")
        if st.button("Rank in the background", type="primary"):
            argv = rank_command(task=None if data else task, data=data, max_images=int(max_images),
                                input_size=int(size) or None)
            record = launch_rank(task, argv)
            st.session_state.setdefault("rank-running", set()).add(record.launch_id)
            st.success(f"Started ({record.launch_id}).")


def _predicted(registry, task: str, result: dict, frame: pd.DataFrame) -> None:
    from transferlab.rank_check import MIN_PAIRS_FOR_TAU, rank_vs_realised, realised_scores

    st.subheader("Did the ranking predict the runs?")
    st.caption("Each ranked pair's realised score is its best mean test score over strategies (mean over seeds) in "
               "the store, on the same task and data version, per training-set size. Weighted Kendall τ (+1: the "
               "same order, −1: reversed; the top pairs weigh more) of each score made before training, beside two "
               "orderings that need no features: published ImageNet top-1 (ImageNet pairs only) and parameter "
               f"count. With fewer than {MIN_PAIRS_FOR_TAU} pairs there is no τ; with a handful it is weak evidence.")
    runs = train_runs(load_runs())
    realised = realised_scores(runs, task, result.get("data_version"), registry.baseline_strategies())
    points, taus = rank_vs_realised(frame, realised)
    if points.empty:
        pairs = ",".join(f"{b}:{w}" for b, w in zip(frame["backbone"], frame["weights"]))
        st.info(f"No runs of the ranked pairs on {task} at this data version yet. For example: `transferlab sweep "
                f"--tasks {task} --strategies frozen_features --examples-per-class 10,50 --input-size "
                f"{result['input_size']}` with the backbones and weights of the ranking ({pairs}).")
        return
    st.plotly_chart(rank_vs_realised_chart(points, taus), width="stretch")
    names = {"tau_probe_mean": "τ probe", "tau_logme": "τ LogME", "tau_knn_mean": "τ k-NN",
             "tau_imagenet_top1": "τ ImageNet top-1", "n_imagenet_top1": "ImageNet pairs", "tau_params": "τ size"}
    show_table(taus[["size", "pairs", *names, "reading"]].rename(columns=names))


def render() -> None:
    st.title("Rank before training")
    st.caption("Which backbone, before training any? Each image backbone and offline weight source is scored on "
               "frozen features of the task's labelled training pool: a logistic-regression probe (cross-validated, "
               "stratified folds), LogME and k-NN, with what scoring cost here, its parameters and its latency. The "
               "features are the ones a later frozen run of that size and seed 0 reads from the cache.")
    registry = session_registry()  # tasks made from the path field are this session's own
    stored = stored_rankings()
    task, data = _choose_task(registry, stored)
    if task is None:
        st.info("No ranking stored yet." + ("" if read_only() else " Pick a task or give your data above."))
        return
    mine = [r for r in stored if r["task"] == task]
    if not read_only():
        _compute(task, data)
        _launches(task)
    if not mine:
        st.info(f"No ranking of {task} stored yet." + ("" if read_only() else " Rank it with the button above, or "
                                                       f"`transferlab rank --task {task}` in a terminal."))
        return
    result = mine[0] if len(mine) == 1 else st.selectbox("Ranking", mine, format_func=_ranking_label)
    frame = ranking_frame(result)
    st.markdown(f"**{result['top']}**")
    st.caption(f"{result['n_images']:,} images of {result['classes']} classes from the training pool (the training "
               f"subset of a job at {result['subset']['as_job']}), at {result['input_size']} px "
               f"({result['input_size_reason']}); {result['folds']} folds; {len(frame)} pairs scored in "
               f"{result['seconds']:.0f} s on {result['machine']}, {result.get('computed_at', '').replace('T', ' ')}.")
    st.plotly_chart(rank_chart(frame), width="stretch")
    show_table(_table(frame, result["input_size"]),
               column_config={"probe accuracy": st.column_config.NumberColumn(format="%.3f"),
                              "fold std": st.column_config.NumberColumn(format="%.3f"),
                              "LogME": st.column_config.NumberColumn(format="%.3f"),
                              "k-NN": st.column_config.NumberColumn(format="%.3f"),
                              "seconds": st.column_config.NumberColumn(format="%.1f"),
                              "parameters": st.column_config.NumberColumn(format="%d"),
                              "latency (ms/image)": st.column_config.NumberColumn(format="%.1f")})
    _predicted(registry, task, result, frame)


guarded(render)
