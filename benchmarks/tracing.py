"""Tracing and rebuilding: what a multi-phase run builds, and the first training step per backbone.

Counts, for one head-then-fine-tune run, the input pipelines built and the train functions Keras
traces; a phase that changes which weights train needs a new train function, nothing else should be
rebuilt. Then times the first training step (tracing included) against a steady-state step for a few
backbones at 96 px, random init (no downloads).
"""
from __future__ import annotations

import time

from _util import isolated_home, machine, report


def count_calls(module, name: str, counter: dict) -> None:
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        counter[name] = counter.get(name, 0) + 1  # one counter for every module that calls it
        return original(*args, **kwargs)

    setattr(module, name, wrapper)


def main() -> None:
    isolated_home("tracing")
    from transferlab.progress import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import numpy as np

    from transferlab import features as features_module
    from transferlab import runner as runner_module
    from transferlab.jobs import make_job
    from transferlab.registry import get_registry

    registry = get_registry()
    counts: dict[str, int] = {}
    count_calls(runner_module, "make_image_dataset", counts)
    count_calls(features_module, "make_image_dataset", counts)
    original = keras.Model.make_train_function

    def counting_make_train_function(self, force=False):
        if getattr(self, "train_function", None) is None or force:
            counts["train functions"] = counts.get("train functions", 0) + 1
        return original(self, force)

    keras.Model.make_train_function = counting_make_train_function
    job = make_job(registry, task="digits", backbone="small_cnn", strategy="lp_ft", examples_per_class=10,
                   input_size=32, epochs=2, fine_tune_epochs=2)
    runner_module.Runner(registry).run(job)
    keras.Model.make_train_function = original
    print(f"tracing on {machine()}: one lp_ft run (2 phases)")
    print(f"  input pipelines built: {counts.get('make_image_dataset', 0)} (train, validation, test; "
          f"the transferability pass adds one for the training subset)")
    print(f"  train functions traced: {counts.get('train functions', 0)} (one per phase: trainable weights change)")

    print("first training step (tracing included) vs a steady-state step, 96 px, batch 32, random init:")
    for name in ("small_cnn", "mobilenetv2", "efficientnet_lite0", "resnet50v2"):
        keras.backend.clear_session()
        spec = registry.backbone(name)
        base = spec.build((96, 96, 3), None)
        inputs = keras.Input((96, 96, 3))
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(base(inputs)))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=False)
        x = np.random.default_rng(0).random((32, 96, 96, 3), dtype=np.float32)
        y = np.arange(32) % 10
        start = time.perf_counter()
        model.train_on_batch(x, y)
        first = time.perf_counter() - start
        steady = []
        for _ in range(5):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            steady.append(time.perf_counter() - start)
        report(f"  {name} first step", first, float(np.median(steady)), "s")


if __name__ == "__main__":
    main()
