"""Training to convergence: the still-improving rule, the step budget, early stopping that restores the best
weights (and survives a resume), no learning signal told from a freeze violation, and the grid's skip."""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from transferlab import BackboneSpec, hookimpl
from transferlab.convergence import CONVERGED, NO_LEARNING_SIGNAL, STILL_IMPROVING, still_improving, training_notes
from transferlab.errors import FreezeViolationError
from transferlab.jobs import make_job
from transferlab.runner import Runner, check_phase, phase_epochs, snapshot

FAST = dict(task="digits", backbone="tiny", examples_per_class=5, input_size=16, batch_size=16, fine_tune_layers=3)


@pytest.fixture(autouse=True)
def backup_every_epoch(monkeypatch):
    """Epochs of milliseconds: back up every one, so an interruption has a backup to resume from."""
    monkeypatch.setenv("TRANSFERLAB_BACKUP_SECONDS", "0")


class Interrupted(Exception):
    """Stands in for a crash after an epoch reached the store (and its backup)."""


def _logger(into: list, stop_at: int | None = None):
    def log(epoch, phase, metrics, seconds):
        into.append((epoch, phase, metrics))
        if epoch == stop_at:
            raise Interrupted()

    return log


# ------------------------------------------------------------------------------------------ the rule

@pytest.mark.parametrize("losses, expected", [
    ([2.0, 1.8, 1.62, 1.45, 1.31, 1.2, 1.1], True),              # falling to the end
    ([2.3, 1.9, 1.5, 1.52, 1.49, 1.51, 1.50, 1.48], False),        # last is best, but a noisy plateau
    ([1.0, 0.8, 0.7, 0.75, 0.8, 0.85], False),                     # best 3 epochs back (early stopping's shape)
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.65], True),                       # best in the last 2, slope clearly down
    ([0.5, 0.5, 0.5, 0.5, 0.5], False),                            # flat
    ([1.0, 0.9, 0.8, 0.7], None),                                  # too short to tell
    ([None, 1.0, float("nan"), 0.9, 0.8, 0.7], None),              # unknown values do not count
    ([1.0, None, 0.8, 0.6, float("nan"), 0.4, 0.2], True),
])
def test_still_improving_rule(losses, expected):
    assert still_improving(losses) is expected


def test_the_step_budget_raises_epochs_for_small_training_sets():
    assert phase_epochs(10, steps_per_epoch=2, min_steps=100) == (50, 50)
    assert phase_epochs(10, steps_per_epoch=32, min_steps=100) == (10, 4)  # a large set keeps its epochs
    assert phase_epochs(10, steps_per_epoch=3, min_steps=10) == (10, 4)  # ceil(10 / 3)
    assert phase_epochs(10, steps_per_epoch=2, min_steps=0) == (10, 0)


def test_a_floor_at_or_above_the_epochs_leaves_early_stopping_room_and_a_floor_below_changes_nothing():
    from transferlab.runner.budget import ROOM_PATIENCES

    # README's recipe at 5 per class (2 steps an epoch): the floor of 25 epochs passes the default 10
    assert phase_epochs(10, steps_per_epoch=2, min_steps=50, patience=5) == (25 + ROOM_PATIENCES * 5, 25)
    assert phase_epochs(25, steps_per_epoch=2, min_steps=50, patience=5) == (25 + ROOM_PATIENCES * 5, 25)
    assert phase_epochs(10, steps_per_epoch=2, min_steps=50, patience=0) == (25, 25)  # no watch: the floor
    # floors below the epochs keep them as the cap (the strategies demo's grids: 300, 50 and 30 epochs)
    for epochs in (300, 50, 30, 26):
        assert phase_epochs(epochs, steps_per_epoch=2, min_steps=50, patience=5) == (epochs, 25)
    from transferlab.cli import build_parser

    run = next(a for a in build_parser()._actions if a.dest == "command").choices["run"]
    help_text = next(a.help for a in run._actions if a.dest == "early_stopping")
    assert f"{ROOM_PATIENCES} x PATIENCE epochs past them" in help_text


