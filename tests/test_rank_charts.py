"""The Rank page's charts: pure functions of a stored ranking and of the ranking-vs-realised check."""
from __future__ import annotations

import numpy as np
import pandas as pd
from test_charts import annotation_texts, figure_data

from transferlab.dashboard import charts


def _ranking():
    return pd.DataFrame(dict(
        pair=["a · imagenet", "b · imagenet", "c · random init"], backbone=["a", "b", "c"],
        weights=["imagenet", "imagenet", "none"], probe_mean=[0.93, 0.92, 0.70], probe_std=[0.01, 0.02, 0.03],
        vs_top=["top", "tie", "below"], seconds=[12.0, 3.5, 2.0], features_cached=[False, True, True],
        logme=[0.4, 0.3, 0.05], knn_mean=[0.88, 0.86, 0.6], params=[4e6, 7e6, 3e6], latency_ms=[5.0, np.nan, 4.0]))


def test_rank_chart_draws_each_pairs_probe_with_its_standing_and_cost():
    data, layout = figure_data(charts.rank_chart(_ranking()))
    bars = {trace["name"]: trace for trace in data if trace.get("showlegend") is not False}
    assert set(bars) == {charts.RANK_STANDING[s] for s in ("top", "tie", "below")}
    top = bars[charts.RANK_STANDING["top"]]
    assert list(top["y"]) == ["a · imagenet"] and list(top["x"]) == [0.93]
    assert list(bars[charts.RANK_STANDING["tie"]]["error_x"]["array"]) == [0.02]
    cost = next(trace for trace in data if trace.get("showlegend") is False)
    # best at the top: plotly draws categories bottom-up, so the frame is reversed
    assert list(cost["y"]) == ["c · random init", "b · imagenet", "a · imagenet"]
    assert list(cost["x"]) == [2.0, 3.5, 12.0] and cost["text"][1] == "3.5 s (cached)"
    # ...and the probe panel's order is the ranking's, not the order of the standing traces (top, tie, below)
    assert layout["yaxis"]["categoryorder"] == "array"
    assert list(layout["yaxis"]["categoryarray"]) == ["c · random init", "b · imagenet", "a · imagenet"]
    assert "Backbones ranked before training" in layout["title"]["text"]


def test_rank_chart_answers_a_missing_or_unscored_ranking_with_a_message():
    assert "`transferlab rank` makes one" in annotation_texts(charts.rank_chart(pd.DataFrame()))[0]
    unscored = _ranking().assign(probe_mean=np.nan)
    assert "could be scored" in annotation_texts(charts.rank_chart(unscored))[0]


def test_rank_vs_realised_chart_puts_each_sizes_taus_in_its_facet_title():
    from transferlab.rank_check import rank_vs_realised

    ranking = _ranking().assign(imagenet_top1=[0.75, 0.78, np.nan])
    realised = pd.DataFrame(dict(backbone=["a", "b", "c"] * 2, weights=["imagenet", "imagenet", "none"] * 2,
                                 examples_per_class=[10] * 3 + [50] * 3, realised=[0.8, 0.7, 0.5, 0.9, 0.92, 0.6],
                                 realised_ci95=0.01, realised_n=2, best_strategy="frozen_features",
                                 metric_label="test accuracy"))
    points, taus = rank_vs_realised(ranking, realised)
    fig = charts.rank_vs_realised_chart(points, taus)
    titles = [t.replace("<br>", " ") for t in annotation_texts(fig)]
    ten = taus[taus["size"] == "10 per class"].iloc[0]
    assert any(t.startswith(f"10 per class: τ probe {ten['tau_probe_mean']:+.2f} · top-1 — · size ") for t in titles)
    data, layout = figure_data(fig)
    assert sorted(len(trace["x"]) for trace in data) == [1] * 6
    assert layout["yaxis"]["title"]["text"] == "best realised test accuracy"
    assert "No runs of the ranked pairs" in annotation_texts(charts.rank_vs_realised_chart(points.iloc[0:0]))[0]
