"""The plain Keras baseline of ``benchmarks/vs_plain_keras.py`` trains on what transferlab's runner trains on:
the same pixels (resize and preprocessing) and the same split and subset."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def plain():
    """``benchmarks/plain_keras_job.py`` as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("plain_keras_job", BENCHMARKS / "plain_keras_job.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def animal():
    from transferlab.plugins.image_tasks import load_animal_mnist

    return load_animal_mnist()


@pytest.mark.parametrize("backbone, size", [("efficientnet_lite0", 40), ("small_cnn", 32)])
def test_plain_pixels_are_the_runners(plain, animal, backbone, size):
    """The arrays the script fits on equal the runner's tf.data pipeline (make_dataset) image for image."""
    from transferlab.data import make_dataset
    from transferlab.registry import get_registry

    spec = get_registry().backbone(backbone)
    idx = np.arange(0, 70, 7)
    ds = make_dataset(animal, idx, animal.labels[idx], spec, size, 32)
    runner_x = np.concatenate([x.numpy() for x, _ in ds])
    plain_x = plain.prepare(animal.images[idx], size, spec.preprocess)
    assert plain_x.shape == runner_x.shape == (len(idx), size, size, 3)
    np.testing.assert_allclose(plain_x, runner_x, atol=1e-5)


@pytest.mark.slow
def test_plain_split_is_the_runners(plain, animal, registry):
    """A real run's manifest names the subset and test split the script computes (hashes of the indices)."""
    from transferlab.data import indices_hash
    from transferlab.jobs import make_job
    from transferlab.runner import Runner

    job = make_job(registry, task="animal_mnist", backbone="small_cnn", strategy="scratch", examples_per_class=3,
                   seed=2, input_size=16, epochs=1)
    manifest = Runner(registry).run(job).manifest
    train, val, test = plain.split_indices(animal, 3, 2)
    assert (indices_hash(train), indices_hash(test)) == (manifest["subset_indices_sha"], manifest["test_indices_sha"])
    assert (len(train), len(val), len(test)) == (manifest["n_train"], manifest["n_val"], manifest["n_test"])
    assert indices_hash(plain.split_indices(animal, 3, 1)[0]) != manifest["subset_indices_sha"]  # the seed counts
