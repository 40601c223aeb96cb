"""On a GPU: a demo with and without ``--mixed-precision`` and ``--xla``, absolute times and ratios, and accuracy.

Each variant runs the demo's jobs (``--demo quick`` by default, ``--demo strategies`` for the whole strategies
demo) through the executor in a fresh home, one after the other on the same device: plain float32, mixed
precision, XLA, both. It prints each variant's wall time, its ratio to plain, and each configuration's test
accuracy, so a speed-up that costs accuracy shows. Without a GPU it stops with a message unless ``--allow-cpu``
(on CPU, XLA made MobileNetV2 5-14x slower, and mixed precision is slower on most CPUs).
"""
from __future__ import annotations

import argparse
import sys
import time

from _util import isolated_home, machine, run_scores

VARIANTS = {"plain": {}, "mixed_precision": {"mixed_precision": True}, "xla": {"xla": True},
            "mixed_precision+xla": {"mixed_precision": True, "xla": True}}


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return ""
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"{len(gpus)} x {details.get('device_name', gpus[0].name)}"


def _variant(name: str, demo: str, workers: int) -> tuple[float, dict[str, float | None]]:
    isolated_home(f"gpu-{name}")
    from transferlab.demo import demo_jobs
    from transferlab.executor import run_jobs
    from transferlab.registry import get_registry
    from transferlab.store import Store

    registry = get_registry()
    jobs = demo_jobs(registry, which=demo, options=VARIANTS[name])
    store = Store()
    t0 = time.perf_counter()
    run_jobs(jobs, store, workers=workers, registry=registry)
    wall = time.perf_counter() - t0
    scores = {key: score for key, (score, _) in run_scores(store, jobs).items()}
    return wall, scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="quick", choices=["quick", "strategies"])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1: one device)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (the figures mean little)")
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        print(f"Unknown variants {unknown}; choose from {list(VARIANTS)}.", file=sys.stderr)
        return 2
    from transferlab.progress import import_tensorflow_quietly

    import_tensorflow_quietly()
    device = _device()
    if not device and not args.allow_cpu:
        print("No GPU visible to TensorFlow: this benchmark is for a GPU machine (--allow-cpu runs it anyway).",
              file=sys.stderr)
        return 2
    print(f"demo {args.demo} on {device or 'CPU only'} ({machine()})")
    results = {name: _variant(name, args.demo, args.workers) for name in names}
    plain = results.get("plain", (None, {}))[0]
    for name, (wall, _) in results.items():
        ratio = f", ratio to plain {wall / plain:.2f}" if plain else ""
        print(f"  {name:<22} {wall:8.1f} s{ratio}")
    keys = sorted({k for _, scores in results.values() for k in scores})
    print("  test accuracy: " + " | ".join(names))
    for key in keys:
        cells = ["-" if results[n][1].get(key) is None else f"{results[n][1][key]:.4f}" for n in names]
        print(f"    {key:<48} " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
