"""The store on PostgreSQL (the shared store of a cluster), and atomic claims from worker processes.

The PostgreSQL tests need a server: set TRANSFERLAB_TEST_POSTGRES_URL to a SQLAlchemy URL of an empty
database (``.ci/run`` starts one); without it they are skipped. Each test starts from an empty schema.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading

import pytest
import sqlalchemy as sa

from transferlab.store import Store, metadata, runs

URL_ENV = "TRANSFERLAB_TEST_POSTGRES_URL"
CLAIMERS = 4


@pytest.fixture(scope="module")
def postgres_server() -> str:
    url = os.environ.get(URL_ENV)
    if not url:
        pytest.skip(f"{URL_ENV} is not set: no PostgreSQL server to test the shared store against "
                    "(.ci/run starts one; e.g. postgresql+psycopg://user:password@127.0.0.1:5432/db)")
    return url


@pytest.fixture
def postgres_url(postgres_server):
    """The server's URL, with the store's tables dropped before and after the test."""
    _drop_store_tables(postgres_server)
    yield postgres_server
    _drop_store_tables(postgres_server)


def _drop_store_tables(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            metadata.drop_all(conn)
    finally:
        engine.dispose()


def _jobs(count: int) -> list:
    from transferlab.jobs import make_job
    from transferlab.registry import load_registry

    registry = load_registry()
    return [make_job(registry, task="digits", backbone="small_cnn", strategy="scratch", examples_per_class=5,
                     input_size=16, epochs=1, seed=seed) for seed in range(count)]


def test_store_round_trip_on_postgres(postgres_url):
    store = Store(postgres_url)
    jobs = _jobs(3)
    ids = [j.job_id for j in jobs]
    assert store.submit(jobs) == {"queued": 3, "kept": 0}
    assert Store(postgres_url).submit(jobs) == {"queued": 0, "kept": 3}  # a second Store finds the schema as is
    assert store.pending(ids) == 3

    first = store.claim("w0", among=[ids[2]])
    assert first == jobs[2]
    row = store.get(first.job_id)
    assert row["status"] == "running" and row["worker"] == "w0" and row["started_at"] <= row["heartbeat_at"]
    store.heartbeat(first.job_id, {"phase": "train", "epoch": 1})
    assert json.loads(store.get(first.job_id)["progress_json"]) == {"phase": "train", "epoch": 1}

    store.log_epoch(first.job_id, 1, "train", {"loss": 9.0, "accuracy": 0.1}, seconds=0.5)
    store.log_epoch(first.job_id, 1, "train", {"loss": 1.5, "accuracy": 0.4, "val_loss": 1.6, "val_accuracy": 0.3, "score": 0.4, "val_score": 0.3},
                    seconds=0.5)  # a repeated epoch replaces the earlier row
    store.log_epoch(first.job_id, 2, "fine_tune", {"loss": 1.2, "accuracy": 0.5}, seconds=0.25)
    store.finish(first.job_id, "succeeded", score=0.5, trainable_params=2**40,
                 phases_json=[{"name": "train", "epochs": 2}], manifest_json={"seed": 2, "weights": "none"})

    frame = store.runs_frame()
    assert list(frame["run_id"]) == sorted(ids)  # same created_at: ordered by id
    assert dict(zip(frame["run_id"], frame["status"])) == {ids[0]: "queued", ids[1]: "queued", ids[2]: "succeeded"}
    done = store.runs_frame(status="succeeded").iloc[0]
    assert done["score"] == 0.5 and done["trainable_params"] == 2**40
    assert json.loads(done["phases_json"]) == [{"name": "train", "epochs": 2}]
    assert json.loads(done["manifest_json"]) == {"seed": 2, "weights": "none"}
    assert done["finished_at"] >= done["started_at"]
    assert len(store.runs_frame(run_id=ids[:2], status=["queued", "running"])) == 2
    epochs = store.epochs_frame([first.job_id])
    assert list(epochs["epoch"]) == [1, 2] and list(epochs["phase"]) == ["train", "fine_tune"]
    assert epochs["train_loss"].tolist() == [1.5, 1.2] and epochs["val_score"].iloc[0] == 0.3
    assert store.epochs_frame().equals(epochs)

    assert store.submit(jobs) == {"queued": 0, "kept": 3}
    second = store.claim("w1")
    assert second.job_id == min(ids[:2])
    assert store.mark_stale(timeout_s=3600) == 0
    assert store.mark_stale(timeout_s=-1) == 0  # held by this live process: never taken on a late heartbeat
    with store.engine.begin() as conn:  # as if held on another machine, where only the heartbeat tells
        conn.execute(sa.update(runs).where(runs.c.run_id == second.job_id).values(worker_host="otherhost"))
    assert store.mark_stale(timeout_s=-1) == 1
    assert store.get(second.job_id)["status"] == "interrupted"
    assert store.submit(jobs) == {"queued": 1, "kept": 2}

    assert store.cancel(ids, reason="stopped by the test") == 2
    assert store.runs_frame().set_index("run_id")["status"].to_dict() == {
        ids[0]: "interrupted", ids[1]: "interrupted", ids[2]: "succeeded"}
    assert store.get(ids[0])["error"] == "stopped by the test" and store.pending(ids) == 0
    assert store.get("no-such-run") is None


def test_missing_columns_are_added_on_postgres(postgres_url):
    Store(postgres_url).submit(_jobs(1))
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE runs DROP COLUMN transferability"))
    engine.dispose()
    store = Store(postgres_url)
    assert "transferability" in store.runs_frame().columns


def test_claims_are_atomic_across_threads_on_postgres(postgres_url):
    jobs = _jobs(40)
    Store(postgres_url).submit(jobs)
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLAIMERS)

    def claimer(index):
        mine = Store(postgres_url)
        start.wait(timeout=60)
        while (job := mine.claim(f"t{index}")) is not None:
            with lock:
                claimed.append(job.job_id)
        mine.engine.dispose()

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(CLAIMERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(j.job_id for j in jobs)


def _claim_until_empty(url: str, worker: str, start, claimed) -> None:
    """A worker process: claim until nothing is queued, then report the ids it got."""
    store = Store(url)
    start.wait(timeout=60)
    mine = []
    while (job := store.claim(worker)) is not None:
        mine.append(job.job_id)
    claimed.put((worker, mine))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_claims_are_atomic_across_processes(backend, request):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else Store().url
    jobs = _jobs(40)
    Store(url).submit(jobs)
    ctx = mp.get_context("spawn")
    start, claimed = ctx.Barrier(CLAIMERS), ctx.Queue()
    procs = [ctx.Process(target=_claim_until_empty, args=(url, f"p{i}", start, claimed)) for i in range(CLAIMERS)]
    for proc in procs:
        proc.start()
    try:
        reports = [claimed.get(timeout=120) for _ in procs]  # drain before join: a full queue blocks its writer
    finally:
        for proc in procs:
            proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0] * CLAIMERS
    by_worker = {run_id: worker for worker, ids in reports for run_id in ids}
    assert sorted(run_id for _, ids in reports for run_id in ids) == sorted(j.job_id for j in jobs)
    frame = Store(url).runs_frame()
    # every claimer has exited, so its runs read as stale (held by a worker that is gone), not running
    assert (frame["status"] == "stale").all() and frame["worker_lost"].str.contains("is gone").all()
    assert dict(zip(frame["run_id"], frame["worker"])) == by_worker


def test_executor_writes_runs_and_epochs_to_postgres(postgres_url):
    from transferlab.executor import run_jobs

    jobs = _jobs(2)
    store = Store(postgres_url)
    assert run_jobs(jobs, store, workers=0) == {"succeeded": 2}
    frame = store.runs_frame().set_index("run_id")
    assert set(frame.index) == {j.job_id for j in jobs}
    assert (frame["status"] == "succeeded").all() and frame["error"].isna().all()
    assert frame["score"].between(0, 1).all() and (frame["trainable_params"] > 0).all()
    assert all("packages" in json.loads(m) for m in frame["manifest_json"])
    epochs = store.epochs_frame()
    assert sorted(epochs["run_id"]) == sorted(frame.index)  # one epoch each
    assert epochs["val_score"].notna().all() and (epochs["seconds"] > 0).all()
    assert run_jobs(jobs, Store(postgres_url), workers=0) == {"succeeded": 2}  # nothing runs twice
    assert store.runs_frame().set_index("run_id")["finished_at"].equals(frame["finished_at"])


def _open_store(url: str, start, results) -> None:
    """A worker process starting: open the store at the same moment as the others, and report how it went.
    Creating a table waits a moment after the check that it is missing, so every opener that checks before the
    first one commits tries to create it too (the race happens each time, not one time in three)."""
    import time

    from transferlab.store import models

    sa.event.listen(models, "before_create", lambda *args, **kwargs: time.sleep(0.5))
    start.wait(timeout=60)
    try:
        Store(url).engine.dispose()
        results.put("ok")
    except Exception as exc:  # reported to the test, which shows it
        results.put(f"{type(exc).__name__}: {exc}")


def test_workers_opening_an_older_store_at_once_all_upgrade_it(postgres_url):
    """An older store (without the predictions and models tables, one column short) opened by several workers at
    the same moment: each creates the tables it lacks, and without serialising that, all but one fail with a
    duplicate table (reported as 'cannot be read as a transferlab database')."""
    jobs = _jobs(1)
    Store(postgres_url).submit(jobs)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE models"))
        conn.execute(sa.text("DROP TABLE predictions"))
        conn.execute(sa.text("ALTER TABLE runs DROP COLUMN data_version"))
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(CLAIMERS), ctx.Queue()
    procs = [ctx.Process(target=_open_store, args=(postgres_url, start, results)) for _ in range(CLAIMERS)]
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=60)
    assert reports == ["ok"] * CLAIMERS
    inspector = sa.inspect(engine)
    assert {"predictions", "models"} <= set(inspector.get_table_names())
    assert "data_version" in {c["name"] for c in inspector.get_columns("runs")}
    engine.dispose()
    assert Store(postgres_url).runs_frame()["run_id"].tolist() == [jobs[0].job_id]
