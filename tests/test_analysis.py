"""Summaries: only seeds are pooled, and gains are measured against the right scratch baseline."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from transferlab.analysis import summarize


def _run(i, backbone, strategy, acc, seed, epochs=10, size=5, weights="none"):
    spec = dict(task="t", backbone=backbone, strategy=strategy, weights=weights, examples_per_class=size,
                seed=seed, epochs=epochs)
    return dict(run_id=f"r{i}", kind="train", status="succeeded", task="t", backbone=backbone, weights=weights,
                strategy=strategy, source=np.nan, examples_per_class=float(size), seed=seed, score=acc,
                spec_json=json.dumps(spec))


def test_gain_uses_the_scratch_runs_of_the_same_backbone():
    runs = pd.DataFrame([
        _run(0, "small", "scratch", 0.50, 0), _run(1, "small", "scratch", 0.52, 1),
        _run(2, "big", "scratch", 0.20, 0), _run(3, "big", "scratch", 0.22, 1),
        _run(4, "small", "full_fine_tune", 0.61, 0, weights="imagenet"),
        _run(5, "small", "full_fine_tune", 0.63, 1, weights="imagenet"),
    ])
    row = summarize(runs).set_index(["backbone", "strategy"]).loc[("small", "full_fine_tune")]
    assert abs(row["gain_vs_baseline"] - 0.11) < 1e-9
    assert row["baseline_label"] == "small · random init · scratch" and row["baseline_n"] == 2


def test_ambiguous_scratch_baseline_gives_no_gain():
    runs = pd.DataFrame([
        _run(0, "a", "scratch", 0.5, 0), _run(1, "b", "scratch", 0.2, 0),
        _run(2, "c", "feature_extraction", 0.6, 0, weights="imagenet"),
    ])
    row = summarize(runs).set_index("backbone").loc["c"]
    assert np.isnan(row["gain_vs_baseline"]) and row["baseline_label"] is None


def test_runs_with_other_settings_are_not_pooled_as_seeds():
    runs = pd.DataFrame([
        _run(0, "small", "scratch", 0.5, 0, epochs=10), _run(1, "small", "scratch", 0.7, 1, epochs=10),
        _run(2, "small", "scratch", 0.9, 0, epochs=30),
    ])
    table = summarize(runs)
    assert sorted(table["n"]) == [1, 2]
    assert set(table["label"]) == {"small · random init · scratch · epochs=10", "small · random init · scratch · epochs=30"}


def test_labels_tell_configurations_apart_within_a_task_only():
    """Two tasks with their own defaults (class weights) do not lengthen every label; two configurations of
    one task that share a label get the setting that differs."""
    import json

    import pandas as pd

    from transferlab.analysis import run_labels

    def row(task, class_weight, epochs=10):
        spec = dict(task=task, backbone="small_cnn", weights="none", strategy="scratch", class_weight=class_weight,
                    epochs=epochs)
        return dict(task=task, backbone="small_cnn", weights="none", strategy="scratch", source=None,
                    spec_json=json.dumps(spec))

    runs = pd.DataFrame([row("digits", "none"), row("elpv", "balanced"), row("elpv", "balanced", epochs=20)])
    labels = list(run_labels(runs))
    assert labels[0] == "small_cnn · random init · scratch"
    assert labels[1:] == ["small_cnn · random init · scratch · epochs=10", "small_cnn · random init · scratch · epochs=20"]


def test_gains_and_labels_keep_data_versions_apart():
    def run(i, strategy, acc, seed, version):
        row = _run(i, "small", strategy, acc, seed, weights="none" if strategy == "scratch" else "imagenet")
        spec = dict(json.loads(row["spec_json"]), data=f"folder:/x/{version}", data_version=version)
        return dict(row, spec_json=json.dumps(spec), data_version=version)

    a, b = "a" * 12, "b" * 12
    runs = pd.DataFrame([run(0, "scratch", 0.50, 0, a), run(1, "scratch", 0.52, 1, a),
                         run(2, "full_fine_tune", 0.70, 0, a), run(3, "full_fine_tune", 0.72, 1, a),
                         run(4, "full_fine_tune", 0.90, 0, b), run(5, "full_fine_tune", 0.92, 1, b)])
    table = summarize(runs, baselines={"scratch"}).set_index(["data_version", "strategy"])
    assert abs(table.loc[(a, "full_fine_tune"), "gain_vs_baseline"] - 0.2) < 1e-9
    assert np.isnan(table.loc[(b, "full_fine_tune"), "gain_vs_baseline"])  # B has no scratch run of its own
    assert table.loc[(a, "scratch"), "label"] == f"small · random init · scratch · data {a}"
    assert table.loc[(b, "full_fine_tune"), "label"].endswith(f"full_fine_tune · data {b}")
    one = summarize(runs[runs["data_version"] == a], baselines={"scratch"})
    assert not one["label"].str.contains("data ").any()  # one version: nothing to tell apart
