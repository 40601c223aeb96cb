"""transferlab.compare on small hand-built frames whose answers are known: three configurations, three sizes,
three seeds, with crossovers and a negative transfer built in."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from transferlab import compare
from transferlab.analysis import summarize
from transferlab.errors import UserError

TASK = "animal_mnist"
SOURCE = "animal_mnist:shuffled"
SIZES = (5, 20, 100)
SEEDS = (0, 1, 2)
# test accuracy per configuration and size, one value per seed
ACCURACY = {
    "scratch": {5: [0.30, 0.32, 0.34], 20: [0.50, 0.52, 0.54], 100: [0.80, 0.82, 0.84]},
    "frozen": {5: [0.60, 0.62, 0.64], 20: [0.70, 0.71, 0.72], 100: [0.74, 0.75, 0.76]},
    "sourced": {5: [0.20, 0.22, 0.24], 20: [0.50, 0.53, 0.56], 100: [0.83, 0.84, 0.85]},
}
CONFIG = {
    "scratch": dict(backbone="small_cnn", weights="none", strategy="scratch", source=None,
                    phases=[("all", 120_000, 0)], trainable=120_000, total=120_000),
    "frozen": dict(backbone="efficientnet_lite0", weights="imagenet", strategy="frozen_features", source=None,
                   phases=[("head", 12_810, 3_400_000)], trainable=12_810, total=3_412_810),
    "sourced": dict(backbone="small_cnn", weights="run:pre{seed}", strategy="full_fine_tune", source=SOURCE,
                    phases=[("head", 1_290, 118_710), ("fine_tune", 120_000, 0)], trainable=120_000, total=120_000),
}
LABEL = {
    "scratch": "small_cnn · random init · scratch",
    "frozen": "efficientnet_lite0 · imagenet · frozen_features",
    "sourced": f"small_cnn · pretrained on {SOURCE} · full_fine_tune",
}
EPOCHS = 3


def _phases_json(phases) -> str:
    return json.dumps([dict(phase=name, train="all", epochs=EPOCHS, learning_rate=1e-3, trainable_params=trainable,
                            frozen_params=frozen, verified=True) for name, trainable, frozen in phases])


def _run(run_id, kind, config, size, seed, status="succeeded", accuracy=float("nan"), transferability=None):
    c = CONFIG[config]
    return dict(run_id=run_id, kind=kind, task=TASK if kind == "train" else SOURCE, backbone=c["backbone"],
                weights=c["weights"].format(seed=seed), strategy=c["strategy"], source=c["source"],
                examples_per_class=float(size), seed=seed, status=status, score=accuracy,
                metric="accuracy" if status == "succeeded" else None,
                metric_label="test accuracy" if status == "succeeded" else None, test_loss=1 - accuracy, balanced_accuracy=accuracy,
                trainable_params=c["trainable"] if status == "succeeded" else None,
                total_params=c["total"] if status == "succeeded" else None, wall_seconds=10.0,
                images_per_second=100.0, transferability=transferability,
                phases_json=_phases_json(c["phases"]) if status == "succeeded" else None, created_at=1.0)


def build_runs() -> pd.DataFrame:
    """Runs as ``Store.runs_frame`` returns them: 27 succeeded train runs, 3 pretrain runs, a failed,
    a running and a queued run."""
    rows = []
    for config, per_size in ACCURACY.items():
        for size, values in per_size.items():
            for seed, accuracy in zip(SEEDS, values):
                logme = None if config == "scratch" else (1.0 if config == "frozen" else 0.2) + 0.1 * seed
                rows.append(_run(f"{config}-{size}-{seed}", "train", config, size, seed, accuracy=accuracy,
                                 transferability=logme))
    for seed in SEEDS:
        pretrain = _run(f"pre{seed}", "pretrain", "scratch", float("nan"), seed, accuracy=0.4)
        rows.append(dict(pretrain, strategy="full_fine_tune"))
    rows.append(_run("failed-5-3", "train", "frozen", 5, 3, status="failed"))
    rows.append(_run("running-20-3", "train", "scratch", 20, 3, status="running"))
    rows.append(_run("queued-100-3", "train", "sourced", 100, 3, status="queued"))
    return pd.DataFrame(rows)


def build_epochs(runs: pd.DataFrame) -> pd.DataFrame:
    """Three epochs per succeeded run, one for the running run; values are linear in epoch and seed."""
    rows = []
    for run_id, status, seed in runs[["run_id", "status", "seed"]].itertuples(index=False):
        count = EPOCHS if status == "succeeded" else 1 if status in ("running", "failed") else 0
        for epoch in range(1, count + 1):
            rows.append(dict(run_id=run_id, epoch=epoch, phase="head", train_loss=1 / epoch + 0.1 * seed,
                             train_score=0.2 * epoch + 0.01 * seed, val_loss=2 / epoch + 0.1 * seed,
                             val_score=0.1 * epoch + 0.01 * seed, seconds=1.0))
    return pd.DataFrame(rows)


@pytest.fixture
def runs():
    return build_runs()


@pytest.fixture
def summary(runs):
    return summarize(runs)


def _ci95(values) -> float:
    values = np.asarray(values)
    return stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))


# ------------------------------------------------------------------------------------------------ labels

def test_config_label_matches_summary_labels(runs, summary):
    labels = compare.config_label(runs[runs["kind"] == "train"])
    assert set(labels) == set(LABEL.values()) == set(summary["label"])
    assert compare.config_label(runs.iloc[0]) == LABEL["scratch"]
    sourced = runs[runs["run_id"] == "sourced-5-0"].iloc[0]
    assert compare.config_label(sourced) == f"small_cnn · pretrained on {SOURCE} · full_fine_tune"
    assert compare.config_label(runs.iloc[0:0]).empty


# ------------------------------------------------------------------------------------------------ curves

def _curve(frame, config, size, split, epoch):
    row = frame[(frame["label"] == LABEL[config]) & (frame["examples_per_class"] == size)
                & (frame["split"] == split) & (frame["epoch"] == epoch)]
    assert len(row) == 1, row
    return row.iloc[0]


def test_curves_minmax_over_seeds(runs):
    frame = compare.curves(build_epochs(runs), runs)
    assert list(frame.columns) == compare.CURVE_COLUMNS
    # 9 train groups + 1 pretrain group, x 3 epochs x 2 splits; the running run joins scratch at 20/class
    assert len(frame) == 10 * EPOCHS * 2
    assert set(frame["split"]) == {"train", "val"}
    row = _curve(frame, "frozen", 5, "val", 2)
    assert (row["mean"], row["low"], row["high"], row["n_seeds"]) == pytest.approx((0.21, 0.20, 0.22, 3))
    running = _curve(frame, "scratch", 20, "train", 1)
    assert running["n_seeds"] == 4
    assert running["mean"] == pytest.approx(0.2 + 0.01 * np.mean([0, 1, 2, 3]))
    assert _curve(frame, "scratch", 20, "train", 2)["n_seeds"] == 3
    assert "failed-5-3" not in set(frame["group"])  # failed runs do not count
    assert frame["group"].nunique() == 10


def test_curves_ci95_and_loss(runs):
    frame = compare.curves(build_epochs(runs), runs, metric="loss", band="ci95")
    row = _curve(frame, "sourced", 100, "val", 3)
    values = [2 / 3 + 0.1 * seed for seed in SEEDS]
    half = _ci95(values)
    assert row["mean"] == pytest.approx(np.mean(values))
    assert (row["low"], row["high"]) == pytest.approx((np.mean(values) - half, np.mean(values) + half))


def test_curves_one_seed_band_collapses(runs):
    one_seed = runs[runs["seed"] == 0]
    for band in ("minmax", "ci95"):
        frame = compare.curves(build_epochs(one_seed), one_seed, band=band)
        assert (frame["n_seeds"] == 1).all()
        assert np.allclose(frame["low"], frame["mean"]) and np.allclose(frame["high"], frame["mean"])


def test_curves_smoothing_per_run(runs):
    frame = compare.curves(build_epochs(runs), runs, smoothing=0.5)
    # bias-corrected EMA with weight 0.5 on the past; a constant per-seed offset passes straight through
    expected_epoch_2 = (0.2 + 0.5 * 0.1) / 1.5 + 0.01
    assert _curve(frame, "scratch", 5, "val", 1)["mean"] == pytest.approx(0.1 + 0.01)
    assert _curve(frame, "scratch", 5, "val", 2)["mean"] == pytest.approx(expected_epoch_2)


def test_curves_pretrain_runs_form_their_own_groups(runs):
    frame = compare.curves(build_epochs(runs), runs)
    pretrain = frame[frame["group"].str.startswith("pretrain · ")]
    group = f"pretrain · {SOURCE} · small_cnn · random init · full_fine_tune · all/class"
    assert set(pretrain["group"]) == {group}
    assert (pretrain["n_seeds"] == 3).all() and pretrain["examples_per_class"].isna().all()


def test_curves_ci95_band_stays_inside_what_the_metric_can_be(runs):
    """Seeds at 0.98, 0.99 and 1.0 have a t-interval reaching past 1; near 0 below 0; a loss near 0 below 0."""
    epochs = build_epochs(runs)
    ok = epochs["run_id"].isin(runs.loc[runs["seed"].isin(SEEDS), "run_id"])
    seed = epochs["run_id"].map(runs.set_index("run_id")["seed"]).astype(float)
    epochs.loc[ok, "val_score"] = 1.0 - 0.01 * seed[ok]  # 1.00, 0.99, 0.98
    epochs.loc[ok, "train_score"] = 0.01 * seed[ok]  # 0.00, 0.01, 0.02
    epochs.loc[ok, "val_loss"] = 0.01 * seed[ok]
    assert 0.99 + _ci95([1.0, 0.99, 0.98]) > 1 and 0.01 - _ci95([0.0, 0.01, 0.02]) < 0  # the plain t would leave
    score = compare.curves(epochs, runs, band="ci95")
    three = score[score["n_seeds"] == 3]
    assert (three["low"] >= 0).all() and (three["high"] <= 1).all()
    assert _curve(score, "frozen", 5, "val", 1)["high"] == 1.0
    assert _curve(score, "frozen", 5, "train", 1)["low"] == 0.0
    assert _curve(score, "frozen", 5, "val", 1)["low"] == pytest.approx(0.99 - _ci95([1.0, 0.99, 0.98]))
    loss = compare.curves(epochs, runs, metric="loss", band="ci95")
    assert _curve(loss, "frozen", 5, "val", 1)["low"] == 0.0 and (loss["low"] >= 0).all()


def test_bounded_interval_clips_and_keeps_a_missing_interval_missing():
    low, high = compare.bounded_interval([0.97, 0.02, 0.5, 0.5], [0.05, 0.05, 0.1, np.nan])
    assert np.allclose(low[:3], [0.92, 0.0, 0.4]) and np.allclose(high[:3], [1.0, 0.07, 0.6])
    assert np.isnan(low[3]) and np.isnan(high[3])  # one seed: no bar, not a bar of zero width
    low, high = compare.bounded_interval([-0.95, 0.9], [0.2, 0.2], compare.GAIN_RANGE)
    assert np.allclose(low, [-1.0, 0.7]) and np.allclose(high, [-0.75, 1.0])


def test_wilson_interval_known_values_and_bounds():
    low, high = compare.wilson_interval([0.5, 1.0, 0.0, 0.9], [100, 50, 50, 0])
    assert (low[0], high[0]) == pytest.approx((0.4038, 0.5962), abs=1e-4)  # the textbook p = 0.5, n = 100
    assert high[1] == 1.0 and low[1] == pytest.approx(0.92865, abs=1e-4)  # all 50 right: not [1, 1]
    assert low[2] == 0.0 and high[2] == pytest.approx(1 - 0.92865, abs=1e-4)
    assert np.isnan(low[3]) and np.isnan(high[3])  # no test examples known


def test_score_intervals_t_for_seeds_wilson_for_one_run(runs):
    near_one = runs.copy()
    rows = (near_one["run_id"].str.startswith("frozen-100-"))
    near_one.loc[rows, "score"] = [0.97, 0.99, 1.0]
    near_one["manifest_json"] = json.dumps({"n_test": 200})
    table = compare.score_intervals(summarize(near_one), near_one)
    frozen = table[(table["label"] == LABEL["frozen"]) & (table["examples_per_class"] == 100)].iloc[0]
    assert frozen["mean"] + frozen["ci95"] > 1  # the interval the t would give
    assert frozen["interval"] == "t" and frozen["high"] == 1.0
    assert frozen["low"] == pytest.approx(frozen["mean"] - frozen["ci95"])
    one_seed = near_one[near_one["seed"] == 0]
    table = compare.score_intervals(summarize(one_seed), one_seed)
    single = table[(table["label"] == LABEL["scratch"]) & (table["examples_per_class"] == 5)].iloc[0]
    assert single["n"] == 1 and single["interval"] == "wilson"
    expected = compare.wilson_interval(0.30, 200)
    assert (single["low"], single["high"]) == pytest.approx((float(expected[0]), float(expected[1])))
    # without the runs (so no n_test) one seed has no interval at all, rather than one made up
    alone = compare.score_intervals(summarize(one_seed))
    assert (alone["interval"] == "").all() and alone["low"].isna().all()
    mapped = one_seed.assign(metric="map50", metric_label="test mAP@0.5")
    table = compare.score_intervals(summarize(mapped), mapped)
    assert not (table["interval"] == "wilson").any()  # mAP is not a proportion of test examples
    assert table.loc[table["n"] == 1, "low"].isna().all()


@pytest.mark.parametrize("kwargs", [dict(metric="f1"), dict(band="sd"), dict(smoothing=1.0)])
def test_curves_rejects_bad_options(runs, kwargs):
    with pytest.raises(UserError, match="Received"):
        compare.curves(build_epochs(runs), runs, **kwargs)


# ------------------------------------------------------------------------------------------------ crossovers

def _crossing(size_low, size_high, a, b):
    """Where lines a and b (means at the two sizes) cross, interpolated in log size."""
    d0, d1 = a[0] - b[0], a[1] - b[1]
    t = d0 / (d0 - d1)
    x = math.exp(math.log(size_low) + t * (math.log(size_high) - math.log(size_low)))
    return x, a[0] + t * (a[1] - a[0])


def test_crossovers_found_where_built(summary):
    frame = compare.crossovers(summary)
    assert list(frame.columns) == compare.CROSSOVER_COLUMNS
    found = {(r.leader_before, r.leader_after, r.between_low, r.between_high) for r in frame.itertuples()}
    assert found == {
        (LABEL["frozen"], LABEL["scratch"], 20, 100),
        (LABEL["scratch"], LABEL["sourced"], 5, 20),
        (LABEL["frozen"], LABEL["sourced"], 20, 100),
    }
    row = frame[(frame["leader_after"] == LABEL["scratch"])].iloc[0]
    x, y = _crossing(20, 100, [0.71, 0.75], [0.52, 0.82])
    assert (row["x"], row["y"]) == pytest.approx((x, y))
    assert 20 < row["x"] < 100 and 0.71 < row["y"] < 0.82


def test_crossovers_none_without_flip(summary):
    no_flip = summary[summary["label"].isin([LABEL["scratch"], LABEL["sourced"]])
                      & (summary["examples_per_class"] >= 20)]
    assert compare.crossovers(no_flip).empty
    assert list(compare.crossovers(no_flip).columns) == compare.CROSSOVER_COLUMNS


def _means_table(means: dict[str, dict[int, float]], task: str = TASK) -> pd.DataFrame:
    """A summary-shaped frame (only what crossovers reads) from label -> size -> mean."""
    return pd.DataFrame([dict(task=task, label=label, examples_per_class=float(size), mean=mean)
                         for label, per_size in means.items() for size, mean in per_size.items()])


def _all_pair_flips(table: pd.DataFrame) -> set[tuple[str, str, float, float]]:
    """Every pair's flips between consecutive sizes both were measured at (the rule before neighbours)."""
    found = set()
    labels = sorted(table["label"].unique())
    for i, first in enumerate(labels):
        for second in labels[i + 1:]:
            a = table[table["label"] == first].set_index("examples_per_class")["mean"]
            b = table[table["label"] == second].set_index("examples_per_class")["mean"]
            common = sorted(set(a.index) & set(b.index))
            for low, high in zip(common, common[1:]):
                d0, d1 = a[low] - b[low], a[high] - b[high]
                if d0 * d1 < 0:
                    found.add((first, second, low, high) if d0 > 0 else (second, first, low, high))
    return found


