"""Measured inference latency of backbones on this machine, kept beside the store.

``transferlab backbones --measure`` (and ``benchmarks/backbone_latency.py``) times each image backbone at
its default input size, one image per call, after a warm-up, and appends the figures to
``<TRANSFERLAB_HOME>/measurements/latency.csv`` together with a description of the machine. Pages and the
``backbones`` table show only figures measured on the machine they run on, like timm's per-device
inference CSVs; a figure from another machine is not shown as if it were this one's.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from transferlab.paths import home

LATENCY_COLUMNS = ["backbone", "weights", "input_size", "batch", "median_ms", "p90_ms", "repeats", "machine",
                   "tensorflow", "measured_at"]


@dataclass(frozen=True)
class Latency:
    """One measurement: milliseconds per image of a forward pass of one image."""

    backbone: str
    weights: str
    input_size: int
    batch: int
    median_ms: float
    p90_ms: float
    repeats: int
    machine: str
    tensorflow: str
    measured_at: str


def machine_id() -> str:
    """The machine figures belong to: CPU model, core count and OS (no host name, no user, no path)."""
    cpu = platform.processor() or platform.machine()
    try:  # Linux names the CPU model here; platform.processor() is often empty there
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def latency_file() -> Path:
    """Where measured latencies are kept: ``<home>/measurements/latency.csv``."""
    return home() / "measurements" / "latency.csv"


def measure_latency(backbone: Any, weights: str = "none", input_size: int | None = None, repeats: int = 20,
                    warmup: int = 3) -> Latency:
    """Time one-image forward passes of ``backbone`` (a :class:`~transferlab.BackboneSpec`) built with
    ``weights``, preprocessing included, and return the median and 90th percentile in ms per image.

    The model is called through one traced ``tf.function`` (what inference code does); the first
    ``warmup`` calls, which include tracing, are not counted.
    """
    import numpy as np
    import tensorflow as tf

    from transferlab.runner import input_shape

    if backbone.modality != "image":
        raise ValueError(f"latency is measured for image backbones; {backbone.name!r} is {backbone.modality}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0. Received: repeats={repeats}, warmup={warmup}")
    size = int(input_size or backbone.default_input_size)
    base = backbone.build(input_shape(backbone, size), None if weights == "none" else weights)
    preprocess = backbone.preprocess

    @tf.function(reduce_retracing=True)
    def forward(x):
        return base(preprocess(x), training=False)

    image = tf.constant(np.random.default_rng(0).integers(0, 256, (1, size, size, 3)).astype("float32"))
    for _ in range(warmup):
        forward(image).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(image).numpy()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return Latency(backbone=backbone.name, weights=weights, input_size=size, batch=1,
                   median_ms=float(statistics.median(times)),
                   p90_ms=float(times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]),
                   repeats=repeats, machine=machine_id(), tensorflow=tf.__version__,
                   measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"))


def record_latencies(measurements: list[Latency]) -> Path:
    """Add measurements to the latency file, replacing older ones of the same backbone, weights, size and
    machine; written to a temporary file and renamed, so a reader never sees half a file."""
    path = latency_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    new = pd.DataFrame([asdict(m) for m in measurements], columns=LATENCY_COLUMNS)
    old = read_latencies(this_machine=False)
    key = ["backbone", "weights", "input_size", "batch", "machine"]
    if not old.empty:
        merged = pd.concat([old, new], ignore_index=True).drop_duplicates(key, keep="last")
    else:
        merged = new
    tmp = path.with_name(path.name + ".tmp")
    merged.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def read_latencies(this_machine: bool = True) -> pd.DataFrame:
    """Recorded latencies (only this machine's by default); an empty frame when none or unreadable."""
    path = latency_file()
    if not path.is_file():
        return pd.DataFrame(columns=LATENCY_COLUMNS)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return pd.DataFrame(columns=LATENCY_COLUMNS)
    if not set(LATENCY_COLUMNS) <= set(frame.columns):
        return pd.DataFrame(columns=LATENCY_COLUMNS)
    if this_machine:
        frame = frame[frame["machine"] == machine_id()]
    return frame[LATENCY_COLUMNS].reset_index(drop=True)


def latency_lookup(frame: pd.DataFrame | None = None) -> dict[str, float]:
    """``backbone -> median ms per image`` at its default input size on this machine (from
    :func:`read_latencies`; the newest measurement of each backbone). Latency is a property of the
    architecture, so it is measured on the random-init build; the weights loaded do not change it."""
    frame = read_latencies() if frame is None else frame
    frame = frame.sort_values("measured_at")
    return {row.backbone: float(row.median_ms) for row in frame.itertuples(index=False)}
