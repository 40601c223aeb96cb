"""Recovery that does not stop short: a claim records the worker's host, pid and start time, a re-run on the
same machine takes back a dead worker's run at once (a reused pid is not taken as alive), a run held on
another machine keeps the heartbeat timeout, the read path shows a lost worker's run as ``stale`` without
writing, and a sweep that leaves runs of its own unfinished says which and exits non-zero.

The store tests run on SQLite and, with TRANSFERLAB_TEST_POSTGRES_URL set, on PostgreSQL too.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from transferlab import liveness
from transferlab.executor import unfinished_report, work
from transferlab.jobs import make_job
from transferlab.store import MAX_ATTEMPTS, STALE, Store, metadata, runs

JOB = dict(task="digits", backbone="small_cnn", strategy="scratch", examples_per_class=10, input_size=16,
           batch_size=16)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tl_home):
    """A fresh store URL: SQLite in the test's home, or the PostgreSQL test server emptied around the test."""
    if request.param == "sqlite":
        yield Store().url
        return
    server = os.environ.get("TRANSFERLAB_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("TRANSFERLAB_TEST_POSTGRES_URL is not set: no PostgreSQL server (.ci/run starts one)")

    def drop():
        engine = sa.create_engine(server)
        with engine.begin() as conn:
            metadata.drop_all(conn)
        engine.dispose()

    drop()
    yield server
    drop()


def _jobs(registry, n: int, **options):
    return [make_job(registry, seed=seed, **dict(JOB, epochs=1, **options)) for seed in range(n)]


def _set(store: Store, run_id: str, **values) -> None:
    """Rewrite a run's row, as another worker's claim or an older heartbeat would have left it."""
    with store.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.run_id == run_id).values(**values))


def _claimed_elsewhere(store: Store, run_id: str, beat_age_s: float = 0.0) -> None:
    """The run as a worker on another host holds it, with its last heartbeat ``beat_age_s`` ago."""
    now = time.time()
    _set(store, run_id, status="running", worker="otherhost:4242:0", worker_host="otherhost", worker_pid=4242,
         worker_started="linux:99", worker_pidspace="linux:other-boot:pid:[1]", started_at=now - beat_age_s,
         heartbeat_at=now - beat_age_s, attempts=1)


# ----------------------------------------------------------------------------------------- liveness


def test_a_process_is_told_apart_by_its_pid_and_start_time():
    me = liveness.current()
    assert liveness.state(me) == liveness.ALIVE
    assert me.started == liveness.start_token(os.getpid()) and me.pidspace

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    held = liveness.ProcessIdentity(me.host, child.pid, liveness.start_token(child.pid), me.pidspace)
    assert liveness.state(held) == liveness.ALIVE
    child.kill()
    deadline = time.time() + 30  # the kernel takes a moment to end it on a loaded machine
    while liveness.state(held) != liveness.DEAD and time.time() < deadline:
        time.sleep(0.1)
    assert liveness.state(held) == liveness.DEAD  # a zombie, not yet reaped: gone all the same
    child.wait()
    assert liveness.state(held) == liveness.DEAD

    reused = liveness.ProcessIdentity(me.host, me.pid, "linux:1", me.pidspace)  # same pid, started at another time
    assert liveness.state(reused) == liveness.DEAD
    assert liveness.state(liveness.ProcessIdentity("otherhost", me.pid, me.started, me.pidspace)) == liveness.UNKNOWN
    other_container = liveness.ProcessIdentity(me.host, 1, "linux:1", "linux:other-boot:pid:[1]")
    assert liveness.state(other_container) == liveness.UNKNOWN  # its pid 1 is not ours to judge
    assert liveness.state(liveness.ProcessIdentity(me.host, me.pid, None, me.pidspace)) == liveness.UNKNOWN


# ----------------------------------------------------------------------------------------- the store


def test_a_claim_records_host_pid_and_start_time(registry, url):
    store = Store(url)
    job, = _jobs(registry, 1)
    store.submit([job])
    assert store.claim("w0") == job
    row = store.get(job.job_id)
    me = liveness.current()
    assert (row["worker_host"], row["worker_pid"], row["worker_started"], row["worker_pidspace"], row["attempts"]) == (
        me.host, os.getpid(), liveness.start_token(os.getpid()), me.pidspace, 1)


