"""transferlab.dashboard.charts: the numbers inside each figure, the empty-input answers, and a property test
that no builder raises on any subset of runs."""
from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_compare import LABEL, build_epochs, build_runs

from transferlab import compare
from transferlab.analysis import summarize
from transferlab.dashboard import charts


def decoded(value):
    """``fig.to_dict()`` with plotly's base64 ``{'dtype', 'bdata', 'shape'}`` arrays turned back into numpy."""
    if isinstance(value, dict):
        if set(value) >= {"dtype", "bdata"}:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            if "shape" in value:
                shape = value["shape"]
                array = array.reshape([int(n) for n in str(shape).split(",")] if isinstance(shape, str) else shape)
            return array
        return {key: decoded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [decoded(item) for item in value]
    return value


def figure_data(fig: go.Figure) -> tuple[list[dict], dict]:
    plain = decoded(fig.to_dict())
    return plain["data"], plain["layout"]


def annotation_texts(fig: go.Figure) -> list[str]:
    return [a.get("text", "") for a in figure_data(fig)[1].get("annotations", [])]


@pytest.fixture(scope="module")
def runs():
    return build_runs()


@pytest.fixture(scope="module")
def summary(runs):
    return summarize(runs)


def test_empty_figure_carries_message():
    fig = charts.empty_figure("Nothing here yet.")
    data, layout = figure_data(fig)
    assert data == []
    assert annotation_texts(fig) == ["Nothing here yet."]
    assert layout["xaxis"]["visible"] is False and layout["yaxis"]["visible"] is False


def test_data_efficiency_lines_and_crossovers(summary):
    crossings = compare.crossovers(summary)
    data, layout = figure_data(charts.data_efficiency_chart(summary, crossings))
    lines = {trace["name"]: trace for trace in data if trace["name"] != "crossover"}
    assert set(lines) == set(LABEL.values())
    for label, trace in lines.items():
        rows = summary[summary["label"] == label].sort_values("examples_per_class")
        assert np.allclose(trace["x"], rows["examples_per_class"])
        assert np.allclose(trace["y"], rows["mean"])
        assert np.allclose(trace["error_y"]["array"], rows["ci95"])
    stars = [trace for trace in data if trace["name"] == "crossover"]
    assert len(stars) == 1 and stars[0]["marker"]["symbol"] == "star"
    assert np.allclose(stars[0]["x"], crossings["x"]) and np.allclose(stars[0]["y"], crossings["y"])
    assert f"{LABEL['scratch']} overtakes {LABEL['frozen']}" in " ".join(stars[0]["hovertext"])
    assert layout["xaxis"]["type"] == "log"
    assert layout["template"]["layout"] is not None and layout["height"] > 0


def test_a_task_scored_by_map_is_named_on_its_facet(runs):
    """The score's name comes from the runs (the task head's label), never from a table in the charts."""
    plain = charts.data_efficiency_chart(summarize(runs))
    assert "test accuracy" in figure_data(plain)[1]["title"]["text"]
    detection = runs.copy()
    detection["metric"], detection["metric_label"] = "map50", "test mAP@0.5"  # as the task head names it
    alone = charts.data_efficiency_chart(summarize(detection))
    assert "test mAP@0.5" in figure_data(alone)[1]["title"]["text"]
    detection["task"] = "boxes"
    both = charts.data_efficiency_chart(summarize(pd.concat([runs, detection], ignore_index=True)))
    assert "test score" in figure_data(both)[1]["title"]["text"]
    assert any("(mAP@0.5)" in text for text in annotation_texts(both))
    assert any("(accuracy)" in text for text in annotation_texts(both))


def test_data_efficiency_without_crossovers_has_no_stars(summary):
    data, _ = figure_data(charts.data_efficiency_chart(summary))
    assert all(trace["name"] != "crossover" for trace in data)


def test_gain_chart_excludes_scratch_and_draws_zero(summary):
    data, layout = figure_data(charts.gain_chart(summary))
    assert {trace["name"] for trace in data} == {LABEL["frozen"], LABEL["sourced"]}
    trace = next(t for t in data if t["name"] == LABEL["sourced"])
    rows = summary[summary["label"] == LABEL["sourced"]].sort_values("examples_per_class")
    assert np.allclose(trace["y"], rows["gain_vs_baseline"])
    assert np.allclose(trace["error_y"]["array"], rows["gain_ci95"])
    assert any(shape["y0"] == 0 and shape["y1"] == 0 for shape in layout["shapes"])
    assert layout["xaxis"]["type"] == "log"


def test_negative_transfer_heatmap_cells(summary):
    neg = compare.negative_transfer(summary)
    data, layout = figure_data(charts.negative_transfer_heatmap(neg))
    heat = data[0]
    assert heat["type"] == "heatmap" and heat["zmid"] == 0
    assert list(heat["x"]) == ["5", "20", "100"]
    rows = list(heat["y"])
    assert sorted(rows) == sorted([LABEL["frozen"], LABEL["sourced"]])
    expected = neg.pivot(index="starting_point", columns="examples_per_class", values="gain").loc[rows, [5, 20, 100]]
    assert np.allclose(heat["z"], expected.to_numpy())
    text = pd.DataFrame(heat["text"], index=rows, columns=heat["x"])
    assert "▼" in text.loc[LABEL["sourced"], "5"] and "▼" in text.loc[LABEL["frozen"], "100"]
    assert "▼" not in text.loc[LABEL["sourced"], "20"]
    assert text.loc[LABEL["sourced"], "5"].startswith("-0.100 ± ")
    assert "▼" in layout["title"]["text"]


def test_learning_curves_facets_and_styles(runs):
    frame = compare.curves(build_epochs(runs), runs)
    fig = charts.learning_curves_chart(frame)
    data, layout = figure_data(fig)
    assert len(annotation_texts(fig)) == frame["group"].nunique()  # one facet title per group
    assert all(len(title) <= 56 for title in annotation_texts(fig))
    assert all(t.split(" · ")[0].endswith("/class") or t.startswith("all examples") for t in annotation_texts(fig))  # size first
    means = [t for t in data if t.get("hovertemplate") and t["name"] in set(LABEL.values())]
    val = [t for t in means if t["line"]["dash"] == "solid"]
    train = [t for t in means if t["line"]["dash"] == "dash"]
    assert len(val) == len(train) == 9
    colours = {t["name"]: t["line"]["color"] for t in val}
    assert all(t["line"]["color"] == colours[t["name"]] for t in train)  # one colour per label
    first = frame[(frame["group"] == frame["group"].iloc[0]) & (frame["split"] == "val")].sort_values("epoch")
    bands = [t for t in data if t.get("fill") == "tonexty"]
    assert any(np.allclose(t["y"], first["low"]) for t in bands)
    assert any(np.allclose(t["y"], first["mean"]) for t in val)
    assert layout["yaxis"]["title"]["text"] == "accuracy"  # read from the frame's attrs
    assert "min–max" in layout["title"]["text"]
    loss = compare.curves(build_epochs(runs), runs, metric="loss", band="ci95")
    layout = figure_data(charts.learning_curves_chart(loss))[1]
    assert layout["yaxis"]["title"]["text"] == "loss" and "95% CI" in layout["title"]["text"]


def test_parameter_chart_log_bars(runs):
    table = compare.parameter_table(runs, published={"efficientnet_lite0": 4_652_008})
    data, layout = figure_data(charts.parameter_chart(table))
    assert layout["yaxis"]["type"] == "log"
    names = {trace["name"] for trace in data}
    assert {"trainable · frozen_features", "total", "published"} <= names
    frozen = next(t for t in data if t["name"] == "trainable · frozen_features")
    assert list(frozen["x"]) == ["efficientnet_lite0", "small_cnn"]
    assert frozen["y"][0] == 12_810 and np.isnan(frozen["y"][1])
    assert frozen["text"][0] == "12.8k"


def test_gain_vs_similarity(runs):
    gains = compare.gain_per_run(runs)
    data, layout = figure_data(charts.gain_vs_similarity_chart(gains))
    assert {trace["name"] for trace in data} == {LABEL["frozen"], LABEL["sourced"]}
    trace = next(t for t in data if t["name"] == LABEL["frozen"])
    rows = gains[gains["label"] == LABEL["frozen"]]
    assert np.allclose(sorted(zip(trace["x"], trace["y"])), sorted(zip(rows["transferability"], rows["gain"])))
    assert any(shape["y0"] == 0 for shape in layout["shapes"])
    no_scores = gains.assign(transferability=np.nan)
    assert any("LogME" in text for text in annotation_texts(charts.gain_vs_similarity_chart(no_scores)))


def _empty_answers(runs) -> dict[str, go.Figure]:
    nothing = runs.iloc[0:0]
    summary = summarize(nothing)
    return {
        "parameter": charts.parameter_chart(compare.parameter_table(nothing)),
        "curves": charts.learning_curves_chart(pd.DataFrame(columns=compare.CURVE_COLUMNS)),
        "efficiency": charts.data_efficiency_chart(summary, compare.crossovers(summary)),
        "gain": charts.gain_chart(summary),
        "heatmap": charts.negative_transfer_heatmap(compare.negative_transfer(summary)),
        "similarity": charts.gain_vs_similarity_chart(compare.gain_per_run(nothing)),
    }


def test_empty_inputs_explain_themselves(runs):
    for name, fig in _empty_answers(runs).items():
        data, _ = figure_data(fig)
        texts = annotation_texts(fig)
        assert data == [], name
        assert len(texts) == 1 and len(texts[0]) > 20, name


def test_only_full_size_runs_explain_data_efficiency(summary):
    full = summary.assign(examples_per_class=np.nan)
    assert "examples per class" in annotation_texts(charts.data_efficiency_chart(full))[0]


RUNS = build_runs()
EPOCHS = build_epochs(RUNS)


# Each example draws six charts (~0.4 s), so few examples, plus the two extremes always.
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keep=st.lists(st.booleans(), min_size=len(RUNS), max_size=len(RUNS)),
       band=st.sampled_from(["minmax", "ci95"]), metric=st.sampled_from(["score", "loss"]))
