"""Dashboard queries: loading a store of 10,000 runs x 20 epochs and building the Compare and
Data-efficiency pages, in two shapes of store. Target: < 1.5 s server time per page and shape.

- ``seeds``: few configurations, many seeds (20 configurations x 5 sizes x 100 seeds);
- ``configs``: many distinct configurations (200 configurations x 5 sizes = 1,000 configuration-sizes,
  10 seeds each), as a sweep over learning rates x backbones x strategies makes.

The store here is synthetic (random metrics in a temporary folder): it measures query and figure
cost only and is never shown as a result. Baseline: reading the same two tables with plain sqlite3
into Python lists, in the same run. Each page is also timed piece by piece, so the line that grows
is visible. ``--shape seeds|configs`` runs one shape; ``--runs N`` scales both down for a quick look.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time

import numpy as np

from _util import isolated_home, machine, report

STRATEGIES = ["scratch", "frozen_features", "lp_ft", "fine_tune_top_k", "full_fine_tune"]
BACKBONES = ["small_cnn", "efficientnet_lite0", "mobilenetv2", "vgg16"]
SIZES = [5, 10, 20, 50, 100]
#: shape -> (configurations, seeds); runs = configurations x sizes x seeds
SHAPES = {"seeds": (20, 100), "configs": (200, 10)}


def seed_store(n_configs: int, n_seeds: int, n_epochs: int = 20) -> str:
    """A store of ``n_configs`` configurations x 5 sizes x ``n_seeds`` seeds, each run ``n_epochs`` long,
    written in one transaction. Configurations beyond the 20 backbone x strategy pairs differ by learning
    rate, as a sweep's do."""
    from transferlab.store import Store, epochs, runs

    store = Store()
    rng = np.random.default_rng(0)
    run_rows, epoch_rows = [], []
    i = 0
    for config in range(n_configs):
        strategy, backbone = STRATEGIES[config % 5], BACKBONES[(config // 5) % 4]
        learning_rate = 1e-3 * (1 + config // 20)
        skill = rng.normal(0, 0.05)
        for size in SIZES:
            for seed in range(n_seeds):
                acc = float(np.clip(0.4 + 0.1 * np.log(size) + skill + rng.normal(0, 0.03), 0, 1))
                run_id = f"bench{i:011d}"
                spec = dict(task="animal_mnist", backbone=backbone, strategy=strategy, examples_per_class=size,
                            seed=seed, epochs=n_epochs, learning_rate=learning_rate)
                run_rows.append(dict(
                    run_id=run_id, spec_json=json.dumps(spec), kind="train", task="animal_mnist", backbone=backbone,
                    weights="none" if strategy == "scratch" else "imagenet", strategy=strategy,
                    examples_per_class=size, seed=seed, input_size=64, depends_on="[]", status="succeeded",
                    score=acc, balanced_accuracy=acc, test_loss=1 - acc, trainable_params=1000, total_params=5000,
                    wall_seconds=10.0, transferability=-1.0, phases_json="[]",
                    manifest_json=json.dumps({"n_test": 200}), created_at=float(i)))
                for epoch in range(1, n_epochs + 1):
                    epoch_rows.append(dict(run_id=run_id, epoch=epoch, phase="head", train_loss=1 / epoch,
                                           val_loss=1.2 / epoch, train_score=acc * epoch / n_epochs,
                                           val_score=acc * epoch / n_epochs, seconds=1.0))
                i += 1
    with store.engine.begin() as conn:  # one transaction, executemany
        conn.execute(runs.insert(), run_rows)
        conn.execute(epochs.insert(), epoch_rows)
    return store.url.removeprefix("sqlite:///")


def measure(shape: str, n_configs: int, n_seeds: int) -> None:
    """Seed one store and print the page and piece timings against the plain-sqlite3 baseline."""
    isolated_home(f"queries-{shape}")
    path = seed_store(n_configs, n_seeds)
    from transferlab.analysis import run_labels, summarize
    from transferlab.compare import GROUPS_PER_PAGE, crossovers, curve_groups, curves, score_intervals
    from transferlab.dashboard.charts import data_efficiency_chart, gain_chart, learning_curves_chart, store_colours
    from transferlab.registry import get_registry
    from transferlab.store import Store

    # what a dashboard server has done once before any page opens: the registry (st.cache_resource), scipy,
    # plotly's first figure
    get_registry()
    import scipy.stats  # noqa: F401
    learning_curves_chart(curves(Store().epochs_frame(["bench00000000000"]), Store().runs_frame().head(1)))

    start = time.perf_counter()
    with sqlite3.connect(path) as conn:
        raw_runs = conn.execute("SELECT * FROM runs").fetchall()
        raw_epochs = conn.execute("SELECT * FROM epochs").fetchall()
    baseline = time.perf_counter() - start

    pieces: dict[str, float] = {}

    def piece(name, call, *args, **kwargs):
        begin = time.perf_counter()
        value = call(*args, **kwargs)
        pieces[name] = pieces.get(name, 0.0) + time.perf_counter() - begin
        return value

    # Compare page, as it opens (dashboard/views/compare.py): all sizes, the first page of groups
    start = time.perf_counter()
    store = Store()
    runs = piece("load runs", store.runs_frame)
    colours = piece("store_colours", store_colours, runs)
    ok = runs[(runs["kind"] == "train") & (runs["status"] == "succeeded")]
    labels = piece("labels + groups", run_labels, ok)
    groups = piece("labels + groups", curve_groups, ok, labels)
    shown = groups.isin(sorted(groups.unique())[:GROUPS_PER_PAGE])
    ok, labels = ok[shown], labels[shown]
    epochs = piece("load epochs (page)", store.epochs_frame, list(ok["run_id"]))
    frame = piece("curves (page)", curves, epochs, ok, labels=labels)
    piece("learning_curves_chart (page)", learning_curves_chart, frame, colours=colours)
    compare_s = time.perf_counter() - start
    groups_on_page = frame["group"].nunique()

    # the same with every group on one chart (the page before paging), for comparison
    everything = runs[(runs["kind"] == "train") & (runs["status"] == "succeeded")]
    start = time.perf_counter()
    all_epochs = piece("load epochs (every group)", store.epochs_frame, list(everything["run_id"]))
    all_frame = piece("curves (every group)", curves, all_epochs, everything)
    piece("learning_curves_chart (every group)", learning_curves_chart, all_frame, colours=colours)
    every_s = time.perf_counter() - start + pieces["load runs"]

    # Data-efficiency page, as it opens (dashboard/views/data_efficiency.py): one task
    start = time.perf_counter()
    runs = store.runs_frame()
    colours = store_colours(runs)
    runs = runs[(runs["kind"] == "train") & (runs["status"] == "succeeded") & (runs["task"] == "animal_mnist")]
    summary = piece("summarize", summarize, runs)
    intervals = piece("score_intervals", score_intervals, summary, runs)
    crossing = piece("crossovers", crossovers, summary)
    piece("data_efficiency_chart", data_efficiency_chart, intervals, crossing, colours=colours)
    piece("gain_chart", gain_chart, summary, colours=colours)
    efficiency_s = time.perf_counter() - start

    print(f"dashboard queries [{shape}] on {machine()}: {len(raw_runs)} runs x "
          f"{len(raw_epochs) // len(raw_runs)} epochs, {n_configs} configurations x {len(SIZES)} sizes x "
          f"{n_seeds} seeds ({len(summary)} summary rows, {len(crossing)} crossovers)")
    report(f"[{shape}] Compare page (load + first page of {groups_on_page} groups + figure)", compare_s, baseline,
           "s", "< 1.5 s")
    report(f"[{shape}] Compare, every group on one chart ({all_frame['group'].nunique()} groups)", every_s, baseline,
           "s")
    report(f"[{shape}] Data-efficiency page (load + summary + figures)", efficiency_s, baseline, "s", "< 1.5 s")
    for name, seconds in pieces.items():
        report(f"[{shape}]   {name}", seconds, baseline, "s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), action="append",
                        help="store shape to measure (repeatable; default: both)")
    parser.add_argument("--runs", type=int, default=10_000, help="runs per store (default 10,000)")
    args = parser.parse_args()
    for shape in args.shape or list(SHAPES):
        n_configs, n_seeds = SHAPES[shape]
        scale = args.runs / (n_configs * len(SIZES) * n_seeds)
        if scale < 1:  # keep the shape: fewer seeds first, then fewer configurations
            n_seeds = max(1, round(n_seeds * scale)) if shape == "seeds" else n_seeds
            n_configs = max(1, round(n_configs * scale)) if shape == "configs" else n_configs
        measure(shape, n_configs, n_seeds)


if __name__ == "__main__":
    os.environ.setdefault("TRANSFERLAB_QUIET", "1")
    main()