CLAIM_AND_HANG = textwrap.dedent("""
    import sys, time
    from transferlab.store import Store
    job = Store(sys.argv[1]).claim("hung-worker")
    print(job.job_id, flush=True)
    time.sleep(300)
""")


def test_a_worker_killed_on_this_machine_is_taken_back_at_once(registry, url, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HEARTBEAT_TIMEOUT", "3600")  # only its dead process can tell
    store = Store(url)
    job, other = _jobs(registry, 2)
    store.submit([job, other])
    worker = subprocess.Popen([sys.executable, "-c", CLAIM_AND_HANG, url], stdout=subprocess.PIPE, text=True)
    try:
        claimed = worker.stdout.readline().strip()
        assert store.recover_lost(requeue_among=[job.job_id, other.job_id]) == {"requeued": [], "interrupted": []}
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert store.get(claimed)["status"] == "running"
    assert store.recover_lost(requeue_among=[claimed]) == {"requeued": [claimed], "interrupted": []}
    row = store.get(claimed)
    assert row["status"] == "queued" and row["worker"] is None and row["worker_pid"] is None
    assert store.claim("w1", among=[claimed]).job_id == claimed


def test_a_reused_pid_is_not_taken_as_alive(registry, url, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HEARTBEAT_TIMEOUT", "3600")
    store = Store(url)
    job, = _jobs(registry, 1)
    store.submit([job])
    store.claim("w0")
    assert store.mark_stale() == 0  # this very process holds it
    _set(store, job.job_id, worker_started="linux:1")  # our pid, but the holder started at another time
    assert store.mark_stale() == 1
    row = store.get(job.job_id)
    assert row["status"] == "interrupted" and "on this machine is gone" in row["error"]


def test_a_run_held_on_another_host_waits_for_the_heartbeat_timeout(registry, url, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HEARTBEAT_TIMEOUT", "60")
    store = Store(url)
    job, = _jobs(registry, 1)
    store.submit([job])
    _claimed_elsewhere(store, job.job_id, beat_age_s=50)
    assert store.recover_lost(requeue_among=[job.job_id]) == {"requeued": [], "interrupted": []}
    assert store.get(job.job_id)["worker"] == "otherhost:4242:0"
    _claimed_elsewhere(store, job.job_id, beat_age_s=70)
    assert store.recover_lost(requeue_among=[job.job_id]) == {"requeued": [job.job_id], "interrupted": []}


def test_a_run_that_keeps_losing_its_worker_is_left_interrupted(registry, url):
    store = Store(url)
    job, = _jobs(registry, 1)
    store.submit([job])
    store.claim("w0")
    _set(store, job.job_id, worker_started="linux:1", attempts=MAX_ATTEMPTS)
    assert store.recover_lost(requeue_among=[job.job_id]) == {"requeued": [], "interrupted": [job.job_id]}
    assert f"not retried again after {MAX_ATTEMPTS} attempts" in store.get(job.job_id)["error"]
    assert store.submit([job]) == {"queued": 1, "kept": 0}  # a new sweep gives it a fresh budget
    assert store.get(job.job_id)["attempts"] == 0


def test_a_reaped_workers_run_goes_back_to_its_sweep_and_only_its_own(registry, url):
    store = Store(url)
    mine, other = _jobs(registry, 2)
    store.submit([mine, other])
    store.claim("host:1:0", among=[mine.job_id])
    store.claim("host:1:0", among=[other.job_id])
    assert store.interrupt_worker("host:1:0", requeue_among=[mine.job_id]) == 2
    assert store.get(mine.job_id)["status"] == "queued"
    assert (store.get(other.job_id)["status"], store.get(other.job_id)["error"]) == ("interrupted",
                                                                                     "worker host:1:0 stopped")


def _store_bytes(store: Store) -> str:
    path = Path(store.url.removeprefix("sqlite:///"))
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))
                                   if not p.name.endswith("-shm"))).hexdigest()