def test_crossovers_beyond_three_configurations_only_between_neighbours_in_the_ranking():
    # A > B > C at 10 and C > B > A at 100: A and C have B between them at both sizes
    means = {"A": {10: 0.9, 100: 0.7}, "B": {10: 0.8, 100: 0.8}, "C": {10: 0.7, 100: 0.9},
             "D": {10: 0.1, 100: 0.05}}
    found = {(r.leader_before, r.leader_after) for r in compare.crossovers(_means_table(means)).itertuples()}
    assert found == {("A", "B"), ("B", "C")}
    # with three configurations every pair counts, so A and C's flip is there too
    three = {label: means[label] for label in "ABC"}
    found = {(r.leader_before, r.leader_after) for r in compare.crossovers(_means_table(three)).itertuples()}
    assert found == {("A", "B"), ("B", "C"), ("A", "C")}


def test_crossovers_of_up_to_three_configurations_are_every_pairs_flips():
    rng = np.random.default_rng(3)
    for trial in range(40):
        labels = ["A", "B", "C"][:rng.integers(2, 4)]
        sizes = [5, 10, 20, 50, 100]
        means = {label: {s: float(rng.random()) for s in sizes if rng.random() > 0.2} for label in labels}
        table = _means_table(means)
        frame = compare.crossovers(table)
        found = {(r.leader_before, r.leader_after, r.between_low, r.between_high) for r in frame.itertuples()}
        assert found == _all_pair_flips(table), trial


