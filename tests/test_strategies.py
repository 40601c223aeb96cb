"""Strategies as data: phase fields, unit selection, per-unit learning rates (exact for Adam), and the new
built-in strategies run end to end with their freeze check after every phase."""
from __future__ import annotations

import numpy as np
import pytest

from transferlab import PhaseSpec, StrategySpec
from transferlab.errors import SpecError
from transferlab.jobs import make_job
from transferlab.runner import Runner, freeze_for_phase, make_optimizer, unit_lr_scales
from transferlab.runner.freezing import select_units

FAST = dict(task="digits", backbone="tiny", examples_per_class=5, input_size=16, epochs=1, fine_tune_epochs=1,
            batch_size=16, fine_tune_layers=3, learning_rate=1e-3, fine_tune_learning_rate=1e-4)
HEAD = 8 * 10 + 10          # Dense(10) on the tiny backbone's 8 features
CONV2 = 3 * 3 * 4 * 8 + 8   # tiny_conv2 (the top unit with weights)
CONV1 = 3 * 3 * 3 * 4       # tiny_conv1 (no bias)


@pytest.mark.parametrize("kwargs, message", [
    (dict(train="some"), r"train must be one of \('head', 'top', 'all'\), an int >= 1"),
    (dict(train=0), r"Received: train=0"),
    (dict(train=True), r"Received: train=True"),
    (dict(epochs="fine_tune_layers"), r"epochs must be an int >= 1 or one of the job fields"),
    (dict(epochs=0), r"Received: epochs=0"),
    (dict(learning_rate="batch_size"), r"learning_rate must be a positive number or one of the job fields"),
    (dict(learning_rate=-1.0), r"Received: learning_rate=-1.0"),
    (dict(lr_scale=0), r"lr_scale must be a positive number"),
    (dict(lr_decay=1.5), r"lr_decay must be in \(0, 1\]. Received: lr_decay=1.5"),
    (dict(batchnorm="frozen"), r"batchnorm must be None \(the strategy's\), 'inference' or 'train'"),
    (dict(optimizer="lamb"), r"optimizer must be one of \('adam', 'adamw', 'sgd'\). Received: optimizer='lamb'"),
    (dict(weight_decay=0.01), r"weight_decay is a positive number, for optimizer='adamw' only"),
])
def test_phase_fields_are_validated_with_the_received_value(kwargs, message):
    with pytest.raises(SpecError, match=message):
        PhaseSpec("p", **kwargs)


def test_phase_epochs_and_learning_rate_come_from_numbers_or_job_fields(registry):
    job = make_job(registry, strategy="lp_ft", **FAST)
    assert PhaseSpec("p", epochs="fine_tune_epochs").resolved_epochs(job) == job.fine_tune_epochs
    assert PhaseSpec("p", epochs=7).resolved_epochs(job) == 7
    assert PhaseSpec("p", learning_rate="learning_rate", lr_scale=0.1).resolved_learning_rate(job) == pytest.approx(1e-4)
    assert PhaseSpec("p", learning_rate=0.5, lr_scale=2).resolved_learning_rate(job) == 1.0


def test_cached_features_refuses_a_phase_that_trains_the_base():
    with pytest.raises(SpecError, match="cached_features takes one phase that trains the head alone"):
        StrategySpec(name="s", description="", phases=(PhaseSpec("p", train=2),), cached_features=True)


def _tiny_base():
    import support_plugins

    return support_plugins.build_tiny((16, 16, 3))


def test_units_selected_by_keyword_count_and_callable():
    base = _tiny_base()
    units = list(base.layers)
    names = lambda chosen: [u.name for u in chosen]  # noqa: E731
    assert select_units(PhaseSpec("p", train="head"), units, 3) == []
    assert names(select_units(PhaseSpec("p", train="top"), units, 3)) == ["tiny_conv2", "tiny_relu2", "tiny_pool"]
    # an int counts units with weights only: ReLU and pooling layers take no place
    assert names(select_units(PhaseSpec("p", train=1), units, 3)) == ["tiny_conv2"]
    assert names(select_units(PhaseSpec("p", train=2), units, 3)) == ["tiny_bn1", "tiny_conv2"]
    convs = lambda us: [u for u in us if u.name.endswith("conv1")]  # noqa: E731
    assert names(select_units(PhaseSpec("p", train=convs), units, 3)) == ["tiny_conv1"]
    with pytest.raises(SpecError, match="not one of the base's units"):
        select_units(PhaseSpec("p", train=lambda us: [object()]), units, 3)


