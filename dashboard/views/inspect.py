"""Inspect: one run's training phases (what each trained, and whether it was reused from another run), what it
gets wrong (confusion matrix, the wrong test images worst first), which test images a second run on the same test
set fixes, breaks or gets wrong too (McNemar), and the trained model to take home (Export).

Deep link: ``/inspect?run=<run id>&other=<run id>``. Everything shown comes from the run's stored test
predictions (``Store.predictions``) and the job's own data; a run stored before predictions were kept says so.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from transferlab.analysis import run_labels
from transferlab.cells import size_text
from transferlab.cli import REUSED_NOTE
from transferlab.compare import PROPORTION_METRIC, wilson_interval
from transferlab.dashboard.charts_runs import confusion_heatmap
from transferlab.dashboard.common import (get_store, guarded, load_runs, no_runs_message, read_only, session_registry,
                                          train_runs)
from transferlab.dashboard.tables import MISSING, show_table
from transferlab.errors import TransferlabError
from transferlab.redact import public_runs, redact_text
from transferlab.run_diff import (MIN_IOU, MIN_SCORE, class_name, comparable_runs, confusion_counts, detection_errors,
                                  mcnemar, mistakes, paired_table, parse_json)

NO_PREDICTIONS = "This run was stored before predictions were kept — re-run to see its mistakes."
PAGE_SIZE = 48  #: wrong images shown at first, and added by each "Show more"
THUMB_PX = 112  #: width of a gallery thumbnail on the page (tiny images are enlarged to it, pixel by pixel)
ANY = "any"


# ------------------------------------------------------------------------------------------ store reads

@st.cache_data(ttl=60, show_spinner=False)
def _predictions(url: str, run_id: str) -> dict | None:
    reader = getattr(get_store(), "predictions", None)  # None: a store from before predictions were kept
    return reader(run_id) if reader else None


@st.cache_data(ttl=10, show_spinner=False)
def _model(url: str, run_id: str) -> dict | None:
    reader = getattr(get_store(), "model", None)
    return reader(run_id) if reader else None


@st.cache_data(ttl=600, max_entries=16, show_spinner="Loading the test images…")
def _test_images(spec_json: str, indices: tuple[int, ...], _registry: Any) -> tuple[list[np.ndarray], list | None]:
    """Thumbnails of the job's data at ``indices`` and, where the data has them, the true boxes per image.
    Keyed by the job's whole spec (task, data location and version) and the indices; the registry is this
    session's (not hashed)."""
    from transferlab.jobs import JobSpec
    from transferlab.test_images import load_test_data, thumbnails

    data = load_test_data(_registry, JobSpec.from_json(spec_json))
    boxes = [np.asarray(data.targets[i][0]).tolist() for i in indices] if data.targets is not None else None
    return thumbnails(data, indices), boxes


def _images(spec_json: str, indices: list[int]) -> tuple[list[np.ndarray], list | None] | None:
    """:func:`_test_images`, or None after saying why the images cannot be shown (no local paths)."""
    try:
        return _test_images(spec_json, tuple(int(i) for i in indices), session_registry())
    except TransferlabError as exc:
        st.info("The test images cannot be shown here: " + redact_text(str(exc)))
        return None


# ------------------------------------------------------------------------------------------ labels

def _names(runs: pd.DataFrame, winners: set[str]) -> dict[str, str]:
    """run id -> ``[task · ]backbone · start · strategy · size · seed N · score[ · verdict winner]``, from the
    runs as strangers may see them (no local paths, even in a weights file's name)."""
    public = public_runs(runs)
    several = public["task"].nunique() > 1
    names = {}
    for (_, row), label in zip(public.iterrows(), run_labels(public)):
        score = f"{row['score']:.3f}" if pd.notna(row["score"]) else MISSING
        names[row["run_id"]] = (f"{row['task']} · " if several else "") + (
            f"{label} · {size_text(row['examples_per_class'], row.get('fraction'))} · seed {row['seed']} · {score}"
            + (" · verdict winner" if row["run_id"] in winners else ""))
    return names


