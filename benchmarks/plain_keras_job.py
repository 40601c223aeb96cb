"""One transfer-learning job written as plain Keras, the baseline of ``vs_plain_keras.py``.

Written the way a practitioner's slides write it: numpy arrays, preprocessing done up front,
``model.fit(x, y, validation_data=..., epochs=...)``, then ``model.evaluate`` on the test split. From
transferlab it takes only the data (the Animal-MNIST loader and the fixed split and subset functions, so
the images are identical), the model definitions (EfficientNet-Lite0 with its ImageNet weights, the small
CNN) and their input normalisation; no runner, store, cache or callback. Modes:

- ``frozen``: Lite0 ImageNet; the frozen base's features computed once with ``predict``, multiplied to
  unit RMS over the training subset (as transferlab's frozen strategies scale them), and a Dropout(0.2) +
  Dense softmax head trained on them (transferlab's ``frozen_features``);
- ``lp_ft``: Lite0 ImageNet called with ``training=False`` (BatchNorm in inference mode); the head trained
  end to end through the frozen base, as the Keras transfer-learning guide does, then every layer unfrozen,
  recompiled at the fine-tune learning rate and fitted again (transferlab's ``lp_ft``);
- ``scratch``: the small CNN from random init, BatchNorm training, the same head (transferlab's ``scratch``).

Usage: ``python benchmarks/plain_keras_job.py MODE [--examples-per-class N] [--input-size PX] [--epochs E]
[--fine-tune-epochs F] [--learning-rate LR] [--fine-tune-learning-rate LR] [--batch-size B] [--seed S]``.
Prints one JSON line: ``mode``, ``test_accuracy``, ``seconds_in_process`` (from the start of this script's
imports to the end of the test pass) and the hashes of the subset and test indices (the same function as
the runner's manifest uses, so a comparison can check both sides trained on the same images).

EfficientNet-Lite0's converted ImageNet weights are cached under ``TRANSFERLAB_HOME`` (``cache/weights``),
as for transferlab itself: give each process a fresh home for a cold start on both sides.
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402  (after the clock starts: imports are part of the job)
import json  # noqa: E402
import os  # noqa: E402

MODES = ("frozen", "lp_ft", "scratch")
#: transferlab's job defaults (core/jobs.py JobSpec) where the issue's configurations do not set them
DEFAULTS = dict(epochs=10, fine_tune_epochs=5, learning_rate=1e-3, fine_tune_learning_rate=1e-5, batch_size=32,
                seed=0)
#: the batch of transferlab's feature extraction (core/features.py)
FEATURE_BATCH = 64


def split_indices(data, examples_per_class: int, seed: int):
    """(train, val, test) indices of Animal-MNIST exactly as transferlab's runner picks them."""
    from transferlab.data import make_splits, sample_subset

    splits = make_splits(data)
    return sample_subset(data.labels, splits.pool, seed, examples_per_class, None, "animal_mnist"), splits.val, \
        splits.test


def prepare(images, input_size: int, preprocess):
    """uint8 images (N, H, W, 1 or 3) as float32 RGB of ``input_size`` px through ``preprocess``, done once."""
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    if x.shape[-1] == 1:
        x = tf.image.grayscale_to_rgb(x)
    return preprocess(tf.image.resize(x, (input_size, input_size))).numpy()


def head(features, num_classes: int):
    """Dropout 0.2 and a Dense softmax layer (transferlab's default classification head)."""
    import keras

    x = keras.layers.Dropout(0.2)(features)
    return keras.layers.Dense(num_classes, activation="softmax")(x)