def test_freeze_keeps_batchnorm_frozen_in_inference_mode_and_trains_it_when_asked():
    base = _tiny_base()
    freeze_for_phase(base, PhaseSpec("p", train="all"), 3, "inference")
    assert not base.get_layer("tiny_bn1").trainable and base.get_layer("tiny_conv1").trainable
    freeze_for_phase(base, PhaseSpec("p", train="all"), 3, "train")
    assert base.get_layer("tiny_bn1").trainable
    freeze_for_phase(base, PhaseSpec("p", train="head"), 3, "train")
    assert not base.trainable_weights


def test_layer_wise_decay_gives_each_unit_decay_times_the_one_above():
    base = _tiny_base()
    units = freeze_for_phase(base, PhaseSpec("p", train="all"), 3, "inference")
    scales = unit_lr_scales(units, 0.5)
    # BatchNorm is frozen, so it takes no step: conv2 is the top (1), conv1 the next (0.5)
    assert scales == {"tiny_conv2/kernel": 1.0, "tiny_conv2/bias": 1.0, "tiny_conv1/kernel": 0.5}
    assert unit_lr_scales(units, 1.0) == {}


def _two_group_problem():
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(5,))
    low = keras.layers.Dense(4, name="low")(inputs)
    top = keras.layers.Dense(3, name="top")(low)
    model = keras.Model(inputs, top)
    x = np.random.default_rng(0).normal(size=(32, 5)).astype("float32")
    y = np.random.default_rng(1).normal(size=(32, 3)).astype("float32")
    return model, x, y


def _grads(model, x, y):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((model(x) - y) ** 2)
    return tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("name, extra", [("adam", {}), ("adamw", {"weight_decay": 0.1}), ("sgd", {})])
def test_per_unit_rates_equal_one_optimizer_per_group(name, extra):
    """Each group's step is exactly the step of its own optimizer at the scaled rate, over several steps
    (Adam's moments included), where scaling the gradient would give Adam the same step for every group."""
    import keras

    lr, scale = 0.01, 0.25
    model, x, y = _two_group_problem()
    reference, _, _ = _two_group_problem()
    scales = {v.path: scale for v in model.get_layer("low").trainable_weights}
    grouped = make_optimizer(name, lr, scales, extra.get("weight_decay"))
    cls = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD}[name]
    low_opt, top_opt = cls(learning_rate=lr * scale, **extra), cls(learning_rate=lr, **extra)
    low_vars = reference.get_layer("low").trainable_variables
    top_vars = reference.get_layer("top").trainable_variables
    start = [v.numpy().copy() for v in model.trainable_variables]
    for _ in range(4):
        grouped.apply(_grads(model, x, y), model.trainable_variables)
        grads = _grads(reference, x, y)
        low_opt.apply(grads[:2], low_vars)
        top_opt.apply(grads[2:], top_vars)
    for got, want in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-7)
    steps = [np.abs(v.numpy() - s).mean() for v, s in zip(model.trainable_variables, start)]
    assert steps[0] < steps[2]  # the low group really moved less than the top one


def test_unscaled_optimizer_is_the_stock_keras_class():
    import keras

    assert type(make_optimizer("adam", 1e-3, {"a/kernel": 1.0})) is keras.optimizers.Adam
    assert type(make_optimizer("adam", 1e-3, {"a/kernel": 0.5})) is not keras.optimizers.Adam


