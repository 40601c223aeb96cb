"""The runner: every strategy end to end on a tiny backbone, freeze verification, parameter counts."""
from __future__ import annotations

import numpy as np
import pytest

from transferlab.errors import FreezeViolationError, NaNLossError
from transferlab.jobs import make_job
from transferlab.runner import Runner

FAST = dict(task="digits", backbone="tiny", examples_per_class=5, input_size=16, epochs=1, fine_tune_epochs=1,
            batch_size=16, fine_tune_layers=3)


def _epochs_logged():
    logged = []
    return logged, lambda epoch, phase, metrics, seconds: logged.append((epoch, phase, metrics))


@pytest.mark.parametrize("strategy", ["scratch", "feature_extraction", "frozen_features", "fine_tune_top_k",
                                      "full_fine_tune", "lp_ft", "discriminative_lr", "gradual_unfreeze"])
def test_every_strategy_runs_and_verifies_its_freeze(registry, strategy):
    job = make_job(registry, strategy=strategy, **FAST)
    logged, log = _epochs_logged()
    result = Runner(registry, log_epoch=log).run(job)
    spec = registry.strategy(strategy)
    assert [p["phase"] for p in result.phases] == [p.name for p in spec.phases]
    assert all(p["verified"] for p in result.phases)
    assert 0.0 <= result.score <= 1.0 and np.isfinite(result.test_loss)
    assert len(result.confusion) == 10 and sum(map(sum, result.confusion)) == result.manifest["n_test"]
    assert [e for e, _, _ in logged] == list(range(1, len(spec.phases) + 1))
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "score", "val_score"} <= set(logged[0][2])
    head_params = 8 * 10 + 10  # Dense(10) on 8 features
    first = result.phases[0]
    if not spec.phases[0].trains_base:
        assert first["trainable_params"] == head_params
    else:
        assert first["trainable_params"] > head_params
    assert first["trainable_params"] + first["frozen_params"] == result.total_params
    # every trainable scalar lives in a weight that changed; scratch also moves BatchNorm statistics
    extra_bn_stats = 2 * 4 if spec.batchnorm == "train" else 0
    assert first["changed_params"] == first["trainable_params"] + extra_bn_stats
    assert result.manifest["subset_indices_sha"] and result.manifest["test_indices_sha"]


def test_top_k_unfreezes_only_the_top_layers_and_keeps_batchnorm_frozen(registry):
    job = make_job(registry, strategy="fine_tune_top_k", **FAST)
    result = Runner(registry).run(job)
    head = 8 * 10 + 10
    conv2 = 3 * 3 * 4 * 8 + 8  # tiny_conv2 is within the top 3 layers; tiny_conv1 and the BatchNorm are not
    assert result.phases[1]["trainable_params"] == head + conv2


def test_full_fine_tune_keeps_batchnorm_statistics(registry):
    job = make_job(registry, strategy="full_fine_tune", **FAST)
    result = Runner(registry).run(job)
    bn_params = 4 * 4  # gamma, beta, moving mean and variance of 4 channels: all frozen in inference mode
    assert result.phases[0]["frozen_params"] == bn_params


def test_broken_freeze_is_caught_and_names_the_layer(registry):
    job = make_job(registry, strategy="feature_extraction", **dict(FAST, backbone="leaky"))
    with pytest.raises(FreezeViolationError, match=r"frozen weights changed in layers \['leaky_counter'\]"):
        Runner(registry).run(job)


def test_nan_loss_raises(registry):
    job = make_job(registry, strategy="scratch", **dict(FAST, backbone="nan_net"))
    logged, log = _epochs_logged()
    with pytest.raises(NaNLossError, match="NaN"):
        Runner(registry, log_epoch=log).run(job)


def test_cached_features_are_reused_and_keyed_by_content(registry, tl_home):
    job = make_job(registry, strategy="frozen_features", **FAST)
    Runner(registry).run(job)
    folder = tl_home / "cache" / "features"
    files = sorted(folder.glob("*.npy"))
    assert len(files) == 3  # train, val, test
    stamps = {f: f.stat().st_mtime_ns for f in files}
    other_head = make_job(registry, strategy="frozen_features", learning_rate=3e-3, **FAST)
    Runner(registry).run(other_head)
    assert sorted(folder.glob("*.npy")) == files  # another head on the same features: all reused
    assert all(f.stat().st_mtime_ns == stamps[f] for f in files)
    other_seed = make_job(registry, strategy="frozen_features", seed=1, **FAST)
    Runner(registry).run(other_seed)
    assert len(sorted(folder.glob("*.npy"))) == 6  # a random-init base differs per seed: its own features
    bigger = make_job(registry, strategy="frozen_features", **dict(FAST, input_size=24))
    Runner(registry).run(bigger)
    assert len(sorted(folder.glob("*.npy"))) == 9  # a new input size: all new


def test_pretrained_features_are_shared_across_seeds(registry, tl_home):
    common = dict(task="lfw_faces", backbone="efficientnet_lite0", weights="imagenet", strategy="frozen_features",
                  examples_per_class=5, input_size=32, epochs=1)
    Runner(registry).run(make_job(registry, **common))
    Runner(registry).run(make_job(registry, seed=1, **common))
    # val and test are shared; only the second seed's training subset is new
    assert len(sorted((tl_home / "cache" / "features").glob("*.npy"))) == 4


