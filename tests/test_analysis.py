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
