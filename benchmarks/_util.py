"""Shared helpers of the benchmark scripts: an isolated home, timing, and one result line per figure."""
from __future__ import annotations

import os
import platform
import tempfile
import time
from contextlib import contextmanager


def isolated_home(prefix: str) -> str:
    """Point TRANSFERLAB_HOME at a fresh temporary folder (cold caches, empty store) and return it."""
    home = tempfile.mkdtemp(prefix=f"transferlab-bench-{prefix}-")
    os.environ["TRANSFERLAB_HOME"] = home
    os.environ.pop("TRANSFERLAB_STORE", None)
    os.environ.setdefault("TRANSFERLAB_QUIET", "1")
    return home


@contextmanager
def timed(results: dict, key: str):
    """Store the wall time of the block in ``results[key]``."""
    start = time.perf_counter()
    yield
    results[key] = time.perf_counter() - start


def machine() -> str:
    """One line describing where the benchmark ran."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report(name: str, value: float, baseline: float, unit: str, target: str = "") -> None:
    """Print a measured figure, its baseline from the same run, and their ratio."""
    ratio = value / baseline if baseline else float("nan")
    print(f"{name}: {value:.3f} {unit} vs baseline {baseline:.3f} {unit} -> ratio {ratio:.2f}"
          + (f"  (target {target})" if target else ""))


def run_scores(store, jobs) -> dict[str, tuple[float | None, float]]:
    """Each training job's (test score or None when it did not succeed, wall seconds), keyed by backbone,
    strategy, size and seed."""
    import json

    frame = store.runs_frame(run_id=[j.job_id for j in jobs if j.kind == "train"])
    scores = {}
    for _, row in frame.iterrows():
        spec = json.loads(row["spec_json"])
        key = f"{spec['backbone']} {spec['strategy']} {spec.get('examples_per_class')}/class seed {spec['seed']}"
        scores[key] = (float(row["score"]) if row["status"] == "succeeded" else None, float(row["wall_seconds"] or 0))
    return scores
