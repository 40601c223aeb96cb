"""transferlab.verdict on hand-built run frames whose answers are known, the ``recommend`` command on a store
written through the Store API, and the panels that show the verdict (Home, the HTML report, the Verdict page)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from transferlab import pareto, verdict
from transferlab.cli import main

TASK = "animal_mnist"
BASELINES = {"scratch"}
CONFIGS = {
    "scratch": dict(backbone="small_cnn", weights="none", strategy="scratch"),
    "frozen": dict(backbone="efficientnet_lite0", weights="imagenet", strategy="frozen_features"),
    "tuned": dict(backbone="efficientnet_lite0", weights="imagenet", strategy="lp_ft"),
    "other": dict(backbone="mobilenet_v2", weights="imagenet", strategy="frozen_features"),
}
LABEL = {
    "scratch": "small_cnn · random init · scratch",
    "frozen": "efficientnet_lite0 · imagenet · frozen_features",
    "tuned": "efficientnet_lite0 · imagenet · lp_ft",
    "other": "mobilenet_v2 · imagenet · frozen_features",
}


def _run(config, size, seed, score, status="succeeded", kind="train", still_improving=False, seconds=10.0,
         data_version=None, source=None, n_test=500, **extra):
    c = CONFIGS[config]
    spec = dict(task=TASK, **c, examples_per_class=size, seed=seed, source=source, epochs=10)
    if data_version:
        spec["data_version"] = data_version
    row = dict(run_id=f"{config}-{size}-{seed}-{data_version}-{source}", kind=kind, task=TASK, **c, source=source,
               examples_per_class=float(size), fraction=np.nan, seed=seed, status=status, score=score,
               metric="accuracy", metric_label="test accuracy", wall_seconds=seconds,
               trainable_params=1000.0, still_improving=still_improving, spec_json=json.dumps(spec),
               manifest_json=json.dumps(dict(n_test=n_test)))
    if data_version is not None:
        row["data_version"] = data_version
    return dict(row, **extra)


def _frame(scores: dict[str, dict[int, list[float]]], **options) -> pd.DataFrame:
    """``{config: {size: [score per seed 0, 1, ...]}}`` as a runs frame."""
    return pd.DataFrame([_run(config, size, seed, value, **options)
                         for config, per_size in scores.items() for size, values in per_size.items()
                         for seed, value in enumerate(values)])


def _verdict(runs, size=5):
    result = verdict.recommend(runs, baselines=BASELINES)
    rows = result.verdicts.set_index("size_key")
    return result, rows.loc[size]


# ------------------------------------------------------------------------------------------------ winner and test

def test_a_clear_winner_over_three_paired_seeds_is_significant():
    frozen, scratch = [0.80, 0.82, 0.87], [0.60, 0.61, 0.63]
    _, row = _verdict(_frame({"frozen": {5: frozen}, "scratch": {5: scratch}}))
    assert row["winner"] == LABEL["frozen"] and row["runner_up"] == LABEL["scratch"]
    assert row["outcome"] == "win" and row["test"] == "paired t"
    assert row["p_value"] == pytest.approx(stats.ttest_rel(frozen, scratch).pvalue)
    assert row["difference"] == pytest.approx(np.mean(frozen) - np.mean(scratch))
    assert "wins by +0.217" in row["sentence"] and "3 paired seeds" in row["sentence"]
    assert row["gain_claim"] == "claimed" and row["gain_text"].startswith("+0.217 ± ")


def test_a_close_pair_is_a_tie_and_never_a_win():
    _, row = _verdict(_frame({"frozen": {5: [0.70, 0.74, 0.71]}, "tuned": {5: [0.71, 0.70, 0.72]}}))
    assert row["outcome"] == "tie" and row["p_value"] > 0.05
    assert " tie (" in row["sentence"] and "wins" not in row["sentence"]


def test_one_seed_is_not_tested():
    _, row = _verdict(_frame({"frozen": {5: [0.9]}, "scratch": {5: [0.5, 0.52, 0.51]}}))
    assert row["outcome"] == "not tested" and row["test"] == "one seed" and np.isnan(row["p_value"])
    assert "one seed: not tested" in row["sentence"] and "wins" not in row["sentence"]
    assert row["winner_interval"] == "wilson"  # its accuracy's interval over the 500 test examples
    assert row["gain_claim"] == "not tested"


def test_different_seeds_use_welch_and_equal_differences_do_not_give_p_zero():
    a, b = [0.80, 0.84, 0.83], [0.60, 0.65]
    _, row = _verdict(_frame({"frozen": {5: a}, "scratch": {5: b}}))
    assert row["test"] == "Welch t"
    assert row["p_value"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    # the same +0.1 on both seeds: a paired test would say p=0; Welch's uses the spread over seeds
    _, row = _verdict(_frame({"frozen": {5: [0.6, 0.8]}, "scratch": {5: [0.5, 0.7]}}))
    assert row["test"] == "Welch t" and row["outcome"] == "tie"


def test_failed_runs_pretraining_and_shuffled_controls_are_left_out():
    runs = _frame({"frozen": {5: [0.80, 0.82, 0.84]}, "scratch": {5: [0.60, 0.61, 0.63]}})
    extra = pd.DataFrame([
        _run("scratch", 5, 3, 0.99, status="failed"), _run("scratch", 5, 4, np.nan, status="nan"),
        _run("tuned", 5, 0, 0.99, status="running"), _run("scratch", 5, 0, 0.99, kind="pretrain", source=None),
        *[_run("tuned", 5, s, 0.99, source="animal_mnist:shuffled") for s in range(3)],
    ])
    _, row = _verdict(pd.concat([runs, extra], ignore_index=True))
    assert row["winner"] == LABEL["frozen"] and row["winner_n"] == 3 and row["runner_up"] == LABEL["scratch"]


# ------------------------------------------------------------------------------------------------ gain over scratch

def test_an_unconverged_baseline_blocks_the_gain_claim():
    runs = _frame({"frozen": {5: [0.80, 0.82, 0.87]}, "scratch": {5: [0.60, 0.61, 0.63]}})
    runs.loc[runs["strategy"] == "scratch", "still_improving"] = [False, True, False]
    _, row = _verdict(runs)
    assert row["outcome"] == "win"  # the win over the runner-up stands; only the gain claim is refused
    assert row["gain_claim"] == "not claimed" and row["baseline_still_improving"] is True
    assert row["gain_text"].startswith("not claimed") and "upper bound" in row["gain_text"]
    assert "gain over scratch: not claimed" in row["sentence"]


def test_an_unconverged_winner_is_flagged_and_its_gain_is_a_lower_bound():
    runs = _frame({"frozen": {5: [0.80, 0.82, 0.87]}, "scratch": {5: [0.60, 0.61, 0.63]}})
    runs.loc[runs["strategy"] == "frozen_features", "still_improving"] = True
    runs.loc[runs["strategy"] == "scratch", "still_improving"] = False
    _, row = _verdict(runs)
    assert row["gain_claim"] == "lower bound" and row["gain_text"].startswith("≥ +0.217")
    assert "(still improving)" in row["sentence"]


def test_the_gain_is_over_the_strongest_scratch_configuration_and_old_runs_say_convergence_was_not_measured():
    runs = _frame({"frozen": {5: [0.80, 0.82, 0.87]}, "scratch": {5: [0.60, 0.61, 0.63]}})
    weak = _frame({"scratch": {5: [0.30, 0.31, 0.33]}}).assign(backbone="efficientnet_lite0")
    weak["spec_json"] = [s.replace('"small_cnn"', '"efficientnet_lite0"') for s in weak["spec_json"]]
    weak["run_id"] += "-weak"
    runs = pd.concat([runs, weak], ignore_index=True).drop(columns="still_improving")  # an old store: no column
    _, row = _verdict(runs)
    assert row["baseline"] == LABEL["scratch"] and row["gain"] == pytest.approx(0.2167, abs=1e-3)
    # an old store cannot say whether the baseline had converged: the gain is shown, but not as claimed
    assert row["gain_claim"] == "unknown" and row["gain_text"].startswith("+0.217 ± ")
    assert row["gain_text"].endswith("but baseline convergence not measured")
    assert "baseline convergence not measured" in row["sentence"]


def test_a_baseline_too_short_to_judge_gives_an_unknown_gain_not_a_claim():
    runs = _frame({"frozen": {5: [0.80, 0.82, 0.87]}, "scratch": {5: [0.60, 0.61, 0.63]}})
    runs["still_improving"] = [None if s == "scratch" else False for s in runs["strategy"]]  # too few epochs
    _, row = _verdict(runs)
    assert row["gain_claim"] == "unknown" and row["baseline_still_improving"] is None


def test_scratch_winning_is_said_plainly():
    _, row = _verdict(_frame({"frozen": {5: [0.4, 0.42, 0.41]}, "scratch": {5: [0.60, 0.61, 0.63]}}))
    assert row["winner"] == LABEL["scratch"] and row["gain_claim"] == "winner is scratch"


# ------------------------------------------------------------------------------------------------ groups

def test_each_data_version_gets_its_own_verdict_and_stores_without_the_column_work():
    old = _frame({"frozen": {5: [0.8, 0.82, 0.81]}, "scratch": {5: [0.6, 0.61, 0.62]}})
    assert "data_version" not in old
    assert verdict.recommend(old, baselines=BASELINES).verdicts["data_version"].tolist() == [""]
    v1 = _frame({"frozen": {5: [0.8, 0.82, 0.81]}, "scratch": {5: [0.6, 0.61, 0.62]}}, data_version="a" * 12)
    v2 = _frame({"frozen": {5: [0.5, 0.52, 0.51]}, "scratch": {5: [0.7, 0.71, 0.73]}}, data_version="b" * 12)
    result = verdict.recommend(pd.concat([v1, v2], ignore_index=True), baselines=BASELINES)
    winners = result.verdicts.set_index("data_version")["winner"]
    assert winners["a" * 12] == LABEL["frozen"] and winners["b" * 12] == LABEL["scratch"]
    assert set(result.summaries()) == {(TASK, "a" * 12), (TASK, "b" * 12)}


def test_neighbouring_sizes_with_the_same_tie_are_told_once():
    runs = _frame({"frozen": {5: [0.80, 0.82, 0.87], 20: [0.90, 0.88, 0.91], 100: [0.93, 0.95, 0.94]},
                   "tuned": {5: [0.60, 0.61, 0.63], 20: [0.89, 0.91, 0.89], 100: [0.94, 0.93, 0.95]}})
    result = verdict.recommend(runs, baselines=BASELINES)
    assert list(result.verdicts["outcome"]) == ["win", "tie", "tie"]
    text = result.summaries()[(TASK, "")]
    assert text.startswith(f"At 5 per class, {LABEL['frozen']} wins by +0.217 over {LABEL['tuned']}")
    assert "From 20 per class on, " in text and text.count(" tie (") == 1


# ------------------------------------------------------------------------------------------------ Pareto

def test_pareto_front_on_a_known_set():
    points = {"a": (10, 0.90), "b": (5, 0.80), "c": (20, 0.85), "d": (5, 0.70), "e": (1, 0.50), "f": (10, 0.90),
              "g": (np.nan, 0.99), "h": (1, 0.50)}
    table = pd.DataFrame([dict(task=TASK, data_version="", size_key=5, fraction_key=-1.0, examples_per_class=5.0,
                               label=name, metric_label="test accuracy", mean=score, wall_seconds=cost)
                          for name, (cost, score) in points.items()])
    front = pareto.pareto_front(table, "wall_seconds").set_index("label")["on_front"]
    assert set(front.index) == set(points) - {"g"}  # no cost recorded: not placed at all
    assert sorted(front[front].index) == ["a", "b", "e", "f", "h"]  # equal points do not beat each other
    other_size = table.assign(size_key=20, mean=table["mean"] - 0.5)
    both = pareto.pareto_front(pd.concat([table, other_size]), "wall_seconds")
    assert both.groupby("size_key")["on_front"].sum().tolist() == [5, 5]  # each size has its own front


def test_pareto_chart_fills_front_points_and_says_what_is_missing():
    from transferlab.dashboard.charts import pareto_chart

    runs = _frame({"frozen": {5: [0.80, 0.82, 0.87]}, "scratch": {5: [0.60, 0.61, 0.63]}})
    runs.loc[runs["strategy"] == "frozen_features", "wall_seconds"] = 50.0
    table = verdict.recommend(runs, baselines=BASELINES).configurations
    fig = pareto_chart(pareto.pareto_front(table, "wall_seconds"), "wall_seconds")
    symbols = {trace.name: list(trace.marker.symbol) for trace in fig.data}
    assert symbols == {LABEL["frozen"]: ["circle"], LABEL["scratch"]: ["circle"]}  # cheaper vs better: both on it

    def front(n):  # n configurations at one size, each on the front
        return pd.DataFrame(dict(task="t", size="5 per class", label=[f"config {i}" for i in range(n)],
                                 mean=np.linspace(0.5, 0.9, n), cost=np.linspace(1, 100, n), on_front=True))

    # the figure grows for its legend (a line per two names) instead of drawing the legend over the axes
    two, ten = pareto_chart(front(2), "wall_seconds"), pareto_chart(front(10), "wall_seconds")
    assert ten.layout.height - two.layout.height == ten.layout.margin.b - two.layout.margin.b == 4 * 22
    fig = pareto_chart(pareto.pareto_front(table, "latency_ms"), "latency_ms")
    assert not fig.data and "backbones --measure" in fig.layout.annotations[0].text


# ------------------------------------------------------------------------------------------------ more labels?

def test_doubling_the_labels_on_a_known_curve():
    # 0.1 per doubling of the labels in log2(size): 0.4 at 5, 0.6 at 20, 0.8 at 80
    runs = _frame({"frozen": {5: [0.39, 0.40, 0.41], 20: [0.59, 0.60, 0.61], 80: [0.79, 0.80, 0.81]},
                   "other": {5: [0.30, 0.31, 0.32], 20: [0.50, 0.52, 0.51], 80: [0.60, 0.61, 0.62]}})
    table = verdict.recommend(runs, baselines=BASELINES).labels_or_backbone.set_index("size_key")
    assert table.loc[5, "expected_gain"] == pytest.approx(0.1) and table.loc[5, "basis"].startswith("interpolated")
    assert table.loc[20, "expected_mean"] == pytest.approx(0.7)
    assert table.loc[80, "expected_mean"] == pytest.approx(0.9)
    assert "extrapolated from 20 and 80" in table.loc[80, "basis"]
    assert table.loc[80, "other_backbone"] == LABEL["other"] and table.loc[80, "other_outcome"] == "worse"
    assert table.loc[80, "other_difference"] == pytest.approx(-0.19)
    assert "extrapolated" in table.loc[80, "answer"] and table.loc[80, "curve_within_noise"] is False


def test_doubling_says_when_the_data_cannot_tell():
    runs = _frame({"frozen": {5: [0.39, 0.40, 0.41]}, "tuned": {5: [0.30, 0.31, 0.29]}})
    row = verdict.recommend(runs, baselines=BASELINES).labels_or_backbone.iloc[0]
    assert np.isnan(row["expected_gain"]) and "the data cannot tell" in row["answer"]
    assert "no other backbone measured" in row["answer"]


# ------------------------------------------------------------------------------------------------ CLI

def _store_with_runs(runs: int = 3):
    """A store with scratch and frozen runs of ``digits`` at 5/class over three seeds, written via the Store API."""
    from transferlab.jobs import JobSpec
    from transferlab.store import Store

    store = Store()
    scores = {"scratch": [0.50, 0.52, 0.51], "frozen_features": [0.80, 0.83, 0.81]}
    for strategy, values in scores.items():
        for seed, score in enumerate(values[:runs]):
            job = JobSpec(task="digits", backbone="small_cnn", strategy=strategy, examples_per_class=5, seed=seed,
                          input_size=32)
            store.submit([job])
            store.finish(job.job_id, "succeeded", only_if=None, score=score, metric="accuracy",
                         metric_label="test accuracy", wall_seconds=3.0, trainable_params=1000)
    failed = JobSpec(task="lfw_faces", backbone="small_cnn", strategy="scratch", examples_per_class=5)
    store.submit([failed])
    store.finish(failed.job_id, "failed", only_if=None, error="on purpose")
    return store


def test_recommend_prints_the_verdict_and_its_json_parses(capsys, tl_home):
    _store_with_runs()
    assert main(["recommend"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digits: test accuracy\nAt 5 per class, small_cnn · random init · frozen_features wins by")
    assert "3 paired seeds" in out and "More labels or a better backbone?" in out
    assert main(["recommend", "--task", "digits", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (row,) = data["verdicts"]
    assert row["outcome"] == "win" and row["winner_n"] == 3 and row["data_version"] is None
    assert row["runner_up"] == "small_cnn · random init · scratch" and row["p_value"] < 0.05
    assert data["summaries"][0]["task"] == "digits" and data["pareto"]["latency_ms"] == []


def test_recommend_unknown_task_exits_2_listing_the_tasks(capsys, tl_home):
    _store_with_runs()
    assert main(["recommend", "--task", "imagenet21k"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Tasks with runs: digits." in err and "'imagenet21k'" in err


def test_recommend_on_an_empty_store_says_what_to_do_and_creates_nothing(capsys, tl_home):
    assert main(["recommend"]) == 0
    out = capsys.readouterr().out
    assert "No finished training runs" in out and "transferlab demo --quick" in out
    assert not (tl_home / "runs.sqlite").exists()
    from transferlab.store import Store

    Store()  # an empty store file
    assert main(["recommend", "--json"]) == 0
    assert "transferlab demo" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ panels

PAGES = Path(__file__).resolve().parents[1] / "dashboard" / "views"


def _page(name: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGES / name), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_home_and_report_show_the_verdict(tl_home):
    from transferlab.dashboard.report import html_report

    store = _store_with_runs()
    at = _page("home.py")
    assert "Verdict" in [s.value for s in at.subheader]
    assert any(m.value.startswith("**digits**: At 5 per class, small_cnn · random init · frozen_features wins")
               for m in at.markdown)
    report = html_report(store.runs_frame(), store.epochs_frame())
    assert "<h2>Verdict</h2>" in report and report.index("<h2>Verdict</h2>") < report.index("digits: data efficiency")
    assert "3 paired seeds" in report


def test_verdict_page_renders_the_verdict_and_its_empty_state(tl_home):
    from transferlab.store import Store

    at = _page("verdict.py")
    assert at.title[0].value == "Verdict" and "No finished training runs" in at.info[0].value
    import streamlit as st

    _store_with_runs(runs=1)
    st.cache_data.clear()  # the page caches its store read for a few seconds
    at = _page("verdict.py")
    assert not at.error, [e.value for e in at.error]
    assert "one seed: not tested" in at.markdown[0].value
    table = at.dataframe[0].value
    assert table["outcome"].tolist() == ["not tested"] and table["seeds"].tolist() == [1]
    # beside the winner: whether its model is kept, and the Inspect page's deep link to its best seed
    winner = verdict.recommend(Store().runs_frame()).verdicts.iloc[0]["winner_runs"][0]
    assert table["model"].tolist() == ["not kept"] and table["inspect"].tolist() == [f"inspect?run={winner}"]


def test_recommend_reads_data_versions_and_unconverged_baselines_from_the_store(capsys, tl_home):
    from transferlab.jobs import JobSpec
    from transferlab.store import Store

    store = Store()
    for version, improving in (("a" * 12, False), ("b" * 12, True)):
        for strategy, values in {"scratch": [0.50, 0.52, 0.51], "frozen_features": [0.80, 0.83, 0.81]}.items():
            for seed, score in enumerate(values):
                job = JobSpec(task="digits", backbone="small_cnn", strategy=strategy, examples_per_class=5, seed=seed,
                              input_size=32, data=f"folder:/somewhere/{version}", data_version=version)
                store.submit([job])
                store.finish(job.job_id, "succeeded", only_if=None, score=score, metric="accuracy",
                             still_improving=improving and strategy == "scratch", wall_seconds=3.0)
    assert main(["recommend", "--json"]) == 0
    rows = {row["data_version"]: row for row in json.loads(capsys.readouterr().out)["verdicts"]}
    assert set(rows) == {"a" * 12, "b" * 12}
    assert rows["a" * 12]["gain_claim"] == "claimed" and rows["b" * 12]["gain_claim"] == "not claimed"
    assert "data_version=" not in rows["a" * 12]["winner"]  # the version is the group, not part of the label


def test_matched_seeds_with_one_difference_on_every_seed_fall_back_to_welch_and_say_so():
    frozen, tuned = np.array([0.70, 0.78, 0.74]), np.array([0.70, 0.78, 0.74]) - 0.02  # a 0.02 gap on each seed
    result = verdict.compare_scores(frozen, np.arange(3), tuned, np.arange(3))
    assert result.test == "Welch t" and result.constant_pairs and not result.significant
    assert "same difference on every paired seed" in result.evidence()
    unpaired = verdict.compare_scores(frozen, np.arange(3), tuned, np.arange(3) + 10)
    assert not unpaired.constant_pairs and "paired" not in unpaired.evidence()


def test_each_verdict_points_to_its_winners_model_kept_or_to_rerun():
    from transferlab.verdict_text import format_recommendation, recommendation_json

    runs = _frame({"tuned": {5: [0.80, 0.86, 0.83]}, "frozen": {5: [0.70, 0.72, 0.71]}})
    result, row = _verdict(runs)
    assert row["winner_runs"] == ["tuned-5-1-None-None", "tuned-5-2-None-None", "tuned-5-0-None-None"]  # best first
    # the winner's best seed kept: export it; only a lesser seed kept: that one; none kept: re-run the best
    assert "model: kept (run tuned-5-1-None-None): transferlab export tuned-5-1-None-None" in \
        format_recommendation(result, {"tuned-5-1-None-None", "frozen-5-1-None-None"})
    assert "model: kept (run tuned-5-0-None-None)" in format_recommendation(result, {"tuned-5-0-None-None"})
    text = format_recommendation(result, set())
    assert "model: not kept (run tuned-5-1-None-None, the best seed): transferlab export tuned-5-1-None-None --rerun" in text
    assert "model:" not in format_recommendation(result)  # no store to ask: nothing said
    record = recommendation_json(result, {"tuned-5-2-None-None"})["verdicts"][0]
    assert (record["model_run"], record["model_kept"]) == ("tuned-5-2-None-None", True)