@st.cache_data(ttl=30, max_entries=4, show_spinner=False)
def _winners(runs: pd.DataFrame) -> list[str]:
    """The verdict's winning run per task and data version (:func:`transferlab.run_diff.winning_runs`), in task
    order; recomputed when the runs change."""
    from transferlab.run_diff import winning_runs

    try:
        return list(winning_runs(runs).values())
    except Exception:  # the verdict is a convenience here: never a reason not to show the page
        return []


def _interval_text(row: pd.Series) -> str:
    """``95 % CI 0.881–0.936 over 359 test images`` (Wilson's interval) where the score is test accuracy, else
    ``""`` (mAP has no such interval)."""
    n_test = parse_json(row.get("manifest_json"), {}).get("n_test")
    if pd.isna(row["score"]) or row.get("metric") != PROPORTION_METRIC or not isinstance(n_test, int) or n_test < 1:
        return ""
    low, high = wilson_interval(row["score"], n_test)
    return f"95 % CI {float(low):.3f}–{float(high):.3f} over {n_test} test images (Wilson)"


# ------------------------------------------------------------------------------------------ phases

#: the caption under a phases table with reused phases
REUSED_CAPTION = (REUSED_NOTE + " on cached features: the phase trained the head on the frozen base's cached "
                  "features instead of running the base every epoch.")
RUN_ID_SHOWN = 12  #: characters of a run id in a table cell (the link holds all of it)


def phase_table(phases_json: Any) -> pd.DataFrame:
    """One row per training phase of a run's ``phases_json``: its name, what it trained, epochs run, learning rate
    and trainable parameters; ``on cached features`` where a phase record says (``on_features``, or
    ``cached_features`` for a frozen run), and ``reused`` with ``reused from`` (a link to that run's page) where one
    says whether its head was reused. A run from before these keys gets only the columns it has."""
    phases = parse_json(phases_json, [])
    phases = [p for p in phases if isinstance(p, dict)]
    rows = [{"phase": p.get("phase"), "trains": p.get("train"), "epochs": p.get("epochs_run", p.get("epochs")),
             "learning rate": p.get("learning_rate"), "trainable params": p.get("trainable_params")} for p in phases]
    frame = pd.DataFrame(rows, columns=["phase", "trains", "epochs", "learning rate", "trainable params"])
    if any("on_features" in p or "cached_features" in p for p in phases):
        frame["on cached features"] = [bool(p.get("on_features") or p.get("cached_features")) for p in phases]
    if any("reused" in p for p in phases):
        frame["reused"] = [bool(p.get("reused")) for p in phases]
        frame["reused from"] = [f"inspect?run={p['reused_from']}" if p.get("reused") and p.get("reused_from") else None
                                for p in phases]
    return frame


def _phases_view(phases_json: Any) -> None:
    """The run's training phases (:func:`phase_table`), with what ``reused`` means where a phase was reused."""
    table = phase_table(phases_json)
    if table.empty:
        return
    st.subheader("Training phases")
    config = {}
    if "reused from" in table:
        config["reused from"] = st.column_config.LinkColumn(
            "reused from", display_text=f"run=(.{{1,{RUN_ID_SHOWN}}})",
            help="the run that trained this phase's head; this run loaded it")
    show_table(table, column_config=config)
    if "reused" in table and table["reused"].any():
        st.caption(REUSED_CAPTION)


# ------------------------------------------------------------------------------------------ gallery

