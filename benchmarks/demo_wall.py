"""The strategies demo's wall time with reuse off (the runner before) and on, in one run, with both results.

Each side runs the demo's jobs (``transferlab.demo.demo_jobs``) through the executor in a fresh home (cold feature
and head caches, empty store): first the demo as it was before (``TRANSFERLAB_REUSE=off``: head phases end to end,
validation and backups every epoch; one worker, the demo's count before), then as it is (reuse on, the demo's own
worker count). ``--workers N`` runs both sides with N workers, to show what the reuse alone does. The
whole demo is 36 runs plus 3 source pretrainings and takes most of an hour with reuse off on 2 cores, so by
default this runs a slice of it (``--sizes 5,20 --seeds 0``: every configuration, two sizes, one seed); ``--full``
runs all of it. It prints both wall times, their ratio (target: <= 0.4 for the whole demo) and each
configuration's test accuracy both ways: the findings must not move.
"""
from __future__ import annotations

import argparse
import os
import time

from _util import isolated_home, machine, report, run_scores


#: worker processes of the strategies demo before head reuse (it has two since)
WORKERS_BEFORE = 1


def _demo(reuse: bool, sizes: list[int] | None, seeds: list[int] | None, workers: int | None) -> tuple[float, dict]:
    isolated_home("demo-on" if reuse else "demo-off")
    os.environ["TRANSFERLAB_REUSE"] = "on" if reuse else "off"
    from transferlab.demo import STRATEGIES, demo_jobs
    from transferlab.executor import run_jobs
    from transferlab.registry import get_registry
    from transferlab.store import Store

    registry = get_registry()
    jobs = demo_jobs(registry, sizes=sizes, seeds=seeds)
    store = Store()
    t0 = time.perf_counter()
    if workers is None:
        workers = STRATEGIES.workers if reuse else WORKERS_BEFORE
    counts = run_jobs(jobs, store, workers=workers, registry=registry)
    wall = time.perf_counter() - t0
    scores = run_scores(store, jobs)
    print(f"  reuse {'on ' if reuse else 'off'}, {workers} worker{'s' if workers > 1 else ''}: {wall:.0f} s for "
          f"{len(jobs)} jobs {counts}")
    return wall, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,20", help="examples per class (default: a slice of the demo's 5,20,100)")
    parser.add_argument("--seeds", default="0", help="seeds (default: one of the demo's three)")
    parser.add_argument("--full", action="store_true", help="the whole demo: its sizes and seeds")
    parser.add_argument("--workers", type=int,
                        help=f"worker processes of both sides (default: {WORKERS_BEFORE} before, the demo's now)")
    args = parser.parse_args()
    sizes = None if args.full else [int(s) for s in args.sizes.split(",")]
    seeds = None if args.full else [int(s) for s in args.seeds.split(",")]
    print(f"Strategies demo, reuse off vs on, on {machine()}: sizes {sizes or 'all'}, seeds {seeds or 'all'}")
    off_wall, off = _demo(False, sizes, seeds, args.workers)
    on_wall, on = _demo(True, sizes, seeds, args.workers)
    print(f"  {'run':<48} {'accuracy off':>12} {'on':>7} {'run s off':>10} {'on':>6}")
    for key in sorted(off):
        (a, ta), (b, tb) = off[key], on.get(key, (None, 0.0))
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        print(f"  {key:<48} {fmt(a):>12} {fmt(b):>7} {ta:>10.0f} {tb:>6.0f}")
    report("demo wall time", on_wall, off_wall, "s", "<= 0.4 (whole demo)")


if __name__ == "__main__":
    main()
