"""Background launches: a launched sweep runs to the end in its own process; cancelling stops it."""
from __future__ import annotations

import time

import pandas as pd

from transferlab.jobs import make_job
from transferlab.launch import cancel, estimate_seconds, launch, launches, read_jobs_file
from transferlab.store import Store

FAST = dict(task="digits", backbone="small_cnn", strategy="scratch", examples_per_class=5, input_size=16,
            batch_size=16)


def _wait(predicate, timeout=180.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_launch_runs_in_the_background_and_is_listed(registry, tl_home):
    job = make_job(registry, epochs=1, **FAST)
    record = launch([job])
    assert [r.launch_id for r in launches()] == [record.launch_id]
    assert read_jobs_file(f"{record.folder}/jobs.json") == [job]
    store = Store()
    assert _wait(lambda: (store.get(job.job_id) or {}).get("status") == "succeeded"), \
        open(f"{record.folder}/log.txt").read()[-2000:]
    assert _wait(lambda: not record.alive, 30)


def test_cancel_stops_the_process_group_and_marks_runs(registry, tl_home):
    job = make_job(registry, epochs=400, **FAST)  # far longer than the test waits
    record = launch([job])
    store = Store()
    assert _wait(lambda: (store.get(job.job_id) or {}).get("status") == "running")
    assert cancel(record, store) == 1
    assert _wait(lambda: not record.alive, 10)
    row = store.get(job.job_id)
    assert row["status"] == "interrupted" and "cancelled" in row["error"]


def test_estimate_scales_measured_throughput(registry):
    job = make_job(registry, epochs=2, fine_tune_epochs=1, **FAST)
    measured = pd.DataFrame([dict(status="succeeded", wall_seconds=30.0, backbone="small_cnn", strategy="scratch",
                                  input_size=16, spec_json=job.canonical_json(),
                                  manifest_json='{"n_train": 50}')])
    bigger = make_job(registry, epochs=2, fine_tune_epochs=1, **dict(FAST, examples_per_class=10))
    seconds, covered = estimate_seconds(measured, [job, bigger], registry)
    assert covered == 2 and abs(seconds - (30.0 + 60.0)) < 1e-6
    assert estimate_seconds(measured.iloc[0:0], [job], registry) == (None, 0)