def test_step_options_stay_out_of_old_job_ids_and_are_range_checked(registry):
    from transferlab.jobs import JobFieldError

    plain = make_job(registry, strategy="scratch", **FAST)
    assert "min_steps" not in plain.canonical() and "early_stopping" not in plain.canonical()
    budgeted = make_job(registry, strategy="scratch", min_steps=100, early_stopping=5, **FAST)
    assert budgeted.job_id != plain.job_id and budgeted.canonical()["min_steps"] == 100
    with pytest.raises(JobFieldError, match=r"early_stopping must be an integer >= 0"):
        make_job(registry, strategy="scratch", early_stopping=-1, **FAST)


def test_cli_step_flags_are_named_in_their_errors(capsys):
    from transferlab.cli import main

    assert main(["sweep", "--tasks", "digits", "--backbones", "small_cnn", "--strategies", "scratch",
                 "--min-steps", "-3", "--dry-run"]) == 2
    assert "--min-steps must be an integer >= 0" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ real runs

def test_min_steps_raises_the_epochs_of_a_small_training_set(registry):
    logged: list = []
    # 50 images in batches of 16: 4 steps an epoch, so 10 steps need 3 epochs
    result = Runner(registry, log_epoch=_logger(logged)).run(
        make_job(registry, strategy="scratch", epochs=1, min_steps=10, **FAST))
    (phase,) = result.phases
    assert (phase["epochs"], phase["epochs_run"], phase["optimizer_steps"]) == (3, 3, 12)
    assert [epoch for epoch, _, _ in logged] == [1, 2, 3] and not phase["early_stopped"]


def test_too_few_steps_is_still_improving_and_early_stopping_converges(registry, store):
    from transferlab.executor import run_jobs

    short = make_job(registry, strategy="frozen_features", epochs=6, learning_rate=1e-3, **FAST)
    converged = make_job(registry, strategy="frozen_features", epochs=300, learning_rate=3e-2, early_stopping=3,
                         **FAST)
    assert run_jobs([short, converged], store, workers=0, registry=registry) == {"succeeded": 2}
    runs = store.runs_frame().set_index("run_id")
    assert runs.loc[short.job_id, "still_improving"] is True  # the loss fell every epoch to the last
    assert runs.loc[converged.job_id, "still_improving"] is False
    phase = json.loads(runs.loc[converged.job_id, "phases_json"])[-1]
    assert phase["early_stopped"] and phase["epochs_run"] < 300 and phase["still_improving"] is False
    notes = training_notes(runs)
    assert notes[short.job_id] == STILL_IMPROVING and notes[converged.job_id] == CONVERGED


def test_early_stopping_ends_the_phase_and_restores_the_best_weights(registry, monkeypatch):
    final_val_losses = []
    original = Runner._fit_phase

    def evaluating(self, model, phase_name, train_ds, val_ds, *args, **kwargs):
        seconds = original(self, model, phase_name, train_ds, val_ds, *args, **kwargs)
        final_val_losses.append(model.evaluate(val_ds, verbose=0, return_dict=True)["loss"])
        return seconds

    monkeypatch.setattr(Runner, "_fit_phase", evaluating)
    logged: list = []
    patience = 2
    job = make_job(registry, strategy="scratch", epochs=30, learning_rate=0.3, early_stopping=patience, **FAST)
    (phase,) = Runner(registry, log_epoch=_logger(logged)).run(job).phases
    losses = [metrics["val_loss"] for _, _, metrics in logged]
    best = int(np.argmin(losses))
    assert phase["early_stopped"] and phase["epochs_run"] == len(losses) == best + 1 + patience < 30
    assert phase["best_epoch"] == best + 1 and phase["restored_best"]
    assert phase["optimizer_steps"] == 4 * phase["epochs_run"]
    assert final_val_losses == [pytest.approx(losses[best], rel=1e-5)]  # the best epoch's weights, not the last's
    assert phase["still_improving"] is False