def test_altered_feature_cache_is_recomputed(registry, tl_home, monkeypatch):
    from transferlab import features

    job = make_job(registry, strategy="frozen_features", **FAST)
    first = Runner(registry).run(job)
    files = sorted((tl_home / "cache" / "features").glob("*.npy"))
    assert len(files) == 3  # train, val, test
    fresh = [np.load(f) for f in files]
    for f, good in zip(files, fresh):  # still a loadable .npy of the right shape: only the hash tells
        np.save(f, good + 1000.0, allow_pickle=False)
    used = []
    original = features.cached_features

    def spy(*args, **kwargs):
        used.append(original(*args, **kwargs))
        return used[-1]

    monkeypatch.setattr(features, "cached_features", spy)
    again = Runner(registry).run(job)
    assert len(used) >= 3
    for matrix in used:  # what the head trained and was scored on: recomputed, not the altered content
        assert any(m.shape == matrix.shape and np.allclose(matrix, m) for m in fresh)
        assert not any(m.shape == matrix.shape and np.allclose(matrix, m + 1000.0) for m in fresh)
    for f, good in zip(files, fresh):  # rewritten, with a hash that checks out again
        reloaded = features.load_cached(f.stem)
        assert reloaded is not None and np.allclose(reloaded, good)
    assert again.score == pytest.approx(first.score)


def test_shuffled_labels_train_on_a_permutation_and_score_on_the_truth(registry, monkeypatch):
    from transferlab.heads import ClassificationHead

    seen = []  # (true labels at the indices, labels the runner turned into targets there), per call
    original = ClassificationHead.targets

    def spy(self, data, indices, labels, job):
        seen.append((np.asarray(data.labels[indices]), np.asarray(labels)))
        return original(self, data, indices, labels, job)

    monkeypatch.setattr(ClassificationHead, "targets", spy)

    def targets_of(shuffled):
        seen.clear()
        job = make_job(registry, strategy="scratch", class_weight="balanced", augment=True, shuffled_labels=shuffled,
                       **FAST)
        assert Runner(registry).run(job).phases[0]["verified"]
        return list(seen)

    honest = targets_of(False)
    assert len(honest) >= 3 and all(np.array_equal(truth, labels) for truth, labels in honest)
    shuffled = targets_of(True)
    moved = [(truth, labels) for truth, labels in shuffled if not np.array_equal(truth, labels)]
    assert len(shuffled) == len(honest)
    assert len(moved) == 1, "only the training labels are shuffled; validation and test are scored on the truth"
    truth, trained_on = moved[0]
    assert len(truth) == 5 * 10  # the training subset: 5 examples per class
    assert np.mean(truth != trained_on) > 0.5  # the labels no longer say what the images show ...
    assert np.bincount(trained_on, minlength=10).tolist() == np.bincount(truth, minlength=10).tolist()  # ... counts kept


def test_backbone_table_counts_match_what_runs_train(registry):
    from transferlab.cli import backbone_table

    (row,) = backbone_table(registry, ["tiny"], fine_tune_layers=3)
    head = 8 * 10 + 10
    conv1, bn, conv2 = 3 * 3 * 3 * 4, 4 * 4, 3 * 3 * 4 * 8 + 8
    assert row["total_params"] == head + conv1 + bn + conv2
    assert row["trainable:feature_extraction"] == row["trainable:frozen_features"] == head
    assert row["trainable:fine_tune_top_k"] == head + conv2
    assert row["trainable:lp_ft"] == row["trainable:full_fine_tune"] == head + conv1 + conv2  # BatchNorm frozen
    assert row["trainable:scratch"] == head + conv1 + 2 * 4 + conv2  # gamma and beta train; moving stats do not


def test_mixed_precision_and_xla_options_run_and_restore_the_policy(registry):
    import keras

    job = make_job(registry, strategy="feature_extraction", mixed_precision=True, xla=True, **FAST)
    result = Runner(registry).run(job)
    assert np.isfinite(result.test_loss) and result.phases[0]["verified"]
    assert keras.mixed_precision.global_policy().name == "float32"


def test_feature_scale_gives_unit_rms_whatever_the_base_scale():
    from transferlab.runner.assembly import feature_standardizer

    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 8)).astype("float32")
    for factor in (1e-12, 1.0, 1e6):
        layer = feature_standardizer(features * factor)
        out = np.asarray(layer(features * factor))
        assert np.sqrt(np.mean(out**2)) == pytest.approx(1.0, rel=1e-4)
        assert np.allclose(out, features / np.sqrt(np.mean(features.astype(np.float64) ** 2)), rtol=1e-4)
    assert np.asarray(feature_standardizer(np.zeros((4, 3)))(np.ones((1, 3), "float32"))).tolist() == [[1, 1, 1]]


def test_frozen_heads_do_not_depend_on_the_scale_of_the_features(registry, monkeypatch):
    """A base whose features are 1e-9 of another's gives the same frozen-feature result: the head trains on
    features scaled to unit RMS, so a random-init baseline measures features, not the optimiser's luck."""
    import transferlab.features as features_module

    job = make_job(registry, strategy="frozen_features", **dict(FAST, epochs=3))
    reference = Runner(registry).run(job)
    original = features_module.cached_features
    monkeypatch.setattr(features_module, "cached_features", lambda *a, **k: original(*a, **k) * 1e-9)
    tiny = Runner(registry).run(job)
    assert tiny.score == pytest.approx(reference.score, abs=1e-6)
    assert tiny.test_loss == pytest.approx(reference.test_loss, rel=1e-3)
    assert reference.phases[0]["features_scaled"] is True


@pytest.mark.parametrize("strategy, scaled", [("feature_extraction", True), ("lp_ft", False)])
def test_only_frozen_strategies_scale_features_inside_the_model(registry, strategy, scaled):
    result = Runner(registry).run(make_job(registry, strategy=strategy, **FAST))
    assert {p["features_scaled"] for p in result.phases} == {scaled}