def test_crossovers_of_many_configurations_grow_linearly_and_are_between_neighbours():
    rng = np.random.default_rng(4)
    labels, sizes = [f"c{i:03d}" for i in range(300)], [5, 10, 20, 50, 100]
    table = _means_table({label: {s: float(rng.random()) for s in sizes} for label in labels})
    frame = compare.crossovers(table)
    assert 0 < len(frame) <= 2 * (len(labels) - 1) * (len(sizes) - 1)  # all pairs would give ~ labels² / 3
    mean = table.set_index(["examples_per_class", "label"])["mean"]
    place = {s: {label: k for k, label in enumerate(mean[s].sort_values(ascending=False).index)} for s in sizes}
    for r in frame.itertuples():
        low, high = r.between_low, r.between_high
        assert mean[low, r.leader_before] > mean[low, r.leader_after]  # a real flip ...
        assert mean[high, r.leader_before] < mean[high, r.leader_after]
        assert any(abs(place[s][r.leader_before] - place[s][r.leader_after]) == 1 for s in (low, high))  # ... of neighbours
    # and every flip of neighbours is there
    wanted = {(before, after, low, high) for before, after, low, high in _neighbour_flips(mean, place, sizes)}
    assert {(r.leader_before, r.leader_after, r.between_low, r.between_high) for r in frame.itertuples()} == wanted


