"""Dashboard queries: loading a store of 1,000 runs x 20 epochs and building the Compare and
Data-efficiency figures. Target: < 1.5 s server time.

The store here is synthetic (random metrics in a temporary folder): it measures query and figure
cost only and is never shown as a result. Baseline: reading the same two tables with plain sqlite3
into Python lists, in the same run.
"""
from __future__ import annotations

import json
import sqlite3
import time

import numpy as np

from _util import isolated_home, machine, report


def seed_store(n_runs: int = 1000, n_epochs: int = 20) -> str:
    from transferlab.store import Store, epochs, runs

    store = Store()
    rng = np.random.default_rng(0)
    strategies = ["scratch", "frozen_features", "lp_ft", "fine_tune_top_k", "full_fine_tune"]
    backbones = ["small_cnn", "efficientnet_lite0", "mobilenetv2", "vgg16"]
    run_rows, epoch_rows = [], []
    for i in range(n_runs):
        strategy, backbone = strategies[i % 5], backbones[(i // 5) % 4]
        size, seed = [5, 10, 20, 50, 100][(i // 20) % 5], (i // 100) % 10
        acc = float(np.clip(0.4 + 0.1 * np.log(size) + rng.normal(0, 0.03), 0, 1))
        run_id = f"bench{i:011d}"
        spec = dict(task="animal_mnist", backbone=backbone, strategy=strategy, examples_per_class=size, seed=seed,
                    epochs=n_epochs, run=i)
        run_rows.append(dict(run_id=run_id, spec_json=json.dumps(spec), kind="train", task="animal_mnist",
                             backbone=backbone, weights="none" if strategy == "scratch" else "imagenet",
                             strategy=strategy, examples_per_class=size, seed=seed, input_size=64, depends_on="[]",
                             status="succeeded", score=acc, balanced_accuracy=acc, test_loss=1 - acc,
                             trainable_params=1000, total_params=5000, wall_seconds=10.0, transferability=-1.0,
                             phases_json="[]", manifest_json="{}", created_at=float(i)))
        for epoch in range(1, n_epochs + 1):
            epoch_rows.append(dict(run_id=run_id, epoch=epoch, phase="head", train_loss=1 / epoch, val_loss=1.2 / epoch,
                                   train_score=acc * epoch / n_epochs, val_score=acc * epoch / n_epochs,
                                   seconds=1.0))
    with store.engine.begin() as conn:
        conn.execute(runs.insert(), run_rows)
        conn.execute(epochs.insert(), epoch_rows)
    return store.url.removeprefix("sqlite:///")


def main() -> None:
    isolated_home("queries")
    path = seed_store()
    from transferlab.analysis import summarize
    from transferlab.compare import crossovers, curves
    from transferlab.dashboard.charts import data_efficiency_chart, gain_chart, learning_curves_chart
    from transferlab.store import Store

    start = time.perf_counter()
    with sqlite3.connect(path) as conn:
        raw_runs = conn.execute("SELECT * FROM runs").fetchall()
        raw_epochs = conn.execute("SELECT * FROM epochs").fetchall()
    baseline = time.perf_counter() - start

    start = time.perf_counter()
    store = Store()
    runs = store.runs_frame()
    ok = runs[(runs["kind"] == "train") & (runs["status"] == "succeeded")]
    # Compare page, as it opens: all sizes, the first page of groups
    frame = curves(store.epochs_frame(list(ok["run_id"])), ok)
    learning_curves_chart(frame)
    compare_s = time.perf_counter() - start

    start = time.perf_counter()
    runs = store.runs_frame()
    summary = summarize(runs[runs["task"] == "animal_mnist"])
    data_efficiency_chart(summary, crossovers(summary))
    gain_chart(summary)
    efficiency_s = time.perf_counter() - start

    print(f"dashboard queries on {machine()}: {len(raw_runs)} runs x {len(raw_epochs) // len(raw_runs)} epochs")
    report("Compare page (load + curves + figure)", compare_s, baseline, "s", "< 1.5 s")
    report("Data-efficiency page (load + summary + figures)", efficiency_s, baseline, "s", "< 1.5 s")


if __name__ == "__main__":
    main()