def _gallery(spec_json: str, frame: pd.DataFrame, captions: list[str], key: str,
             payload: dict | None = None) -> None:
    """The images of ``frame``'s ``index`` column with ``captions``, :data:`PAGE_SIZE` at a time with Show more;
    detection canvases get their true and predicted boxes."""
    from transferlab.test_images import BOX_LEGEND, draw_boxes

    if frame.empty:
        return
    limit_key = f"inspect-limit-{key}"
    limit = st.session_state.get(limit_key, PAGE_SIZE)
    shown = frame.head(limit)
    found = _images(spec_json, shown["index"].tolist())
    if found is None:
        show_table(shown.drop(columns=["position"], errors="ignore"))
        return
    thumbs, true_boxes = found
    if payload is not None and payload.get("kind") == "detection":
        predicted = [[b for b in payload["boxes"][p] if b[5] >= MIN_SCORE] for p in shown["position"]]
        thumbs = [draw_boxes(t, true_boxes[i] if true_boxes else (), predicted[i]) for i, t in enumerate(thumbs)]
        st.caption(BOX_LEGEND)
    st.image(thumbs, caption=captions[:len(thumbs)], width=THUMB_PX)
    if len(frame) > limit:
        st.button(f"Show more ({len(frame) - limit} left)", key=f"more-{key}",
                  on_click=lambda: st.session_state.__setitem__(limit_key, limit + PAGE_SIZE))


def _classification_view(spec_json: str, payload: dict, run_id: str) -> None:
    names = list(payload.get("class_names") or [])
    st.plotly_chart(confusion_heatmap(confusion_counts(payload), names), width="stretch")
    wrong_all = mistakes(payload)
    n = len(payload["indices"])
    st.subheader("The test images it gets wrong")
    c1, c2 = st.columns(2)
    options = [ANY, *range(len(names))]
    as_true, as_predicted = wrong_all["true"].value_counts(), wrong_all["predicted"].value_counts()
    label = lambda c, counts: c if c == ANY else f"{class_name(names, c)} ({counts.get(c, 0)} wrong)"  # noqa: E731
    true_class = c1.selectbox("True class", options, format_func=lambda c: label(c, as_true),
                              key=f"inspect-true-{run_id}")
    predicted_class = c2.selectbox("Predicted as", options, format_func=lambda c: label(c, as_predicted),
                                   key=f"inspect-predicted-{run_id}")
    wrong = mistakes(payload, None if true_class == ANY else true_class,
                     None if predicted_class == ANY else predicted_class)
    st.caption(f"{len(wrong_all)} of {n} test images wrong ({len(wrong_all) / max(n, 1):.1%})"
               + (f"; {len(wrong)} with these classes" if len(wrong) != len(wrong_all) else "")
               + ". Worst first: the highest confidence in a wrong class. Caption: true → predicted (confidence).")
    if wrong.empty:
        st.success("No wrong test images" + (" with these classes." if len(wrong_all) else "."))
        return
    captions = [f"{t} → {p} ({c:.2f})" for t, p, c in zip(wrong["true_name"], wrong["predicted_name"],
                                                          wrong["confidence"])]
    _gallery(spec_json, wrong, captions, f"{run_id}-{true_class}-{predicted_class}")


def _detection_view(spec_json: str, payload: dict, run_id: str, registry: Any) -> None:
    from transferlab.jobs import JobSpec
    from transferlab.test_images import load_test_data

    st.subheader("The test images it gets wrong")
    try:
        data = load_test_data(registry, JobSpec.from_json(spec_json))
    except TransferlabError as exc:
        st.info("The test images cannot be shown here: " + redact_text(str(exc)))
        return
    errors = detection_errors(payload, data.targets)
    n = len(payload["indices"])
    st.caption(f"{len(errors)} of {n} test images with a missed object or a false detection (a detection counts "
               f"from score {MIN_SCORE:g} and matches a true box of its class at IoU ≥ {MIN_IOU:g}). Most errors first.")
    captions = [f"{m} missed, {f} false" + (f" · top score {t:.2f}" if np.isfinite(t) else "")
                for m, f, t in zip(errors["missed"], errors["false"], errors["top_score"])]
    _gallery(spec_json, errors, captions, f"det-{run_id}", payload)


