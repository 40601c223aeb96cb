"""Object detection on Animal-MNIST canvases: mAP@0.5 of trained SSD heads against the untrained model.

Scratch small CNN (64 px, 8x8 feature map), and EfficientNet-Lite0 ImageNet frozen and fine-tuned
(128 px, 4x4 feature map), 100 canvases per class. The baseline is the same small CNN model, untrained.
Target: training lifts mAP@0.5 well above the untrained model's.
"""
from __future__ import annotations

import numpy as np

from _util import isolated_home, machine, report

CONFIGS = (
    ("small_cnn", "none", "scratch", 64),
    ("efficientnet_lite0", "imagenet", "feature_extraction", 128),
    ("efficientnet_lite0", "imagenet", "lp_ft", 128),
)


def main(per_class: int = 100, epochs: int = 15) -> None:
    from transferlab.progress import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    from transferlab.data import load_task_data, make_splits
    from transferlab.jobs import make_job
    from transferlab.registry import get_registry
    from transferlab.runner import Runner, feature_map

    isolated_home("detection")
    registry = get_registry()
    head = registry.task("animal_detection").task_head
    data = load_task_data(registry, "animal_detection")
    test = make_splits(data).test
    print(f"# {machine()}; test canvases: {len(test)}")

    job = make_job(registry, task="animal_detection", backbone="small_cnn", strategy="scratch", input_size=64)
    keras.utils.set_random_seed(0)
    base = registry.backbone("small_cnn").build((64, 64, 3), None)
    inputs = keras.Input((64, 64, 3))
    untrained = keras.Model(inputs, head.outputs(feature_map(base, "small_cnn")(inputs), 10, job))
    images = np.asarray(keras.ops.image.resize(data.images[test].astype("float32"), (64, 64))) / 255.0
    before = head.score(untrained.predict(images, verbose=0), data, test, job)[0]
    print(f"untrained small CNN + SSD head: mAP@0.5 {before:.3f}")

    runner = Runner(registry)
    for backbone, weights, strategy, size in CONFIGS:
        job = make_job(registry, task="animal_detection", backbone=backbone, weights=weights, strategy=strategy,
                       examples_per_class=per_class, input_size=size, epochs=epochs, fine_tune_epochs=5,
                       fine_tune_learning_rate=1e-4)
        result = runner.run(job)
        print(f"{backbone}/{weights}/{strategy} {size}px: mAP@0.5 {result.score:.3f} "
              f"({result.wall_seconds:.0f} s, {result.phases[-1]['trainable_params']:,} trainable)")
        report(f"mAP@0.5 {backbone}/{strategy} vs untrained", result.score, max(before, 1e-3), "",
               target="> 2")


if __name__ == "__main__":
    main()
