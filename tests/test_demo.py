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


def test_quick_demo_is_one_size_one_seed_and_the_three_answers():
    from transferlab import demo

    jobs = demo_jobs(load_registry(), which="quick")
    assert all(j.kind == "train" for j in jobs)  # nothing to pretrain first
    assert [(j.backbone, j.weights.split(":")[0], j.strategy) for j in jobs] == [
        ("small_cnn", "none", "scratch"),
        ("efficientnet_lite0", "imagenet", "frozen_features"),
        ("efficientnet_lite0", "imagenet", "lp_ft"),
    ]
    assert {(j.task, j.examples_per_class, j.seed) for j in jobs} == {
        ("animal_mnist", demo.QUICK_SIZE, demo.QUICK_SEED)}
    scratch, frozen, lp_ft = jobs
    assert scratch.input_size == 32 and frozen.input_size == lp_ft.input_size == demo.QUICK_INPUT_SIZE
    # lp_ft's caps come from the module constants (what the lead tunes); the other two keep the budget rules
    assert (lp_ft.epochs, lp_ft.fine_tune_epochs) == (demo.QUICK_HEAD_EPOCHS, demo.QUICK_FINE_TUNE_EPOCHS)
    assert (lp_ft.min_steps, lp_ft.early_stopping) == (demo.QUICK_LP_FT_MIN_STEPS, demo.BUDGET["early_stopping"])
    assert {(j.min_steps, j.early_stopping) for j in (scratch, frozen)} == {tuple(demo.BUDGET.values())}
    # the same head phase as the strategies demo's lp_ft, so the quick demo answers the same question
    full = next(j for j in demo_jobs(load_registry()) if j.strategy == "lp_ft")
    assert (lp_ft.learning_rate, lp_ft.fine_tune_learning_rate) == (full.learning_rate, full.fine_tune_learning_rate)


def test_quick_demos_scratch_and_frozen_runs_are_the_full_demos_own():
    registry = load_registry()
    full = {j.job_id for j in demo_jobs(registry)}
    shared = {j.strategy for j in demo_jobs(registry, which="quick") if j.job_id in full}
    assert shared == {"scratch", "frozen_features"}  # the full demo afterwards reuses them; lp_ft has smaller caps


def test_quick_demo_is_offered_first_and_takes_sizes_and_seeds():
    from transferlab.demo import DEMOS

    assert list(DEMOS)[0] == "quick" and DEMOS["quick"].command == "transferlab demo --quick"
    jobs = demo_jobs(load_registry(), sizes=[5, 10], seeds=[0, 1], which="quick")
    assert len(jobs) == 3 * 2 * 2 and {j.examples_per_class for j in jobs} == {5, 10}


def _home(monkeypatch, read_only: bool):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    if read_only:
        monkeypatch.setenv("TRANSFERLAB_READ_ONLY", "1")
    else:
        monkeypatch.delenv("TRANSFERLAB_READ_ONLY", raising=False)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "views" / "home.py"),
                           default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def test_home_offers_the_quick_demo_first_on_an_empty_store(monkeypatch):
    from transferlab.demo import DEMOS

    at = _home(monkeypatch, read_only=False)
    buttons = [b for b in at.button if b.label.startswith("Run the ")]
    assert [b.label for b in buttons] == [f"Run the {name} demo" for name in DEMOS]
    assert buttons[0].label == "Run the quick demo" and buttons[0].proto.type == "primary"
    assert {b.proto.type for b in buttons[1:]} == {"secondary"}
    info = " ".join(i.value for i in at.info)
    assert f"`transferlab demo --quick` fills it with real runs in about {DEMOS['quick'].minutes} minutes" in info
    assert any("`transferlab demo --quick`" in m.value for m in at.markdown)


def test_read_only_home_names_the_quick_demo_without_a_button(monkeypatch):
    from transferlab.store import Store

    Store().engine.dispose()  # an empty store: a read-only dashboard never creates one
    at = _home(monkeypatch, read_only=True)
    assert not [b for b in at.button if b.label.startswith("Run the ")]
    info = " ".join(i.value for i in at.info)
    assert "`transferlab demo --quick`" in info and "button" not in info


@pytest.mark.slow
def test_quick_demo_end_to_end(capsys):
    import time

    from transferlab.cli import main
    from transferlab.store import Store

    start = time.perf_counter()
    assert main(["demo", "--quick"]) == 0
    seconds = time.perf_counter() - start
    out = capsys.readouterr().out
    assert out.startswith("transferlab demo --quick (quick): 3 runs") and "status: succeeded 3" in out
    runs = Store().runs_frame()
    assert len(runs) == 3 and set(runs["status"]) == {"succeeded"}
    assert set(runs["strategy"]) == {"scratch", "frozen_features", "lp_ft"} and runs["score"].between(0, 1).all()
    with capsys.disabled():  # the wall time, for whoever re-measures the demo's minutes
        print(f"\nquick demo: {seconds:.0f} s; runs: "
              + ", ".join(f"{s} {w:.0f} s" for s, w in zip(runs["strategy"], runs["wall_seconds"])))


@pytest.mark.slow
def test_reduced_demo_end_to_end(capsys):
    from transferlab.cli import main

    assert main(["demo", "--sizes", "5", "--seeds", "0,1", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "animal_mnist: test accuracy" in out
    assert "efficientnet_lite0 · imagenet · frozen_features" in out and "status: succeeded 10" in out