def _neighbour_flips(mean, place, sizes):
    for low, high in zip(sizes, sizes[1:]):
        for s in (low, high):
            ranked = sorted(place[s], key=place[s].get)
            for a, b in zip(ranked, ranked[1:]):
                d0, d1 = mean[low, a] - mean[low, b], mean[high, a] - mean[high, b]
                if d0 * d1 < 0:
                    yield (a, b, float(low), float(high)) if d0 > 0 else (b, a, float(low), float(high))


# ------------------------------------------------------------------------------------------------ gains

def test_negative_transfer_flags(summary):
    frame = compare.negative_transfer(summary)
    assert list(frame.columns) == compare.NEGATIVE_COLUMNS
    assert len(frame) == 6  # two starting points x three sizes, scratch excluded
    assert LABEL["scratch"] not in set(frame["starting_point"])
    flagged = frame[frame["significant_negative"]]
    assert {(r.starting_point, r.examples_per_class) for r in flagged.itertuples()} == {
        (LABEL["sourced"], 5), (LABEL["frozen"], 100)}
    row = frame[(frame["starting_point"] == LABEL["sourced"]) & (frame["examples_per_class"] == 5)].iloc[0]
    assert row["gain"] == pytest.approx(-0.10)
    welch = stats.ttest_ind(ACCURACY["sourced"][5], ACCURACY["scratch"][5], equal_var=False)
    assert row["gain_ci95"] == pytest.approx(welch.confidence_interval().high - row["gain"])
    positive = frame[frame["significant_positive"]]
    assert (LABEL["frozen"], 5) in {(r.starting_point, r.examples_per_class) for r in positive.itertuples()}
    unclear = frame[(frame["starting_point"] == LABEL["sourced"]) & (frame["examples_per_class"] == 20)].iloc[0]
    assert not unclear["significant_negative"] and not unclear["significant_positive"]


