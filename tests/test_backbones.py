"""Backbones: every one builds at its minimum size, weight sources load or fail with a clear message."""
from __future__ import annotations

import numpy as np
import pytest

from transferlab.errors import WeightsError
from transferlab.jobs import make_job
from transferlab.registry import load_registry
from transferlab.runner import Runner

REG = load_registry()


@pytest.mark.parametrize("name", sorted(REG.backbones))
def test_every_backbone_builds_at_its_minimum_size(name):
    import keras

    spec = REG.backbones[name]
    size = spec.min_input_size
    if spec.modality == "text":
        model = spec.build((size,), None)
        tokens = {"token_ids": np.full((1, size), 7, np.int32), "padding_mask": np.ones((1, size), np.int32)}
        features = model(tokens, training=False)
    else:
        model = spec.build((size, size, 3), None)
        x = np.full((1, size, size, 3), 128.0, np.float32)
        features = model(np.asarray(spec.preprocess(x)), training=False)
    assert features.shape[0] == 1 and len(features.shape) == 2 and features.shape[1] > 0
    assert np.isfinite(np.asarray(features)).all()
    assert spec.default_input_size >= spec.min_input_size
    keras.backend.clear_session()


def test_published_metadata_present_for_keras_applications():
    for name in ("vgg16", "resnet50v2", "mobilenetv2", "inceptionv3", "efficientnetb0", "efficientnet_lite0"):
        spec = REG.backbones[name]
        assert 0.6 < spec.imagenet_top1 < 0.9 and spec.published_params > 1_000_000
        assert spec.weight_source("imagenet") is not None


def test_hed_edges_weights_copy_the_edge_detector_trunk():
    import h5py

    from transferlab.plugins.keras_backbones import hed_weights_path

    model = REG.backbones["vgg16"].build((32, 32, 3), "hed-edges")
    with h5py.File(hed_weights_path(), "r") as fh:
        expected = fh["block4/layers/conv2d_2/vars/0"][()]
    assert np.array_equal(model.get_layer("block4_conv3").kernel.numpy(), expected)
    assert REG.backbones["vgg16"].weight_source("hed-edges").available()


def test_keras_imagenet_offline_names_the_file_to_preseed(monkeypatch, tmp_path):
    from keras.src.applications import mobilenet_v2

    def no_network(*_a, **_k):
        raise Exception("URL fetch failure on https://example.invalid: None -- [Errno -3] Temporary failure")

    monkeypatch.setattr(mobilenet_v2.file_utils, "get_file", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as info:
        REG.backbones["mobilenetv2"].build((96, 96, 3), "imagenet")
    message = str(info.value)
    # Keras fetches the file of the input size (96 px here), so the hint names that one
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in message
    assert "efficientnet_lite0/1/2 with weights 'imagenet'" in message
    assert not REG.backbones["mobilenetv2"].weight_source("imagenet").available()


def _save_small_cnn_weights(path):
    model = REG.backbones["small_cnn"].build((16, 16, 3), None)
    model.save_weights(path)
    return model


def test_local_weights_file_is_loaded_and_hash_checked(tmp_path):
    path = tmp_path / "mine.weights.h5"
    saved = _save_small_cnn_weights(path)
    job = make_job(REG, task="digits", backbone="small_cnn", strategy="feature_extraction", weights=str(path),
                   input_size=16)
    assert job.weights == f"file:{path}" and len(job.weights_sha256) == 64
    base, sha = Runner(REG).build_base(REG.backbones["small_cnn"], job)
    assert sha == job.weights_sha256
    assert np.array_equal(base.get_layer("conv1").kernel.numpy(), saved.get_layer("conv1").kernel.numpy())
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(WeightsError, match="has sha256 .* expected"):
        Runner(REG).build_base(REG.backbones["small_cnn"], job)


def test_weights_for_another_architecture_are_refused(tmp_path):
    path = tmp_path / "other.weights.h5"
    REG.backbones["efficientnet_lite0"].build((32, 32, 3), None).save_weights(path)
    job = make_job(REG, task="digits", backbone="small_cnn", strategy="feature_extraction", weights=str(path),
                   input_size=16)
    with pytest.raises(WeightsError, match="does not fit backbone 'small_cnn'"):
        Runner(REG).build_base(REG.backbones["small_cnn"], job)


def test_lite0_imagenet_weights_are_converted_once_and_checked(tl_home):
    from transferlab.plugins.efficientnet_lite import converted_weights_path

    spec = REG.backbones["efficientnet_lite0"]
    first = spec.build((32, 32, 3), "imagenet")
    path = converted_weights_path()
    assert path.is_file() and str(path).startswith(str(tl_home))
    stamp = path.stat().st_mtime_ns
    second = spec.build((64, 64, 3), "imagenet")
    assert path.stat().st_mtime_ns == stamp  # reused, not reconverted
    assert np.array_equal(first.get_layer("stem_conv").kernel.numpy(), second.get_layer("stem_conv").kernel.numpy())
    path.write_bytes(path.read_bytes()[:1000])  # truncated: detected and rebuilt
    third = spec.build((32, 32, 3), "imagenet")
    assert np.array_equal(first.get_layer("top_conv").kernel.numpy(), third.get_layer("top_conv").kernel.numpy())


def test_pretrained_runs_record_the_weights_sha256(registry):
    from transferlab.plugins.efficientnet_lite import LITE0_SHA256

    job = make_job(registry, task="lfw_faces", backbone="efficientnet_lite0", weights="imagenet",
                   strategy="frozen_features", examples_per_class=5, input_size=32, epochs=1)
    result = Runner(registry).run(job)
    assert result.manifest["weights_sha256"] == LITE0_SHA256
    assert result.phases[0]["frozen_params"] == result.total_params - result.phases[0]["trainable_params"]


@pytest.mark.parametrize("name", sorted(REG.backbones))
def test_built_in_backbones_have_no_lambda_layers(name):
    """A Lambda layer carries Python code in a saved model; built-ins never use one."""
    import keras

    spec = REG.backbones[name]
    size = spec.min_input_size
    model = spec.build((size,) if spec.modality == "text" else (size, size, 3), None)

    def layers(m):
        for layer in m.layers:
            yield layer
            if hasattr(layer, "layers"):
                yield from layers(layer)

    assert not [layer.name for layer in layers(model) if isinstance(layer, keras.layers.Lambda)]
    keras.backend.clear_session()


def test_keras_load_model_is_never_called_on_files():
    """Weights only: the architecture is always rebuilt from the registered backbone."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sources = [p for folder in ("core", "plugins", "dashboard") for p in (root / folder).rglob("*.py")]

    # keras.models.load_model / keras.saving.load_model / a bare load_model, called; BackupAndRestore's own
    # `_load_model` (which calls load_weights on the rebuilt model) is not it, nor is the model card's text
    # telling a user how to load their export with plain Keras
    def calls(path):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name == "load_model":
                    yield f"{path.name}:{node.lineno}"

    assert sources and not [where for path in sources for where in calls(path)]