# ------------------------------------------------------------------------------------------ compare

def _compare(runs: pd.DataFrame, run_id: str, spec_json: str, payload: dict, names: dict[str, str]) -> None:
    st.subheader("Compare with another run")
    others = comparable_runs(runs, run_id)
    if others.empty:
        st.info("No other finished run was tested on the same images (same task, data version and test split).")
        return
    options = others.sort_values(["score", "run_id"], ascending=[False, True])["run_id"].tolist()
    wanted = st.query_params.get("other")
    other = st.selectbox("Second run (B)", options, index=options.index(wanted) if wanted in options else 0,
                         format_func=lambda r: names.get(r, r), key=f"inspect-other-{run_id}")
    st.query_params["other"] = other
    second = _predictions(get_store().url, other)
    if second is None:
        st.info(f"Run B: {NO_PREDICTIONS}")
        return
    try:
        table = paired_table(payload, second)
    except TransferlabError as exc:  # e.g. labels that differ: the data changed between the two runs
        st.warning(redact_text(str(exc)))
        return
    test = mcnemar(table["only_a"], table["only_b"], names=("A", "B"))
    show_table(pd.DataFrame({"": ["B right", "B wrong"], "A right": [table["both_right"], table["only_a"]],
                             "A wrong": [table["only_b"], table["both_wrong"]]}))
    st.markdown(f"**{test['verdict'][0].upper() + test['verdict'][1:]}**")
    st.caption(f"A (this run): {names.get(run_id, run_id)}. B: {names.get(other, other)}. McNemar's test uses only the "
               f"{table['only_a'] + table['only_b']} of {table['n']} test images the two runs disagree on; exact "
               "binomial below 25 such images, else chi-square with continuity correction. A difference is "
               "claimed only at p < 0.05; otherwise it is a tie.")
    tabs = st.tabs([f"fixed by B ({table['only_b']})", f"broken by B ({table['only_a']})",
                    f"both wrong ({table['both_wrong']})"])
    for tab, cell, key in zip(tabs, ("only_b", "only_a", "both_wrong"), ("fixed", "broken", "both-wrong")):
        with tab:
            _cell_gallery(spec_json, payload, second, table["indices"][cell], f"{run_id}-{other}-{key}")
    st.caption(f"Both right: {table['both_right']} of {table['n']} test images (not shown).")


def _cell_gallery(spec_json: str, a: dict, b: dict, indices: list[int], key: str) -> None:
    """The images of one cell of the paired table: true class, A's and B's predictions with their confidences."""
    if not indices:
        st.caption("No test image here.")
        return
    names = list(a.get("class_names") or [])
    position = {int(i): p for p, i in enumerate(a["indices"])}
    rows = [position[int(i)] for i in indices]
    frame = pd.DataFrame({"index": indices, "position": rows})
    captions = [f"{class_name(names, a['labels'][p])}: A {class_name(names, a['predicted'][p])} "
                f"({a['confidence'][p]:.2f}), B {class_name(names, b['predicted'][p])} ({b['confidence'][p]:.2f})"
                for p in rows]
    _gallery(spec_json, frame, captions, key)


# ------------------------------------------------------------------------------------------ export