def test_negative_transfer_needs_two_seeds(runs):
    frame = compare.negative_transfer(summarize(runs[runs["seed"] == 0]))
    assert len(frame) == 6
    assert not frame["significant_negative"].any() and not frame["significant_positive"].any()
    assert (frame.set_index(["starting_point", "examples_per_class"]).loc[(LABEL["sourced"], 5), "gain"]
            == pytest.approx(0.20 - 0.30))


def test_gain_per_run_arithmetic(runs, summary):
    frame = compare.gain_per_run(runs)
    assert list(frame.columns) == compare.GAIN_COLUMNS
    assert len(frame) == 18  # succeeded non-scratch train runs
    row = frame.set_index("run_id").loc["frozen-5-2"]
    assert row["gain"] == pytest.approx(0.64 - np.mean(ACCURACY["scratch"][5]))
    assert row["transferability"] == pytest.approx(1.2)
    assert (row["label"], row["examples_per_class"], row["seed"]) == (LABEL["frozen"], 5, 2)
    # the mean over seeds is the summary's gain
    means = frame.groupby(["label", "examples_per_class"])["gain"].mean()
    reference = summary.set_index(["label", "examples_per_class"])["gain_vs_baseline"]
    assert np.allclose(means, reference.loc[means.index])


def test_gain_correlations_one_per_size_never_pooled(runs):
    gains = compare.gain_per_run(runs)
    table = compare.gain_correlations(gains)
    assert list(table.columns) == compare.GAIN_CORRELATION_COLUMNS
    assert list(table["examples_per_class"]) == [5, 20, 100] and (table["n"] == 6).all()
    for size, rho in zip(table["examples_per_class"], table["spearman"]):
        at = gains[gains["examples_per_class"] == size]
        assert rho == pytest.approx(stats.spearmanr(at["transferability"], at["gain"]).statistic)
    pooled = stats.spearmanr(gains["transferability"], gains["gain"]).statistic
    assert all(abs(rho - pooled) > 0.1 for rho in table["spearman"])  # what a pooled number would hide
    # exact small-sample p-value: 6 runs in a perfect order, 2 of the 6! orderings are as extreme
    assert table["spearman_p"].iloc[0] == pytest.approx(2 / 720) and table["spearman_p"].iloc[2] > 0.05
    few = compare.gain_correlations(gains[gains["seed"] == 0])  # two runs per size: no correlation
    assert few["n"].tolist() == [2, 2, 2] and few["spearman"].isna().all() and few["spearman_p"].isna().all()
    assert compare.gain_correlations(gains.iloc[0:0]).empty


