"""Parallel sweeps on one machine: throughput with 1 and 2 worker processes, and peak memory.

The same small-CNN jobs run with --workers 1 and --workers 2 (TensorFlow's thread pools sized to
cores / workers); then a 30-job sweep in one worker, whose peak RSS is compared with a 10-job sweep's
(memory is freed between jobs, so the peak should not grow with the number of jobs).
"""
from __future__ import annotations

import subprocess
import sys
import time

from _util import isolated_home, machine, report


def sweep(n_jobs: int, workers: int, tag: str) -> tuple[float, float]:
    """Run n small jobs in a fresh home through the CLI; returns (seconds, peak RSS MiB of any process).

    The sweep runs under a fresh Python parent, so RUSAGE_CHILDREN covers this sweep's processes only.
    """
    isolated_home(tag)
    seeds = ",".join(str(s) for s in range(n_jobs))
    command = [sys.executable, "-m", "transferlab.cli", "sweep", "--tasks", "animal_mnist", "--backbones",
               "small_cnn", "--strategies", "scratch", "--examples-per-class", "50", "--seeds", seeds,
               "--input-size", "32", "--epochs", "4", "--workers", str(workers)]
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, int(out.stdout.split()[-1]) / 1024


def main() -> None:
    one, _ = sweep(8, 1, "w1")
    two, _ = sweep(8, 2, "w2")
    print(f"parallel workers on {machine()}: 8 small-CNN jobs")
    report("throughput with 2 workers (jobs/min)", 8 / two * 60, 8 / one * 60, "jobs/min")
    _, peak10 = sweep(10, 1, "m10")
    _, peak30 = sweep(30, 1, "m30")
    report("peak RSS of a 30-job sweep", peak30, peak10, "MiB (baseline: 10 jobs)", "about 1")


if __name__ == "__main__":
    main()
