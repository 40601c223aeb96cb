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
    assert not any("…" in title for title in annotation_texts(fig))  # wrapped, never cut
    assert all(len(line) <= charts.FACET_TITLE_WIDTH for title in annotation_texts(fig) for line in title.split("<br>"))
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
    frozen = [t for t in data if t["name"] == LABEL["frozen"]]
    rows = gains[gains["label"] == LABEL["frozen"]]
    points = sorted((x, y) for t in frozen for x, y in zip(t["x"], t["y"]))
    assert np.allclose(points, sorted(zip(rows["transferability"], rows["gain"])))
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


# ------------------------------------------------------------------------------------------------ not misleading

def _near_the_bounds(runs: pd.DataFrame) -> pd.DataFrame:
    """Frozen features near 1 at 100/class and the transfer near 0 at 5/class, scratch near 0 at 5/class."""
    runs = runs.copy()
    for prefix, scores in (("frozen-100-", [0.97, 0.99, 1.0]), ("sourced-5-", [0.0, 0.02, 0.05]),
                           ("scratch-5-", [0.0, 0.0, 0.1]), ("frozen-5-", [0.95, 1.0, 1.0])):
        runs.loc[runs["run_id"].str.startswith(prefix) & (runs["seed"] < 3), "score"] = scores
    return runs


def _bar_ends(trace: dict) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(trace["y"], dtype=float)
    return y - np.asarray(trace["error_y"]["arrayminus"], dtype=float), y + np.asarray(trace["error_y"]["array"],
                                                                                      dtype=float)


def test_error_bars_never_leave_what_a_score_or_a_gain_can_be(runs):
    summary = summarize(_near_the_bounds(runs))
    assert (summary["mean"] + summary["ci95"] > 1).any() and (summary["mean"] - summary["ci95"] < 0).any()
    assert (summary["gain_vs_baseline"] + summary["gain_ci95"] > 1).any()  # the plain intervals would leave
    data, layout = figure_data(charts.data_efficiency_chart(summary))
    for trace in data:
        low, high = _bar_ends(trace)
        assert np.all(low >= 0) and np.all(high <= 1), trace["name"]
    frozen = next(t for t in data if t["name"] == LABEL["frozen"])
    assert _bar_ends(frozen)[1][-1] == 1.0  # cut at 1, and asymmetric
    assert frozen["error_y"]["arrayminus"][-1] > frozen["error_y"]["array"][-1]
    assert "within [0, 1]" in layout["title"]["text"].replace("<br>", " ")
    data, layout = figure_data(charts.gain_chart(summary))
    for trace in data:
        low, high = _bar_ends(trace)
        assert np.all(low >= -1) and np.all(high <= 1), trace["name"]
    assert any(np.isclose(_bar_ends(t)[1], 1.0).any() for t in data)


def test_a_single_seed_gets_a_wilson_bar_named_in_the_hover(runs):
    one_seed = runs[runs["seed"] == 0].assign(manifest_json='{"n_test": 60}')
    summary = summarize(one_seed)
    assert summary["ci95"].isna().all()
    data, layout = figure_data(charts.data_efficiency_chart(compare.score_intervals(summary, one_seed)))
    trace = next(t for t in data if t["name"] == LABEL["scratch"])
    low, high = _bar_ends(trace)
    expected = compare.wilson_interval(trace["y"], 60)
    assert np.allclose(low, expected[0]) and np.allclose(high, expected[1])
    assert trace["customdata"][0][1] == f"[{low[0]:.3f}, {high[0]:.3f}] Wilson 95% over test examples (one seed)"
    assert "%{customdata[1]}" in trace["hovertemplate"]
    assert "Wilson" in layout["title"]["text"].replace("<br>", " ")
    no_bars = figure_data(charts.data_efficiency_chart(summary))[0]  # no n_test: no bar, not a zero-width one
    assert all(np.isnan(np.asarray(t["error_y"]["array"], dtype=float)).all() for t in no_bars)
    assert all(row[1] == "no interval (one seed)" for t in no_bars for row in t["customdata"])