def test_gain_per_run_without_scratch_is_empty(runs):
    frame = compare.gain_per_run(runs[runs["strategy"] != "scratch"])
    assert frame.empty and list(frame.columns) == compare.GAIN_COLUMNS


# ------------------------------------------------------------------------------------------------ model facts

def test_freeze_checks_one_row_per_phase(runs):
    broken = runs.copy()
    broken.loc[broken["run_id"] == "frozen-5-0", "phases_json"] = "{not json"
    frame = compare.freeze_checks(broken)
    assert list(frame.columns) == compare.FREEZE_COLUMNS
    # 9 scratch + 8 readable frozen + 9 x 2 sourced + 3 pretrain (scratch-like, one phase)
    assert len(frame) == 9 + 8 + 18 + 3
    sourced = frame[frame["run_id"] == "sourced-20-1"]
    assert list(sourced["phase"]) == ["head", "fine_tune"]
    assert list(sourced["trainable_params"]) == [1_290, 120_000]
    assert list(sourced["frozen_params"]) == [118_710, 0]
    assert sourced["verified"].all() and set(sourced["label"]) == {LABEL["sourced"]}


def test_parameter_table_medians_and_published(runs):
    frame = compare.parameter_table(runs, published={"efficientnet_lite0": 4_652_008, "small_cnn": None})
    assert list(frame.columns) == compare.PARAMETER_COLUMNS
    table = frame.set_index(["backbone", "strategy"])
    assert table.loc[("efficientnet_lite0", "frozen_features"), "trainable_params"] == 12_810
    assert table.loc[("efficientnet_lite0", "frozen_features"), "total_params"] == 3_412_810
    assert table.loc[("efficientnet_lite0", "frozen_features"), "published_params"] == 4_652_008
    assert math.isnan(table.loc[("small_cnn", "scratch"), "published_params"])
    assert table.loc[("small_cnn", "full_fine_tune"), "n_runs"] == 9 + 3  # train and pretrain runs
    assert compare.parameter_table(runs)["published_params"].isna().all()