def _export(run_id: str) -> None:
    """The Export section (never in read-only mode): a download of the same files as ``transferlab export``."""
    st.subheader("Export")
    command = f"transferlab export {run_id} --rerun --format keras --out DIR"
    if _model(get_store().url, run_id) is None:
        st.info("This run's trained weights were not kept (by default only the best run of each task, data version "
                "and size is kept). Train it again with its weights kept and export it in one go:")
        st.code(command, language="bash")
        return
    try:
        from transferlab.export import available_formats, export_archive
    except ImportError:
        st.info("Export is not available in this installation; use the command line:")
        st.code(command.replace(" --rerun", ""), language="bash")
        return
    formats = available_formats()
    usable = [f for f, why in formats.items() if why is None]
    chosen = st.multiselect("Formats", usable, default=[f for f in usable if f == "keras"] or usable[:1],
                            key=f"export-formats-{run_id}")
    missing = [f"{f}: {why}" for f, why in formats.items() if why is not None]
    if missing:
        st.caption("Not available here: " + "; ".join(missing))
    built = st.session_state.get("inspect-export")
    if st.button("Build the export", disabled=not chosen, key=f"export-{run_id}"):
        try:
            with st.spinner("Exporting the model…"):
                built = (run_id, tuple(chosen), *export_archive(get_store(), session_registry(), run_id, chosen))
            st.session_state["inspect-export"] = built
        except TransferlabError as exc:
            st.error(redact_text(str(exc)))
            built = None
    if built and built[0] == run_id and built[1] == tuple(chosen):
        st.download_button(f"Download {built[2]}", built[3], file_name=built[2], mime="application/zip")
    st.caption(f"The same files as `transferlab export {run_id} --format ... --out DIR`: the model with its "
               "preprocessing inside (raw RGB images 0–255 of any size), labels.txt, model-card.md and export.json.")


# ------------------------------------------------------------------------------------------ page

def render() -> None:
    """The Inspect page: pick a run (the deep link's ``run``, else the verdict's winner, else the best score), then
    its score, its confusion matrix and wrong test images (boxes for detection), the diff with a second run on the
    same test images (classification), and the Export section (not in read-only mode)."""
    st.title("Inspect a run")
    runs = load_runs()
    ok = train_runs(runs)
    if ok.empty:
        no_runs_message("finished training runs")
        return
    ok = ok.sort_values(["task", "score", "run_id"], ascending=[True, False, True])
    winners = _winners(runs)
    names = _names(ok, set(winners))
    options = ok["run_id"].tolist()
    wanted = st.query_params.get("run")
    if wanted and wanted not in options:
        st.warning(f"Run {redact_text(wanted)[:40]} is not a finished training run in this store; showing another.")
    # the deep link, else the verdict's winner, else the best score
    start = next((r for r in (wanted, *winners) if r in options), options[0])
    run_id = st.selectbox("Run (A)", options, index=options.index(start), format_func=lambda r: names.get(r, r),
                          key="inspect-run")
    st.query_params["run"] = run_id
    row = ok[ok["run_id"] == run_id].iloc[0]
    version = row["data_version"] if isinstance(row.get("data_version"), str) and row["data_version"] else MISSING
    c1, c2, c3 = st.columns(3)
    metric = row["metric_label"] if isinstance(row.get("metric_label"), str) and row["metric_label"] else "test score"
    c1.metric(metric, f"{row['score']:.3f}" if pd.notna(row["score"]) else MISSING)
    if interval := _interval_text(row):
        c1.caption(interval)
    c2.metric("data version", version)
    c3.metric("task", str(row["task"]))
    st.caption(f"Run id `{run_id}`.")
    stored = get_store().get(run_id) or {}
    spec_json = stored.get("spec_json") or ""  # the job as stored (its data location): read here, never shown
    _phases_view(stored.get("phases_json"))
    payload = _predictions(get_store().url, run_id)
    if payload is None:
        st.info(NO_PREDICTIONS)
        counts = np.asarray(parse_json(stored.get("confusion_json"), []))  # kept with every run since the start
        if counts.ndim == 2 and counts.size:
            class_names = parse_json(stored.get("manifest_json"), {}).get("class_names") or []
            st.plotly_chart(confusion_heatmap(counts, class_names), width="stretch")
    elif payload.get("kind") == "detection":
        _detection_view(spec_json, payload, run_id, session_registry())
    else:
        _classification_view(spec_json, payload, run_id)
        _compare(runs, run_id, spec_json, payload, names)
    if not read_only():
        _export(run_id)


guarded(render)
