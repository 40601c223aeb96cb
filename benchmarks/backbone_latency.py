"""CPU latency of every image backbone at its default input size, one image per call, like timm's
per-device inference tables; the ratio is against EfficientNet-Lite0 measured in the same run.

The figures are also recorded in ``$TRANSFERLAB_HOME/measurements/latency.csv`` of an isolated home
(``transferlab backbones --measure`` records them in the user's home, where the Backbones page reads them).
"""
from __future__ import annotations

import argparse

from _util import isolated_home, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    isolated_home("latency")
    from transferlab.progress import import_tensorflow_quietly

    import_tensorflow_quietly()
    from transferlab.latency import measure_latency, record_latencies
    from transferlab.registry import load_registry

    registry = load_registry()
    image = [b for b in registry.backbones.values() if b.modality == "image"]
    measured = [measure_latency(b, "none", repeats=args.repeats) for b in image]
    record_latencies(measured)
    baseline = next(m for m in measured if m.backbone == "efficientnet_lite0")
    print(f"machine: {machine()}; {measured[0].machine}; TensorFlow {measured[0].tensorflow}")
    print(f"{'backbone':<20} {'input':>5} {'median ms':>10} {'p90 ms':>8} {'vs Lite0':>9} {'params':>12}")
    for m, spec in sorted(zip(measured, image), key=lambda pair: pair[0].median_ms):
        params = f"{spec.published_params:,}" if spec.published_params else "—"
        print(f"{m.backbone:<20} {m.input_size:>5} {m.median_ms:>10.1f} {m.p90_ms:>8.1f} "
              f"{m.median_ms / baseline.median_ms:>8.2f}x {params:>12}")


if __name__ == "__main__":
    main()