# ------------------------------------------------------------------------------------------------ empty input

def test_every_function_returns_typed_empty_frames(runs):
    nothing = runs.iloc[0:0]
    queued = runs[runs["status"] == "queued"]
    for subset in (nothing, queued):
        empty_summary = summarize(subset)
        results = {
            "curves": (compare.curves(build_epochs(subset) if not subset.empty else pd.DataFrame(
                columns=["run_id", "epoch", "phase", "train_loss", "train_score", "val_loss", "val_score",
                         "seconds"]), subset), compare.CURVE_COLUMNS),
            "crossovers": (compare.crossovers(empty_summary), compare.CROSSOVER_COLUMNS),
            "negative": (compare.negative_transfer(empty_summary), compare.NEGATIVE_COLUMNS),
            "gain": (compare.gain_per_run(subset), compare.GAIN_COLUMNS),
            "correlations": (compare.gain_correlations(compare.gain_per_run(subset)),
                             compare.GAIN_CORRELATION_COLUMNS),
            "freeze": (compare.freeze_checks(subset), compare.FREEZE_COLUMNS),
            "parameters": (compare.parameter_table(subset), compare.PARAMETER_COLUMNS),
        }
        for name, (frame, columns) in results.items():
            assert frame.empty, name
            assert list(frame.columns) == columns, name
