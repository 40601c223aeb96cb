"""Store and executor: statuses, resubmission, NaN, dependencies, atomic claims, worker processes."""
from __future__ import annotations

import json
import os
import sqlite3
import threading

import pytest

from transferlab.executor import run_jobs
from transferlab.jobs import expand_grid, make_job
from transferlab.store import Store

FAST = dict(examples_per_class=5, input_size=16, epochs=1, fine_tune_epochs=1, batch_size=16)


def test_resubmitted_sweep_skips_finished_runs(registry, store):
    jobs = expand_grid(registry, dict(tasks=["digits"], backbones=["tiny"], strategies=["scratch", "feature_extraction"],
                                      examples_per_class=[5], seeds=[0, 1]), dict(FAST, examples_per_class=None))
    assert run_jobs(jobs, store, workers=0, registry=registry) == {"succeeded": 4}
    before = store.runs_frame().set_index("run_id")["finished_at"].to_dict()
    assert store.submit(jobs) == {"queued": 0, "kept": 4}
    run_jobs(jobs, store, workers=0, registry=registry)
    assert store.runs_frame().set_index("run_id")["finished_at"].to_dict() == before
    frame = store.runs_frame()
    assert frame["trainable_params"].notna().all() and (frame["wall_seconds"] > 0).all()
    assert frame["transferability"].notna().all()  # LogME of the starting features, before training
    progress = json.loads(frame["progress_json"].iloc[0])
    assert progress["step"] == progress["steps"] and {"loss", "val_accuracy"} <= set(progress["metrics"])
    manifest = json.loads(frame["manifest_json"].iloc[0])
    assert {"packages", "subset_indices_sha", "seed", "weights"} <= set(manifest)
    epochs = store.epochs_frame()
    assert len(epochs) == 4 and epochs["val_score"].notna().all()


def test_nan_status_and_the_sweep_goes_on(registry, store):
    bad = make_job(registry, task="digits", backbone="nan_net", strategy="scratch", **FAST)
    good = make_job(registry, task="digits", backbone="tiny", strategy="scratch", **FAST)
    counts = run_jobs([bad, good], store, workers=0, registry=registry)
    assert counts == {"nan": 1, "succeeded": 1}
    row = store.get(bad.job_id)
    assert row["status"] == "nan" and "NaN" in row["error"]
    # a nan run is kept, like a succeeded one, when the sweep is submitted again
    assert store.submit([bad, good]) == {"queued": 0, "kept": 2}


def test_failed_runs_are_requeued_on_resubmit(registry, store):
    job = make_job(registry, task="digits", backbone="leaky", strategy="feature_extraction", **FAST)
    assert run_jobs([job], store, workers=0, registry=registry) == {"failed": 1}
    assert "FreezeViolationError" in store.get(job.job_id)["error"]
    assert store.submit([job]) == {"queued": 1, "kept": 0}


def test_dependencies_pretrain_then_transfer(registry, store, tl_home):
    jobs = expand_grid(registry, dict(tasks=["lfw_faces"], backbones=["tiny"], strategies=["full_fine_tune"],
                                      examples_per_class=[5], seeds=[0], sources=["digits:shuffled"]),
                       dict(FAST, examples_per_class=None, pretrain_epochs=1))
    pre, transfer = jobs
    assert transfer.depends_on == (pre.job_id,)
    assert run_jobs(list(reversed(jobs)), store, workers=0, registry=registry) == {"succeeded": 2}
    pre_row, transfer_row = store.get(pre.job_id), store.get(transfer.job_id)
    assert pre_row["finished_at"] <= transfer_row["started_at"]
    weights_file = json.loads(pre_row["manifest_json"])["weights_file"]
    assert weights_file.endswith(f"run-{pre.job_id}.weights.h5")
    assert json.loads(transfer_row["manifest_json"])["weights"] == f"run:{pre.job_id}"


def test_failed_dependency_fails_the_dependent(registry, store):
    jobs = expand_grid(registry, dict(tasks=["lfw_faces"], backbones=["nan_net"], strategies=["full_fine_tune"],
                                      examples_per_class=[5], seeds=[0], sources=["digits"]),
                       dict(FAST, examples_per_class=None, pretrain_epochs=1))
    counts = run_jobs(jobs, store, workers=0, registry=registry)
    assert counts == {"nan": 1, "failed": 1}
    assert "dependency" in store.get(jobs[1].job_id)["error"]


def test_claims_are_atomic_under_concurrency(registry, tl_home):
    url = Store().url
    jobs = [make_job(registry, task="digits", backbone="tiny", strategy="scratch", seed=s, **FAST) for s in range(12)]
    Store(url).submit(jobs)
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(i):
        mine = Store(url)
        while (job := mine.claim(f"w{i}")) is not None:
            with lock:
                claimed.append(job.job_id)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(j.job_id for j in jobs)


def _held_elsewhere(store, run_id: str) -> None:
    """Make a claimed run look held by a worker on another machine (only its heartbeat tells)."""
    import sqlalchemy as sa

    from transferlab.store import runs

    with store.engine.begin() as conn:
        conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(worker_host="otherhost"))


def test_stale_heartbeat_marks_interrupted(registry, store):
    job = make_job(registry, task="digits", backbone="tiny", strategy="scratch", **FAST)
    store.submit([job])
    assert store.claim("w0") is not None
    assert store.mark_stale(timeout_s=-1) == 0  # held by this live process: never taken on a late heartbeat
    _held_elsewhere(store, job.job_id)
    assert store.mark_stale(timeout_s=-1) == 1  # held on another machine: the heartbeat decides
    assert store.get(job.job_id)["status"] == "interrupted"
    assert store.submit([job]) == {"queued": 1, "kept": 0}


def test_store_that_is_not_a_database(tl_home):
    from transferlab.errors import StoreError

    tl_home.mkdir(parents=True, exist_ok=True)
    bogus = tl_home / "runs.sqlite"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot be read as a transferlab database"):
        Store()


def test_store_with_newer_schema(tl_home):
    from transferlab.errors import StoreError

    store = Store()
    path = store.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="schema version 99, newer"):
        Store()


def test_worker_process_runs_a_job(registry, store):
    # one real spawned worker on a built-in backbone: the path `transferlab sweep` takes by default
    job = make_job(registry, task="digits", backbone="small_cnn", strategy="scratch", **FAST)
    assert run_jobs([job], store, workers=1) == {"succeeded": 1}
    assert store.get(job.job_id)["worker"].endswith(":0")


def test_worker_thread_pools_are_sized_before_tensorflow_starts(monkeypatch):
    import subprocess
    import sys

    code = (
        "from transferlab.executor import thread_pools\n"
        "from transferlab.progress import import_tensorflow_quietly\n"
        "import_tensorflow_quietly(threads=thread_pools(2))\n"
        "import tensorflow as tf\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads(), "
        "tf.config.threading.get_inter_op_parallelism_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    cores = os.cpu_count() or 1
    assert out.stdout.split() == [str(max(1, cores // 2)), "1"], out.stderr[-1000:]


def test_worker_processes_are_recycled_after_their_quota(registry, store):
    jobs = [make_job(registry, task="digits", backbone="small_cnn", strategy="scratch", seed=s, **FAST) for s in range(3)]
    assert run_jobs(jobs, store, workers=1, jobs_per_worker=2) == {"succeeded": 3}
    workers = store.runs_frame()["worker"]
    assert workers.nunique() == 2  # a fresh process (new pid) took the third job