def test_early_stopping_still_acts_when_the_step_floor_passes_the_epochs(registry):
    from transferlab.runner.budget import ROOM_PATIENCES

    logged: list = []
    # 4 steps an epoch: 8 steps are a 2-epoch floor, above epochs=1; before, the budget was the floor itself
    job = make_job(registry, strategy="scratch", epochs=1, min_steps=8, learning_rate=0.3, early_stopping=1, **FAST)
    (phase,) = Runner(registry, log_epoch=_logger(logged)).run(job).phases
    assert phase["epochs"] == 2 + ROOM_PATIENCES * 1
    assert phase["early_stopped"] and 2 < phase["epochs_run"] == len(logged) < phase["epochs"]
    assert phase["restored_best"]


def test_a_phase_stopped_early_is_not_still_improving_even_when_its_losses_say_so():
    from types import SimpleNamespace

    from transferlab.runner.runner import phase_outcome

    losses = [1.0, 0.9, 0.8, 0.7, 0.6, 0.65]  # patience 1: the best is one epoch back, the slope still falls
    assert still_improving(losses) is True
    stopped = SimpleNamespace(stopped=True, stopped_epoch=5, best_epoch_index=4, losses=losses)
    outcome = phase_outcome(stopped, 0, 30, 2)
    assert outcome["early_stopped"] and outcome["epochs_run"] == 6 and outcome["still_improving"] is False
    ran_out = SimpleNamespace(stopped=False, stopped_epoch=0, best_epoch_index=None, losses=losses)
    assert phase_outcome(ran_out, 0, 6, 2)["still_improving"] is True  # the cap ended it: the rule decides


def test_the_gradient_probe_leaves_batchnorm_statistics_and_rng_state_as_they_were():
    import keras
    import tensorflow as tf

    from transferlab.runner.freezing import max_gradients

    inputs = keras.Input(shape=(4, 4, 1))
    x = keras.layers.RandomFlip(seed=1, name="flip")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, name="d1")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dropout(0.5, seed=2, name="drop")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="d2")(x))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices((rng.normal(size=(8, 4, 4, 1)).astype("float32"),
                                               np.arange(8) % 2)).batch(4)
    before = {v.path: np.array(v.numpy(), copy=True) for v in model.variables}
    assert any("seed_generator" in path for path in before) and any("moving_mean" in path for path in before)
    peaks = max_gradients(model, data, {model.get_layer("d1").kernel.path})
    assert peaks[model.get_layer("d1").kernel.path] > 0
    for v in model.variables:
        np.testing.assert_array_equal(v.numpy(), before[v.path], err_msg=v.path)


def test_a_phase_stopped_early_before_a_crash_resumes_stopped_with_its_best_weights(registry):
    job = make_job(registry, strategy="scratch", epochs=30, learning_rate=0.3, early_stopping=2, **FAST)
    whole = Runner(registry).run(job)
    stopped_at = whole.phases[0]["epochs_run"]
    first: list = []
    with pytest.raises(Interrupted):  # killed after the epoch that decided to stop was backed up
        Runner(registry, log_epoch=_logger(first, stop_at=stopped_at)).run(job)
    second: list = []
    resumed = Runner(registry, log_epoch=_logger(second)).run(job)
    assert second == []  # nothing left to train: only the best weights to put back
    for key in ("epochs_run", "best_epoch", "early_stopped", "optimizer_steps"):
        assert resumed.phases[0][key] == whole.phases[0][key], key
    assert resumed.score == whole.score and resumed.test_loss == pytest.approx(whole.test_loss, rel=1e-6)