def compile_model(model, learning_rate: float, xla: bool) -> None:
    """Adam at ``learning_rate``, sparse cross-entropy, accuracy (jit_compile as transferlab's default: off)."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=xla)


def run(mode: str, examples_per_class: int, input_size: int, epochs: int, fine_tune_epochs: int,
        learning_rate: float, fine_tune_learning_rate: float, batch_size: int, seed: int,
        xla: bool = False) -> dict:
    """Train and test one job in ``mode``; returns what the script prints."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from transferlab.data import indices_hash
    from transferlab.plugins.image_tasks import load_animal_mnist

    data = load_animal_mnist()
    train, val, test = split_indices(data, examples_per_class, seed)
    num_classes = len(data.class_names)
    keras.utils.set_random_seed(seed)

    if mode == "scratch":
        from transferlab.plugins.small_cnn import build_small_cnn, preprocess_unit as preprocess
    else:
        from transferlab.plugins.efficientnet_lite import build_lite0_backbone, preprocess_lite as preprocess
    x_train, x_val, x_test = (prepare(data.images[idx], input_size, preprocess) for idx in (train, val, test))
    y_train, y_val, y_test = (data.labels[idx] for idx in (train, val, test))
    shape = (input_size, input_size, 3)

    if mode == "frozen":
        base = build_lite0_backbone(shape, "imagenet")
        f_train, f_val, f_test = (base.predict(x, batch_size=FEATURE_BATCH, verbose=0) for x in (x_train, x_val, x_test))
        scale = 1.0 / float(np.sqrt(np.mean(np.square(f_train.astype(np.float64)))))
        f_train, f_val, f_test = f_train * scale, f_val * scale, f_test * scale
        inputs = keras.Input((f_train.shape[1],))
        model = keras.Model(inputs, head(inputs, num_classes))
        compile_model(model, learning_rate, xla)
        model.fit(f_train, y_train, validation_data=(f_val, y_val), batch_size=batch_size, epochs=epochs, verbose=0)
        _, accuracy = model.evaluate(f_test, y_test, verbose=0)
    elif mode == "lp_ft":
        base = build_lite0_backbone(shape, "imagenet")
        base.trainable = False
        inputs = keras.Input(shape)
        model = keras.Model(inputs, head(base(inputs, training=False), num_classes))
        compile_model(model, learning_rate, xla)
        model.fit(x_train, y_train, validation_data=(x_val, y_val), batch_size=batch_size, epochs=epochs, verbose=0)
        base.trainable = True
        # BatchNorm stays frozen, as transferlab's lp_ft keeps it: in Keras 3 a trainable BatchNorm nested in a
        # functional model updates its moving statistics during fit even when the base is called with
        # training=False (without this, the plain script fine-tuned other work and scored 0.734 against 0.854)
        stack = list(base.layers)
        while stack:
            layer = stack.pop()
            stack.extend(getattr(layer, "layers", []))
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        compile_model(model, fine_tune_learning_rate, xla)  # recompile: `trainable` is read at compile time
        model.fit(x_train, y_train, validation_data=(x_val, y_val), batch_size=batch_size,
                  epochs=epochs + fine_tune_epochs, initial_epoch=epochs, verbose=0)
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    else:
        inputs = keras.Input(shape)
        model = keras.Model(inputs, head(build_small_cnn(shape)(inputs), num_classes))
        compile_model(model, learning_rate, xla)
        model.fit(x_train, y_train, validation_data=(x_val, y_val), batch_size=batch_size, epochs=epochs, verbose=0)
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return dict(mode=mode, test_accuracy=round(float(accuracy), 4),
                seconds_in_process=round(time.perf_counter() - STARTED, 2),
                subset_indices_sha=indices_hash(train), test_indices_sha=indices_hash(test),
                n_train=int(len(train)), n_val=int(len(val)), n_test=int(len(test)))


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run the job, print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--examples-per-class", type=int, default=100)
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--fine-tune-epochs", type=int, default=DEFAULTS["fine_tune_epochs"])
    parser.add_argument("--learning-rate", type=float, default=DEFAULTS["learning_rate"])
    parser.add_argument("--fine-tune-learning-rate", type=float, default=DEFAULTS["fine_tune_learning_rate"])
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--xla", action="store_true", help="jit_compile=True (transferlab's --xla)")
    args = vars(parser.parse_args(argv))
    print(json.dumps(run(**args)), flush=True)


if __name__ == "__main__":
    main()