@pytest.mark.parametrize("read_only", [True, False])
def test_the_read_path_shows_lost_workers_as_stale_and_writes_nothing(registry, store, monkeypatch, read_only):
    monkeypatch.setenv("TRANSFERLAB_HEARTBEAT_TIMEOUT", "60")
    dead, silent, fresh, mine = _jobs(registry, 4)
    store.submit([dead, silent, fresh, mine])
    for job in (dead, silent, fresh, mine):
        store.claim("w0", among=[job.job_id])
    _set(store, dead.job_id, worker_started="linux:1")
    _claimed_elsewhere(store, silent.job_id, beat_age_s=61)
    _claimed_elsewhere(store, fresh.job_id, beat_age_s=5)
    store.engine.dispose()
    before = _store_bytes(store)

    viewer = Store(store.url, read_only=read_only)
    frame = viewer.runs_frame().set_index("run_id")
    assert frame["status"].to_dict() == {dead.job_id: STALE, silent.job_id: STALE, fresh.job_id: "running",
                                         mine.job_id: "running"}
    assert "on this machine is gone" in frame.at[dead.job_id, "worker_lost"]
    assert "heartbeat lost: otherhost:4242:0 silent for 61 s" in frame.at[silent.job_id, "worker_lost"]
    assert frame["worker_lost"][[fresh.job_id, mine.job_id]].isna().all()
    assert sorted(viewer.runs_frame(status="stale")["run_id"]) == sorted([dead.job_id, silent.job_id])
    assert sorted(viewer.runs_frame(status="running")["run_id"]) == sorted([fresh.job_id, mine.job_id])
    viewer.engine.dispose()
    assert _store_bytes(store) == before  # nothing written, not even the stale marks
    assert Store(store.url).get(dead.job_id)["status"] == "running"


def test_a_worker_whose_sweep_was_killed_takes_no_new_job(registry, store):
    job, = _jobs(registry, 1)
    store.submit([job])
    assert work(store, [job.job_id], "orphan", parent_pid=-1) == {}
    assert store.get(job.job_id)["status"] == "queued"


# ----------------------------------------------------------------------------------------- the sweep's report