def test_discriminative_lr_decays_the_rate_down_the_base(registry):
    job = make_job(registry, strategy="discriminative_lr", **FAST)
    result = Runner(registry).run(job)
    head, fine = result.phases
    decay = registry.strategy("discriminative_lr").phases[1].lr_decay
    assert head["train"] == "head" and head["learning_rate"] == pytest.approx(1e-3)
    assert fine["learning_rate"] == pytest.approx(1e-4)
    # two conv units train (BatchNorm stays frozen): the lower one at decay x the top one's rate
    assert fine["min_learning_rate"] == pytest.approx(1e-4 * decay)
    assert fine["lr_decay"] == decay and fine["verified"]
    assert fine["trainable_params"] == HEAD + CONV2 + CONV1


def test_gradual_unfreeze_adds_one_unit_per_phase_and_verifies_each(registry):
    job = make_job(registry, strategy="gradual_unfreeze", **FAST)
    result = Runner(registry).run(job)
    trainable = [p["trainable_params"] for p in result.phases]
    # head, top 1 (conv2), top 2 (conv2 + the frozen-in-inference BatchNorm: nothing more trains),
    # top 3 (conv1 joins), then all
    assert trainable == [HEAD, HEAD + CONV2, HEAD + CONV2, HEAD + CONV2 + CONV1, HEAD + CONV2 + CONV1]
    assert [p["units_trained"] for p in result.phases] == [0, 1, 2, 3, 7]
    assert all(p["verified"] and p["batchnorm"] == "inference" for p in result.phases)
    assert [p["epochs"] for p in result.phases] == [1, 1, 1, 1, 1]


def test_a_phase_may_train_batchnorm_in_an_inference_strategy(registry):
    """batchnorm on a phase overrides the strategy's: its statistics move and the freeze check expects it."""
    from transferlab.registry import load_registry

    import support_plugins
    from transferlab import hookimpl

    class BatchNormPhase:
        @staticmethod
        @hookimpl
        def register_strategies():
            return [StrategySpec(name="head_then_all_bn", description="x", phases=(
                PhaseSpec("head"), PhaseSpec("all_bn", train="all", batchnorm="train")))]

    reg = load_registry(extra_plugins=[("tests.tiny", support_plugins.TinyPlugin), ("tests.bn", BatchNormPhase)])
    result = Runner(reg).run(make_job(reg, strategy="head_then_all_bn", **FAST))
    head, all_bn = result.phases
    bn_gamma_beta, bn_stats = 2 * 4, 2 * 4
    assert all_bn["batchnorm"] == "train" and all_bn["verified"]
    assert all_bn["trainable_params"] == HEAD + CONV2 + CONV1 + bn_gamma_beta
    assert all_bn["changed_params"] == all_bn["trainable_params"] + bn_stats


def test_manifest_versions_come_from_the_registry_and_the_specs(registry):
    """Core keeps no list of plugin packages: a run records the frameworks, the plugins' versions from the
    registry, and the distributions its backbone, task and weight source declare."""
    import support_plugins
    from transferlab import BackboneSpec, __version__, hookimpl
    from transferlab.registry import load_registry

    class Declaring:
        @staticmethod
        @hookimpl
        def register_backbones():
            return [BackboneSpec(name="tiny_declared", build=support_plugins.build_tiny, preprocess=lambda x: x / 255.0,
                                 preprocessing="unit", min_input_size=8, default_input_size=16,
                                 distributions=("pluggy",))]

    reg = load_registry(extra_plugins=[("tests.tiny", support_plugins.TinyPlugin), ("tests.declaring", Declaring)])
    manifest = Runner(reg).run(make_job(reg, strategy="feature_extraction",
                                        **dict(FAST, backbone="tiny_declared"))).manifest
    assert {"transferlab", "tensorflow", "keras", "pluggy"} <= set(manifest["packages"])
    assert "animal-mnist" not in manifest["packages"]  # nothing this run did not use
    assert manifest["plugins"]["backbone"] == "tests.declaring"
    assert manifest["plugin_versions"]["transferlab.plugins.image_tasks"] == __version__
