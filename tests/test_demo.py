"""The embedded default demo: its grid, and (slow) a reduced run end to end."""
from __future__ import annotations

import pytest

from transferlab.demo import demo_jobs
from transferlab.registry import load_registry


def test_demo_grid_is_the_promised_comparison():
    jobs = demo_jobs(load_registry())
    train = [j for j in jobs if j.kind == "train"]
    assert len(train) == 4 * 3 * 3  # 4 configurations x 3 sizes x 3 seeds
    assert {j.examples_per_class for j in train} == {5, 20, 100} and {j.seed for j in train} == {0, 1, 2}
    assert {(j.backbone, j.weights.split(":")[0], j.strategy) for j in train} == {
        ("small_cnn", "none", "scratch"),
        ("efficientnet_lite0", "imagenet", "frozen_features"),
        ("efficientnet_lite0", "imagenet", "lp_ft"),
        ("small_cnn", "run", "full_fine_tune"),
    }
    pretrains = [j for j in jobs if j.kind == "pretrain"]
    assert len(pretrains) == 3 and all(p.shuffled_labels for p in pretrains)
    assert jobs[:3] == pretrains


def test_every_strategies_demo_configuration_trains_under_the_same_budget_rules():
    from transferlab.demo import BUDGET

    train = [j for j in demo_jobs(load_registry()) if j.kind == "train"]
    assert BUDGET["min_steps"] > 0 and BUDGET["early_stopping"] > 0
    assert {(j.min_steps, j.early_stopping) for j in train} == {(BUDGET["min_steps"], BUDGET["early_stopping"])}


@pytest.mark.slow
def test_reduced_demo_end_to_end(capsys):
    from transferlab.cli import main

    assert main(["demo", "--sizes", "5", "--seeds", "0,1", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "animal_mnist: test accuracy" in out
    assert "efficientnet_lite0 · imagenet · frozen_features" in out and "status: succeeded 10" in out