def _colour_of(data: list[dict], name: str) -> str:
    trace = next(t for t in data if t.get("name") == name)
    return (trace.get("line") or {}).get("color") or trace["marker"]["color"]


def test_a_label_keeps_its_colour_whatever_else_is_on_the_chart(runs):
    whole = summarize(runs)
    # the first label in sorted order is gone from the subset, so a colour by sorted position would shift
    first = sorted(LABEL.values())[0]
    subset = summarize(runs[runs["backbone"] != "efficientnet_lite0"])
    assert first == LABEL["frozen"] and first not in set(subset["label"])
    charts_of = {
        "efficiency": figure_data(charts.data_efficiency_chart(whole))[0],
        "efficiency subset": figure_data(charts.data_efficiency_chart(subset))[0],
        "gain": figure_data(charts.gain_chart(whole))[0],
        "curves subset": figure_data(charts.learning_curves_chart(compare.curves(
            build_epochs(runs), runs[runs["examples_per_class"] == 20])))[0],
        "similarity": figure_data(charts.gain_vs_similarity_chart(compare.gain_per_run(runs)))[0],
    }
    for label in (LABEL["sourced"], LABEL["scratch"]):
        colours = {name: _colour_of(data, label) for name, data in charts_of.items()
                   if any(t.get("name") == label for t in data)}
        assert len(colours) >= 3 and len(set(colours.values())) == 1, (label, colours)
        assert colours["efficiency"] == charts.label_colours([label])[label]
    colours = [_colour_of(charts_of["efficiency"], label) for label in LABEL.values()]
    assert len(set(colours)) == 3 and charts.GREY not in colours


def test_labels_that_want_one_colour_share_nothing_and_a_store_map_wins(runs):
    by_slot: dict[int, list[str]] = {}
    for i in range(200):
        by_slot.setdefault(charts._slot(f"config {i}"), []).append(f"config {i}")
    pair = next(names for names in by_slot.values() if len(names) >= 2)[:2]
    colours = charts.label_colours(pair + ["other"])
    assert len(set(colours.values())) == 3  # the two that hash alike get different colours on one chart
    assert colours[min(pair)] == charts.PALETTE[charts._slot(min(pair))]  # the first keeps its own
    store = charts.store_colours(runs)
    assert set(LABEL.values()) <= set(store) and {"scratch", "frozen_features", "full_fine_tune"} <= set(store)
    fixed = {LABEL["sourced"]: "#123456"}
    data = figure_data(charts.gain_chart(summarize(runs), colours=fixed))[0]
    assert _colour_of(data, LABEL["sourced"]) == "#123456"
    assert _colour_of(data, LABEL["frozen"]) != "#123456"
    parameters = figure_data(charts.parameter_chart(compare.parameter_table(runs), colours=store))[0]
    assert _colour_of(parameters, "trainable · scratch") == store["scratch"]


def test_imagenet_chart_colours_a_strategy_as_every_other_chart_does():
    points = pd.DataFrame([dict(task="animal", examples_per_class=20, strategy=strategy, backbone=backbone,
                                weights="imagenet", imagenet_top1=top1, mean=score, ci95=0.02, n=2)
                           for strategy in ("frozen_features", "lp_ft")
                           for backbone, top1, score in (("lite0", 0.75, 0.8), ("lite1", 0.77, 0.82))])
    both = figure_data(charts.imagenet_transfer_chart(points))[0]
    alone = figure_data(charts.imagenet_transfer_chart(points[points["strategy"] == "lp_ft"]))[0]
    assert _colour_of(both, "lp_ft") == _colour_of(alone, "lp_ft") == charts.label_colours(["lp_ft"])["lp_ft"]
    store = {"lp_ft": "#abcdef"}
    assert _colour_of(figure_data(charts.imagenet_transfer_chart(points, colours=store))[0], "lp_ft") == "#abcdef"