def test_the_report_names_every_unfinished_run(registry, store, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HEARTBEAT_TIMEOUT", "60")
    done, failed, elsewhere, lost, waiting = _jobs(registry, 5)
    store.submit([done, failed, elsewhere, lost, waiting])
    for job in (done, failed, lost):
        store.claim("w0", among=[job.job_id])
    store.finish(done.job_id, "succeeded", score=0.5)
    store.finish(failed.job_id, "failed", error="UserError: bad input\ntrace")
    _claimed_elsewhere(store, elsewhere.job_id, beat_age_s=5)
    _set(store, lost.job_id, worker_started="linux:1")
    _set(store, waiting.job_id, depends_on=f'["{elsewhere.job_id}"]')
    frame = store.runs_frame()
    lines = unfinished_report(frame)
    assert lines[0].startswith("UNFINISHED: 4 of 5 runs did not finish (")
    for part in ("1 failed", "1 running in a live worker elsewhere", "1 held by a lost worker", "1 queued"):
        assert part in lines[0]
    body = "\n".join(lines)
    assert f"failed: {failed.job_id} {failed.label()}: UserError: bad input" in body and "trace" not in body
    assert f"running: {elsewhere.job_id} {elsewhere.label()}: held by otherhost:4242:0, heartbeat 5 s ago" in body
    assert f"stale: {lost.job_id} {lost.label()}: worker w0 stopped" in body
    assert f"queued: {waiting.job_id} {waiting.label()}: waits for {elsewhere.job_id}" in body
    assert done.job_id not in body
    assert unfinished_report(frame[frame["status"] == "succeeded"]) == []


def test_a_diverged_run_is_finished_not_unfinished(registry, store):
    """A nan run keeps its curve and is never rerun: listing it as unfinished would fail every re-run."""
    done, diverged = _jobs(registry, 2)
    store.submit([done, diverged])
    for job in (done, diverged):
        store.claim("w0", among=[job.job_id])
    store.finish(done.job_id, "succeeded", score=0.5)
    store.finish(diverged.job_id, "nan", error="NaNLossError: loss became nan at epoch 2")
    assert unfinished_report(store.runs_frame()) == []


def _jobs_file(tmp_path, jobs) -> Path:
    from transferlab.launch import write_jobs_file

    path = tmp_path / "jobs.json"
    write_jobs_file(jobs, path)
    return path


def test_a_sweep_leaving_a_run_to_a_live_foreign_worker_lists_it_and_exits_1(registry, store, tmp_path, capsys,
                                                                             monkeypatch):
    from transferlab.cli import main

    monkeypatch.setenv("TRANSFERLAB_HEARTBEAT_TIMEOUT", "600")
    mine, theirs = _jobs(registry, 2)
    store.submit([mine, theirs])
    _claimed_elsewhere(store, theirs.job_id, beat_age_s=1)
    code = main(["sweep", "--jobs", str(_jobs_file(tmp_path, [mine, theirs])), "--workers", "0"])
    out = capsys.readouterr().out
    assert code == 1
    assert "PARTIAL RESULTS: 1 of 2 runs succeeded" in out.splitlines()[0]
    assert "UNFINISHED: 1 of 2 runs did not finish (1 running in a live worker elsewhere)" in out
    assert f"running: {theirs.job_id} {theirs.label()}: held by otherhost:4242:0" in out
    assert store.get(mine.job_id)["status"] == "succeeded"
    assert store.get(theirs.job_id)["worker"] == "otherhost:4242:0"  # not taken over before its timeout


# ----------------------------------------------------------------------------------------- kill -9, then again at once


@pytest.mark.slow  # two sweeps, each importing TensorFlow: ~45 s on a busy 2-core machine
def test_kill_9_then_restart_at_once_resumes_the_killed_run(registry, tl_home, tmp_path):
    """A sweep killed with SIGKILL mid-run, started again at once: the killed run is taken back without
    waiting for the heartbeat timeout (an hour here), and the sweep finishes everything with status 0."""
    jobs = [make_job(registry, **dict(JOB, epochs=6))]
    jobs_file = _jobs_file(tmp_path, jobs)
    env = dict(os.environ, TRANSFERLAB_HOME=str(tl_home), TRANSFERLAB_QUIET="1", TRANSFERLAB_HEARTBEAT_TIMEOUT="3600")
    command = [sys.executable, "-m", "transferlab.cli", "sweep", "--jobs", str(jobs_file), "--workers", "0"]
    store = Store()
    sweep = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while store.epochs_frame().empty:  # training: at least one epoch stored
            assert time.time() < deadline and sweep.poll() is None, "the sweep did not start training"
            time.sleep(0.1)
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    killed = store.runs_frame(status=STALE)
    assert len(killed) == 1 and store.get(killed["run_id"].iloc[0])["status"] == "running"

    started = time.time()
    again = subprocess.run(command, env=dict(env, TRANSFERLAB_QUIET="0"), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 to run, 0 already finished in the store; 1 taken back from a worker that is gone." in again.stderr
    assert "UNFINISHED" not in again.stdout
    assert time.time() - started < 300
    final = store.runs_frame()
    assert set(final["status"]) == {"succeeded"} and len(final) == 1
    assert list(store.epochs_frame()["epoch"]) == [1, 2, 3, 4, 5, 6]  # resumed: the curve is whole


@pytest.mark.slow  # a worker process importing TensorFlow: ~30 s on a busy 2-core machine
def test_a_worker_dies_with_its_sweep(registry, tl_home, tmp_path):
    """kill -9 of the sweep alone (not its process group): its worker process goes too, at once, so an
    immediate restart finds the run's worker gone and takes the run back instead of leaving it to a worker
    that would train on with nobody to report to."""
    jobs = [make_job(registry, **dict(JOB, epochs=3000))]  # minutes of training: it must not just finish
    env = dict(os.environ, TRANSFERLAB_HOME=str(tl_home), TRANSFERLAB_QUIET="1", TRANSFERLAB_HEARTBEAT_TIMEOUT="3600")
    command = [sys.executable, "-m", "transferlab.cli", "sweep", "--jobs", str(_jobs_file(tmp_path, jobs)),
               "--workers", "1"]
    store = Store()
    sweep = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while store.epochs_frame().empty:
            assert time.time() < deadline and sweep.poll() is None, "the worker did not start training"
            time.sleep(0.2)
        worker_pid = int(store.get(jobs[0].job_id)["worker_pid"])
        assert worker_pid != sweep.pid
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    deadline = time.time() + 30
    while store.runs_frame(status=STALE).empty and time.time() < deadline:  # stale once its worker is gone
        time.sleep(0.2)
    assert store.runs_frame(status=STALE)["run_id"].tolist() == [jobs[0].job_id]