@example(keep=[False] * len(RUNS), band="minmax", metric="score")
@example(keep=[True] * len(RUNS), band="ci95", metric="loss")
def test_every_builder_survives_any_subset_of_runs(keep, band, metric):
    runs = RUNS[np.array(keep)]
    epochs = EPOCHS[EPOCHS["run_id"].isin(runs["run_id"])]
    summary = summarize(runs)
    figures = [
        charts.parameter_chart(compare.parameter_table(runs, published={"small_cnn": 120_000})),
        charts.learning_curves_chart(compare.curves(epochs, runs, metric=metric, band=band, smoothing=0.6),
                                     shared_y=band == "minmax", metric=metric),
        charts.data_efficiency_chart(summary, compare.crossovers(summary)),
        charts.gain_chart(summary),
        charts.negative_transfer_heatmap(compare.negative_transfer(summary)),
        charts.gain_vs_similarity_chart(compare.gain_per_run(runs)),
    ]
    compare.freeze_checks(runs)
    for fig in figures:
        assert isinstance(fig, go.Figure)
        fig.to_dict()


def test_learning_curves_cap_the_number_of_facets(runs):
    frame = compare.curves(build_epochs(runs), runs)
    groups = frame["group"].nunique()
    fig = charts.learning_curves_chart(frame, max_facets=2)
    assert len(annotation_texts(fig)) == 2
    assert f"{groups - 2} more" in fig.layout.title.text
