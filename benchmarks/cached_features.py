"""Cached features: a frozen-base sweep of 3 heads x 10 epochs, cached against the slide-1 way.

Slide-1 way: the frozen base sits inside the model and runs on every image in every epoch
(``feature_extraction``). Cached: the base runs once per image and the heads train on stored features
(``frozen_features``), starting from a cold cache, so the one-time extraction is counted.
EfficientNet-Lite0 ImageNet at 96 px on Animal-MNIST, 100 labelled examples per class.
Targets: speed ratio >= 10, and the same test accuracy within noise.
"""
from __future__ import annotations

import time

from _util import isolated_home, machine, report

LEARNING_RATES = (3e-4, 1e-3, 3e-3)  # three heads


def main(epochs: int = 10, per_class: int = 100) -> None:
    from transferlab.progress import import_tensorflow_quietly

    import_tensorflow_quietly()
    from transferlab.jobs import make_job
    from transferlab.registry import get_registry
    from transferlab.runner import Runner

    registry = get_registry()
    runner = Runner(registry)
    seconds, accuracy = {}, {}
    for strategy in ("feature_extraction", "frozen_features"):
        isolated_home(strategy)  # each side starts with an empty feature cache
        # convert the packaged weights outside the timing
        runner.build_base(registry.backbone("efficientnet_lite0"),
                          make_job(registry, task="animal_mnist", backbone="efficientnet_lite0", weights="imagenet",
                                   strategy=strategy, input_size=96))
        start = time.perf_counter()
        accuracy[strategy] = [
            runner.run(make_job(registry, task="animal_mnist", backbone="efficientnet_lite0", weights="imagenet",
                                strategy=strategy, examples_per_class=per_class, input_size=96, epochs=epochs,
                                learning_rate=lr)).score
            for lr in LEARNING_RATES
        ]
        seconds[strategy] = time.perf_counter() - start
    print(f"cached features on {machine()}: Lite0 ImageNet 96 px, Animal-MNIST {per_class}/class, "
          f"{len(LEARNING_RATES)} heads x {epochs} epochs")
    report("slide-1 way (base re-run every epoch) time", seconds["feature_extraction"], seconds["frozen_features"],
           "s", "speed-up >= 10")
    for strategy, values in accuracy.items():
        print(f"  test accuracy {strategy}: " + ", ".join(f"{v:.3f}" for v in values))


if __name__ == "__main__":
    main()
