"""Head phases on cached features and the head cache: the same head as end to end, trained once per identical
prefix, and never reused when any part of its key changes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from transferlab.jobs import make_job
from transferlab.runner import Runner
from transferlab.runner import shared_head
from transferlab.runner.shared_head import head_variables

FAST = dict(task="digits", backbone="tiny", examples_per_class=5, input_size=16, epochs=3, fine_tune_epochs=1,
            batch_size=16, fine_tune_layers=3)


def _head_after(registry, strategy_name, monkeypatch, reuse, **fields):
    """The run, and its head's weights as phase 0 left them (captured when phase 0's checkpoint is saved)."""
    from transferlab.runner import runner as runner_module

    monkeypatch.setenv("TRANSFERLAB_REUSE", "on" if reuse else "off")
    job = make_job(registry, strategy=strategy_name, **{**FAST, **fields})
    captured = {}
    original = runner_module.Checkpoints.save
    base_of = {}
    build = Runner.build_base

    def remember_base(self, backbone, job):
        base, sha = build(self, backbone, job)
        base_of["base"] = base
        return base, sha

    def save(self, model, index, record):
        if index == 0:
            captured["head"] = [v.numpy() for v in head_variables(model, base_of["base"])]
        return original(self, model, index, record)

    monkeypatch.setattr(runner_module.Checkpoints, "save", save)
    monkeypatch.setattr(Runner, "build_base", remember_base)
    result = Runner(registry).run(job)
    monkeypatch.setattr(runner_module.Checkpoints, "save", original)
    monkeypatch.setattr(Runner, "build_base", build)
    return result, captured["head"]


@pytest.mark.parametrize("strategy", ["feature_extraction", "lp_ft"])
def test_head_on_features_equals_end_to_end_head(registry, monkeypatch, strategy):
    e2e, head_e2e = _head_after(registry, strategy, monkeypatch, reuse=False)
    feat, head_feat = _head_after(registry, strategy, monkeypatch, reuse=True)
    assert not e2e.phases[0].get("on_features")
    assert feat.phases[0]["on_features"] is True and feat.phases[0]["reused"] is False
    assert len(head_e2e) == len(head_feat)
    for a, b in zip(head_e2e, head_feat):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # the records agree on everything the head phase did
    for field in ("epochs_run", "optimizer_steps", "trainable_params", "frozen_params", "changed_params"):
        assert e2e.phases[0][field] == feat.phases[0][field], field
    assert feat.score == pytest.approx(e2e.score, abs=0.02)


def test_identical_prefix_trains_once_and_later_runs_reuse_it(registry, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_REUSE", "on")
    logged = []
    runner = Runner(registry, log_epoch=lambda e, p, m, s: logged.append((e, p, s)))
    first = runner.run(make_job(registry, strategy="lp_ft", **FAST))
    assert first.phases[0]["reused"] is False
    stages = first.manifest["stage_seconds"]  # where the time went, for the fixed-cost benchmark
    assert {"load_data", "build", "features", "fit:head", "fit:fine_tune", "test"} <= set(stages)
    outer = {k: v for k, v in stages.items() if not k.startswith("steps:")}  # steps lie inside their fit
    assert all(v >= 0 for v in stages.values()) and sum(outer.values()) <= first.wall_seconds + 0.05
    assert 0 < stages["steps:fine_tune"] <= stages["fit:fine_tune"]
    logged.clear()
    # what comes after the shared phase may differ: its fine-tuning rate is not part of the head's key
    second = runner.run(make_job(registry, strategy="discriminative_lr", **{**FAST, "fine_tune_learning_rate": 3e-4}))
    head = second.phases[0]
    assert head["reused"] is True and head["reused_from"] == make_job(registry, strategy="lp_ft", **FAST).job_id
    assert head["head_key"] == first.phases[0]["head_key"]
    assert head["epochs_run"] == first.phases[0]["epochs_run"] and head["verified"]
    # the reused epochs still reach the learning curve, at no cost to this run
    reused_epochs = [(e, s) for e, p, s in logged if p == "head"]
    assert [e for e, _ in reused_epochs] == [1, 2, 3] and all(s == 0.0 for _, s in reused_epochs)
    # the later phase trains on from the same head: the base trains and is checked as always
    assert second.phases[1]["verified"] and second.phases[1]["changed_params"] > 0


CHANGES = [dict(seed=1), dict(learning_rate=3e-3), dict(epochs=2), dict(examples_per_class=6), dict(batch_size=8),
           dict(input_size=20), dict(class_weight="balanced"), dict(shuffled_labels=True), dict(min_steps=64),
           dict(early_stopping=2)]


def _assert_changes_train_again(registry, changes):
    runner = Runner(registry)
    base = runner.run(make_job(registry, strategy="feature_extraction", **FAST))
    again = runner.run(make_job(registry, strategy="feature_extraction", **FAST))
    assert again.phases[0]["reused"] is True  # the control: nothing changed, so it is reused
    for change in changes:
        other = runner.run(make_job(registry, strategy="feature_extraction", **{**FAST, **change}))
        assert other.phases[0]["reused"] is False, change
        assert other.phases[0]["head_key"] != base.phases[0]["head_key"], change


def test_a_changed_key_part_trains_the_head_again(registry, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_REUSE", "on")
    _assert_changes_train_again(registry, [CHANGES[0], CHANGES[1], CHANGES[3], CHANGES[7]])


@pytest.mark.slow
def test_every_key_part_that_changes_trains_the_head_again(registry, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_REUSE", "on")
    _assert_changes_train_again(registry, CHANGES)


def test_changed_data_is_a_new_key(registry, monkeypatch):
    from transferlab.data import TaskData
    from transferlab.features import feature_key

    data = TaskData(images=np.zeros((4, 2, 2, 1), np.uint8), labels=np.array([0, 1, 0, 1]), class_names=["a", "b"],
                    provenance={"data_version": "aaaa"})
    moved = dataclasses.replace(data, provenance={"data_version": "bbbb"})
    keys = {feature_key("tiny", "none", None, "t", d, np.arange(4), 16, "x") for d in (data, moved)}
    assert len(keys) == 2  # the head key is built on these, so a new data version never reuses a head


def test_altered_cache_entry_is_trained_again_not_loaded(registry, monkeypatch, tl_home):
    monkeypatch.setenv("TRANSFERLAB_REUSE", "on")
    runner = Runner(registry)
    first = runner.run(make_job(registry, strategy="lp_ft", **FAST))
    weights, _ = shared_head._files(first.phases[0]["head_key"])
    raw = bytearray(weights.path.read_bytes())
    raw[-20] ^= 0xFF
    weights.path.write_bytes(bytes(raw))
    again = runner.run(make_job(registry, strategy="gradual_unfreeze", **FAST))
    assert again.phases[0]["reused"] is False
    # and the retrained entry is whole again
    assert shared_head.load_head(first.phases[0]["head_key"]) is not None


def test_switch_off_trains_end_to_end_and_files_nothing(registry, monkeypatch, tl_home):
    monkeypatch.setenv("TRANSFERLAB_REUSE", "off")
    result = Runner(registry).run(make_job(registry, strategy="lp_ft", **FAST))
    assert "on_features" not in result.phases[0]
    from transferlab.paths import cache_dir

    assert not list(cache_dir("heads").glob("*.npz"))


def test_augmented_or_batchnorm_training_phases_stay_end_to_end(registry, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_REUSE", "on")
    augmented = Runner(registry).run(make_job(registry, strategy="lp_ft", augment=True, **FAST))
    assert not augmented.phases[0].get("on_features")
    scratch = Runner(registry).run(make_job(registry, strategy="scratch", **FAST))
    assert not scratch.phases[0].get("on_features")


def test_what_building_the_base_draws_does_not_change_the_head(registry, monkeypatch):
    # converting a checkpoint the first time draws random numbers, loading it later does not: the head must start
    # the same either way, or identical prefixes would never share
    import random

    monkeypatch.setenv("TRANSFERLAB_REUSE", "on")
    build = Runner.build_base
    calls = []

    def drawing_once(self, backbone, job):
        if not calls:
            random.random(), __import__("numpy").random.rand(3)
        calls.append(1)
        return build(self, backbone, job)

    monkeypatch.setattr(Runner, "build_base", drawing_once)
    first = Runner(registry).run(make_job(registry, strategy="lp_ft", **FAST))
    second = Runner(registry).run(make_job(registry, strategy="fine_tune_top_k", **FAST))
    assert second.phases[0]["reused"] is True and second.phases[0]["head_key"] == first.phases[0]["head_key"]