def test_transferability_scatter_has_one_facet_and_one_correlation_per_size(runs):
    from scipy import stats as scipy_stats

    gains = compare.gain_per_run(runs)
    fig = charts.gain_vs_similarity_chart(gains)
    data, layout = figure_data(fig)
    titles = annotation_texts(fig)
    assert [t.split("<br>")[0] for t in titles] == ["5/class", "20/class", "100/class"]
    for index, (size, title) in enumerate(zip((5, 20, 100), titles)):
        at = gains[gains["examples_per_class"] == size]
        rho = scipy_stats.spearmanr(at["transferability"], at["gain"]).statistic
        assert f"ρ = {rho:+.2f}" in title and "6 runs" in title
        axis = "x" if index == 0 else f"x{index + 1}"
        facet = [t for t in data if t.get("xaxis", "x") == axis and t.get("mode") == "markers"]
        points = sorted((x, y) for t in facet for x, y in zip(t["x"], t["y"]))
        assert np.allclose(points, sorted(zip(at["transferability"], at["gain"])))
    pooled = scipy_stats.spearmanr(gains["transferability"], gains["gain"]).statistic
    assert not any(f"{pooled:+.2f}" in t for t in titles + [layout["title"]["text"]])  # no pooled number
    legend = [t["name"] for t in data if t.get("showlegend", True) and t.get("mode") == "markers"]
    assert sorted(legend) == sorted({LABEL["frozen"], LABEL["sourced"]})  # one legend entry per label


def test_long_titles_and_labels_wrap_and_are_never_cut(runs):
    long_name = "a_backbone_with_a_very_long_registered_name_from_a_third_party_plugin"
    renamed = runs.replace({"backbone": {"efficientnet_lite0": long_name}})
    fig = charts.learning_curves_chart(compare.curves(build_epochs(renamed), renamed), max_facets=2)
    titles = annotation_texts(fig)
    assert any(long_name in t.replace("<br>", " ") for t in titles)
    assert not any("…" in t for t in titles + [fig.layout.title.text])
    title = fig.layout.title.text
    assert "<br>" in title and "filter to see them" in title  # the whole title, over several lines
    assert all(len(line.removeprefix("<sup>").removesuffix("</sup>")) <= charts.TITLE_WIDTH * 4 // 3
               for line in title.split("<br>"))
    assert fig.layout.hoverlabel.namelength == -1  # plotly would cut a label in the hover box at 15 characters
    for build in (charts.data_efficiency_chart, charts.gain_chart, charts.negative_transfer_heatmap):
        frame = summarize(renamed)
        fig = build(compare.negative_transfer(frame)) if build is charts.negative_transfer_heatmap else build(frame)
        assert fig.layout.hoverlabel.namelength == -1 and "…" not in fig.layout.title.text


def test_report_bounds_and_colours_charts_as_the_pages_do():
    """The HTML report draws each configuration in the colour every page gives it (from the whole store), and a
    single-seed accuracy with its Wilson interval over the test examples, as the Data-efficiency page does."""
    import json

    from transferlab.dashboard.charts import store_colours
    from transferlab.dashboard.report import report_figures

    rows = []
    for strategy, seed, score in [("scratch", 0, 0.5), ("scratch", 1, 0.6), ("frozen_features", 0, 0.7)]:
        rows.append(dict(run_id=f"{strategy}{seed}", task="digits", backbone="small_cnn", weights="none",
                         strategy=strategy, source=None, examples_per_class=5, seed=seed, status="succeeded",
                         kind="train", score=score, metric="accuracy", metric_label="test accuracy",
                         transferability=None, manifest_json=json.dumps({"n_test": 100}),
                         spec_json=json.dumps({"task": "digits", "backbone": "small_cnn", "strategy": strategy})))
    runs = pd.DataFrame(rows)
    colours = store_colours(runs)
    epochs = pd.DataFrame(columns=["run_id", "epoch", "phase", "loss", "val_loss", "train_score", "val_score"])
    figure = dict(report_figures(runs, epochs))["digits: data efficiency"]
    drawn = {trace.name: trace for trace in figure.data if trace.name in colours}
    assert drawn and all(colours[name] == trace.line.color for name, trace in drawn.items())
    single = next(trace for name, trace in drawn.items() if "frozen_features" in name)
    assert single.error_y.array is not None and float(single.error_y.array[0]) > 0  # Wilson, n_test = 100
