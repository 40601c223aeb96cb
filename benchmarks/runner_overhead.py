"""Runner overhead: a run through transferlab against plain ``model.fit`` on the same model and data.

The baseline is written the way the brief's slides write it: numpy arrays, preprocessing done
beforehand, ``model.fit(x, y, validation_data=..., batch_size=32)``. Both train the same small CNN on the
same Animal-MNIST subset for the same epochs; throughput counts training images per second of ``fit``
(validation included on both sides). Target: ratio >= 0.95.
"""
from __future__ import annotations

import time

from _util import isolated_home, machine, report


def main(epochs: int = 8, per_class: int = 100, repeats: int = 2) -> None:
    isolated_home("overhead")
    from transferlab.progress import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import numpy as np
    import tensorflow as tf

    from transferlab.data import load_task_data, make_splits, sample_subset
    from transferlab.jobs import make_job
    from transferlab.plugins.small_cnn import build_small_cnn
    from transferlab.registry import get_registry
    from transferlab.runner import Runner

    registry = get_registry()
    job = make_job(registry, task="animal_mnist", backbone="small_cnn", strategy="scratch",
                   examples_per_class=per_class, input_size=32, epochs=epochs, batch_size=32)
    data = load_task_data(registry, "animal_mnist")
    splits = make_splits(data)
    train = sample_subset(data.labels, splits.pool, job.seed, per_class)

    def prepare(idx):
        x = tf.image.resize(tf.image.grayscale_to_rgb(tf.cast(data.images[idx], tf.float32)), (32, 32)) / 255.0
        return x.numpy(), data.labels[idx]

    x_train, y_train = prepare(train)
    x_val, y_val = prepare(splits.val)

    def plain() -> float:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((32, 32, 3))
        x = build_small_cnn((32, 32, 3))(inputs)
        x = keras.layers.Dropout(0.2)(x)
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=False)
        start = time.perf_counter()
        model.fit(x_train, y_train, validation_data=(x_val, y_val), batch_size=32, epochs=epochs, verbose=0)
        return len(y_train) * epochs / (time.perf_counter() - start)

    def through_transferlab() -> float:
        return Runner(registry).run(job).images_per_second

    plain_ips, tl_ips = [], []
    for _ in range(repeats):  # interleaved, best of each: the machine's noise hits both alike
        plain_ips.append(plain())
        tl_ips.append(through_transferlab())
    print(f"runner overhead on {machine()}: small CNN, Animal-MNIST {per_class}/class, {epochs} epochs, batch 32")
    report("transferlab throughput", max(tl_ips), max(plain_ips), "images/s", ">= 0.95")


if __name__ == "__main__":
    main()