def test_the_phase_after_an_early_stop_starts_where_it_stopped_also_after_a_resume(registry):
    job = make_job(registry, strategy="lp_ft", epochs=30, learning_rate=0.3, early_stopping=2, fine_tune_epochs=2,
                   fine_tune_learning_rate=1e-3, **FAST)
    first: list = []

    def crash_in_fine_tune(epoch, phase, metrics, seconds):
        first.append((epoch, phase))
        if phase == "fine_tune":
            raise Interrupted()

    with pytest.raises(Interrupted):
        Runner(registry, log_epoch=crash_in_fine_tune).run(job)
    stopped = len(first) - 1  # the head's epochs
    assert 1 < stopped < 30 and first == [(e, "head") for e in range(1, stopped + 1)] + [(stopped + 1, "fine_tune")]
    again: list = []
    head, fine_tune = Runner(registry, log_epoch=_logger(again)).run(job).phases
    assert [(e, p) for e, p, _ in again] == [(stopped + 2, "fine_tune")]  # after the backed-up first one
    assert head.get("resumed") and head["early_stopped"] and head["epochs_run"] == stopped
    assert fine_tune["epochs_run"] == 2 and not fine_tune["early_stopped"]


# ------------------------------------------------------------------------------------------ no learning signal

def build_saturating(input_shape, weights=None):
    """A BatchNorm base whose first layer's outputs sit far above ReLU6's ceiling: with BatchNorm in inference
    mode on untrained statistics (mean 0, variance 1) nothing normalises them, so no gradient reaches it;
    scratch (BatchNorm training) normalises them and it trains."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(4, 3, strides=2, padding="same", bias_initializer=keras.initializers.Constant(100.0),
                      name="sat_conv1")(inputs)
    x = layers.BatchNormalization(name="sat_bn1")(x)
    x = layers.ReLU(max_value=6.0, name="sat_relu1")(x)
    x = layers.Conv2D(8, 3, padding="same", name="sat_conv2")(x)
    x = layers.GlobalAveragePooling2D(name="sat_pool")(x)
    return keras.Model(inputs, x, name="saturating")


class SaturatingPlugin:
    @staticmethod
    @hookimpl
    def register_backbones():
        return [BackboneSpec(name="saturating", build=build_saturating, preprocess=lambda x: x / 255.0,
                             preprocessing="unit", min_input_size=8, default_input_size=16)]


@pytest.fixture
def bn_registry():
    import support_plugins

    from transferlab.registry import load_registry

    return load_registry(extra_plugins=[("tests.tiny", support_plugins.TinyPlugin), ("tests.sat", SaturatingPlugin)])


def test_lp_ft_from_random_init_records_no_learning_signal_instead_of_failing(bn_registry, store):
    from transferlab.executor import run_jobs

    job = make_job(bn_registry, strategy="lp_ft", epochs=1, fine_tune_epochs=1, fine_tune_learning_rate=1e-3,
                   **dict(FAST, backbone="saturating"))
    assert run_jobs([job], store, workers=0, registry=bn_registry) == {"succeeded": 1}
    run = store.runs_frame().iloc[0]
    head, fine_tune = json.loads(run["phases_json"])
    assert "no_learning_signal" not in head and head["verified"]
    assert fine_tune["no_learning_signal"] is True and fine_tune["no_learning_signal_layers"] == ["sat_conv1"]
    assert fine_tune["changed_params"] > head["changed_params"]  # the layer above it still trained
    assert NO_LEARNING_SIGNAL + " (fine_tune)" in training_notes(store.runs_frame()).iloc[0]
    # scratch trains BatchNorm, which normalises the saturated outputs: the same layer learns
    scratch = Runner(bn_registry).run(make_job(bn_registry, strategy="scratch", epochs=1,
                                               **dict(FAST, backbone="saturating")))
    assert "no_learning_signal" not in scratch.phases[0]


def test_a_weight_meant_to_train_that_received_a_gradient_and_stayed_still_is_a_violation():
    import keras

    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    before = snapshot(model)
    expected = {v.path for v in model.trainable_weights}
    with pytest.raises(FreezeViolationError, match=r"did not change in layers \['d'\] although their gradients "
                                                   r"reached 0.5"):
        check_phase(model, before, expected, "p", gradients=lambda paths: dict.fromkeys(paths, 0.5))
    with pytest.raises(FreezeViolationError, match="did not change"):  # nothing measured: as strict as before
        check_phase(model, before, expected, "p")
    silent = check_phase(model, before, expected, "p", gradients=lambda paths: dict.fromkeys(paths, 0.0))
    assert silent.no_signal_layers == ("d",) and silent.changed_params == 0
    model.get_layer("d").kernel.assign(np.ones((3, 2)))  # a frozen weight changed: a violation, gradient or not
    with pytest.raises(FreezeViolationError, match=r"frozen weights changed in layers \['d'\]"):
        check_phase(model, before, {model.get_layer("d").bias.path}, "p",
                    gradients=lambda paths: dict.fromkeys(paths, 0.0))


def test_grids_skip_fine_tuning_from_random_init_and_say_why(bn_registry):
    from transferlab.sweeps import expand_plan, plan_sweep

    grid = dict(tasks=["digits"], backbones=["saturating", "efficientnet_lite0"], weights=["none", "imagenet"],
                strategies=["scratch", "frozen_features", "lp_ft", "full_fine_tune"], seeds=[0])
    options = dict(input_size=32, epochs=1)
    for skip in ("weights", "unfit"):
        plan = plan_sweep(bn_registry, grid, options, skip=skip)
        text = plan.describe()
        assert "lp_ft, full_fine_tune from random init (weights 'none')" in text
        assert "scratch is the random-init baseline" in text
        # the skip reads the strategy only: it says it does not look at the backbone, and what to do instead
        assert "with BatchNorm or not" in text and "`transferlab run` one by name" in text
        kept = {(j.backbone, j.weights, j.strategy) for j in expand_plan(bn_registry, plan)}
        assert not {(b, "none", s) for b in grid["backbones"] for s in ("lp_ft", "full_fine_tune")} & kept
        assert ("efficientnet_lite0", "imagenet", "lp_ft") in kept
        assert ("saturating", "none", "frozen_features") in kept  # random features stay: nothing trains the base
    # a job asked for as such still runs (and records no_learning_signal when it has none)
    alone = plan_sweep(bn_registry, dict(grid, backbones=["saturating"], weights=["none"], strategies=["lp_ft"]))
    assert alone.jobs == 1 and "random init" not in alone.describe()


# ------------------------------------------------------------------------------------------ the store

def test_an_older_store_without_the_column_opens_and_reads_unknown(tmp_path):
    import contextlib

    from transferlab.store import Store

    path = tmp_path / "before.db"
    url = f"sqlite:///{path}"
    Store(url).engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("ALTER TABLE runs DROP COLUMN still_improving")
        db.execute("INSERT INTO runs (run_id, spec_json, kind, task, backbone, weights, strategy, seed, depends_on, "
                   "status, created_at) VALUES ('r1', '{}', 'train', 'digits', 'tiny', 'none', 'scratch', 0, '[]', "
                   "'succeeded', 1.0)")
    read_only = Store(url, read_only=True).runs_frame()
    assert read_only.loc[0, "still_improving"] is None
    store = Store(url)
    with sqlite3.connect(path) as db:
        assert "still_improving" in {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert store.runs_frame().loc[0, "still_improving"] is None
    assert training_notes(store.runs_frame()).tolist() == [""]


def test_run_tables_mark_runs_still_improving_and_without_learning_signal():
    import pandas as pd

    from transferlab.dashboard.tables import TRAINING_HELP, with_training_notes

    runs = pd.DataFrame(dict(run_id=["a", "b", "c", "d"], still_improving=[True, False, None, float("nan")],
                             phases_json=[None, json.dumps([{"phase": "head"}, {"phase": "fine_tune",
                                                                                "no_learning_signal": True}]),
                                          "not json", json.dumps([{"phase": "train"}])]))
    table, config = with_training_notes(runs[["run_id"]], runs)
    assert list(table.columns) == ["run_id", "training"]
    assert table["training"].tolist() == [STILL_IMPROVING, f"{CONVERGED}; {NO_LEARNING_SIGNAL} (fine_tune)", "", ""]
    assert config["training"]["help"] == TRAINING_HELP
