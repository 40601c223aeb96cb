"""Running queued jobs: in worker processes (default one) that claim runs from the store.

Each worker is a separate process so TensorFlow's memory and threads are its own; with N workers each
gets cores/N intra-op threads so they do not fight. A heartbeat thread keeps a running run marked
alive. A run of the sweep whose worker is lost (its process on this machine gone: at once; on another
machine: once its heartbeat is older than the timeout) is queued again and run by this sweep, resumed
from its checkpoint; a run that a live worker elsewhere holds is not waited for, and the sweep's report
names it as unfinished.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Iterable

from transferlab.errors import FreezeViolationError, NaNLossError, TransferlabError, UserError
from transferlab.jobs import JobSpec
from transferlab.store import Store, worker_name

HEARTBEAT_EVERY_S = 10.0


def thread_pools(workers: int) -> tuple[int, int]:
    """(intra-op, inter-op) TensorFlow threads for each of N workers sharing the cores (0: TF's default)."""
    cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers)), (1 if workers > 1 else 0)


def weights_resolver(store: Store):
    """The runner's ``weights_file`` callback for ``store``: a source run id -> (its saved weights file, that
    file's sha256), for jobs whose weights are another run's (``weights="run:<id>"``). A source run that has
    not succeeded, or saved no weights, is a TransferlabError."""
    def resolve(run_id: str) -> tuple[Path, str]:
        import json

        row = store.get(run_id)
        if row is None or row["status"] != "succeeded":
            raise TransferlabError(f"Run {run_id} (source weights) has not succeeded.")
        manifest = json.loads(row["manifest_json"] or "{}")
        if "weights_file" not in manifest:
            raise TransferlabError(f"Run {run_id} saved no weights.")
        return Path(manifest["weights_file"]), manifest["weights_file_sha256"]

    return resolve


def _free_memory() -> None:
    """Drop the finished run's graphs and models so a long sweep's memory stays flat."""
    import gc
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()


def run_one(store: Store, job: JobSpec, registry=None) -> str:
    """Run a claimed job and store its outcome; returns the final status. Never raises for a job's failure."""
    from transferlab.progress import say
    from transferlab.registry import get_registry
    from transferlab.runner import Runner, has_checkpoint
    from transferlab.userdata import check_job_data

    registry = registry or get_registry()
    namespace = hashlib.sha256(store.url.encode()).hexdigest()[:8]  # checkpoints per store
    if not has_checkpoint(job, namespace):
        store.clear_epochs(job.job_id)  # starting over: drop the curve of an earlier, unresumable attempt
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_EVERY_S):
            try:
                store.heartbeat(job.job_id)
            except Exception:
                pass  # a missed heartbeat is harmless; the next one retries

    threading.Thread(target=beat, daemon=True).start()
    runner = Runner(
        registry,
        log_epoch=lambda epoch, phase, metrics, seconds: store.log_epoch(job.job_id, epoch, phase, metrics, seconds),
        weights_file=weights_resolver(store),
        report_progress=lambda progress: store.heartbeat(job.job_id, progress),
        checkpoint_namespace=namespace,
    )
    try:
        result = runner.run(job)
        check_job_data(registry, job)  # the data did not change while the run read it
    except NaNLossError as exc:
        store.finish(job.job_id, "nan", error=str(exc))
        say(f"  nan    {job.label()}: {exc}")
        return "nan"
    except (UserError, FreezeViolationError, TransferlabError) as exc:
        store.finish(job.job_id, "failed", error=f"{type(exc).__name__}: {exc}")
        say(f"  failed {job.label()}: {exc}")
        return "failed"
    except Exception as exc:  # a bug or a plugin's error: keep the sweep going, keep the trace
        store.finish(job.job_id, "failed", error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
        say(f"  failed {job.label()}: {type(exc).__name__}: {exc}")
        return "failed"
    finally:
        stop.set()
        _free_memory()
    store.finish(job.job_id, "succeeded", **result.store_values())
    say(f"  done   {job.label()}: test {result.manifest.get('metric', 'score')} {result.score:.3f} ({result.wall_seconds:.0f} s)")
    _keep_model(store, registry, job, result)
    return "succeeded"


def _keep_model(store: Store, registry, job: JobSpec, result) -> None:
    """Keep the run's trained model where the policy says so (:func:`transferlab.models.keep_after_run`). The
    run is stored already: a failure here is a warning line, never a failed run. The arrays go after."""
    import sys

    from transferlab.isolation import short_error
    from transferlab.progress import say

    try:
        from transferlab.models import keep_after_run

        kept = keep_after_run(store, registry, job, result)
        if kept is not None:
            say(f"  kept   {job.label()}: model kept ({kept['reason']}, {kept['bytes'] / 1e6:.1f} MB)")
    except Exception as exc:  # a full disk, a read-only home, a store error: the run itself succeeded
        from tqdm import tqdm

        tqdm.write(f"  warning: {job.label()} succeeded, but its trained model was not kept: {short_error(exc)}",
                   file=sys.stderr)
    finally:
        result.final_arrays = None


#: Jobs a worker process runs before it is replaced by a fresh one. TensorFlow keeps some memory
#: after ``clear_session`` (the peak of one long-lived worker grew by a third from 10 to 30 jobs), so
#: recycling the process, as Celery's max-tasks-per-child does, keeps a long sweep's memory flat.
JOBS_PER_WORKER = 10


def work(store: Store, among: Iterable[str], worker: str, registry=None, poll_s: float = 0.5,
         max_jobs: int | None = None, parent_pid: int | None = None) -> dict[str, int]:
    """Claim and run jobs from ``among`` until none is queued (or ``max_jobs`` ran, or the sweep process
    ``parent_pid`` is gone). Returns counts by status.

    A run of ``among`` whose worker is lost is queued again and run here. A queued run waits for its
    dependencies wherever they run; a run another live worker holds is left to it, not waited for.
    """
    among = list(among)
    counts: dict[str, int] = {}
    while max_jobs is None or sum(counts.values()) < max_jobs:
        if parent_pid is not None and os.getppid() != parent_pid:
            break  # the sweep that started this worker was killed: take no new job (a re-run does)
        job = store.claim(worker, among)
        if job is None:
            store.recover_lost(requeue_among=among)
            if store.pending(among, statuses=("queued",)) == 0:
                return counts
            time.sleep(poll_s)  # dependencies still running in another worker
            continue
        status = run_one(store, job, registry)
        counts[status] = counts.get(status, 0) + 1
    return counts


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when the sweep that started it dies (``kill -9`` of the
    sweep alone would otherwise leave the worker training on, holding its run against an immediate restart).
    Elsewhere the worker still stops between jobs when its parent is gone."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _worker_main(store_url: str, among: list[str], index: int, workers: int, max_jobs: int | None) -> None:
    from transferlab.progress import import_tensorflow_quietly

    _die_with_parent()
    os.environ["TRANSFERLAB_BAR_POSITION"] = str(index)
    import_tensorflow_quietly(threads=thread_pools(workers))
    work(Store(store_url), among, worker_name(index), max_jobs=max_jobs, parent_pid=os.getppid())


def _run_worker_processes(store: Store, ids: list[str], workers: int, jobs_per_worker: int | None) -> None:
    """Keep ``workers`` processes busy until no job of ``ids`` is queued, replacing each after its quota."""
    ctx = mp.get_context("spawn")
    procs: dict[int, mp.Process] = {}

    def start(slot: int) -> None:
        proc = ctx.Process(target=_worker_main, args=(store.url, ids, slot, workers, jobs_per_worker))
        proc.start()
        procs[slot] = proc

    def reap(slot: int, proc: mp.Process, requeue: bool = True) -> None:
        if proc.exitcode != 0:  # killed or crashed: its run cannot finish there, but can here
            store.interrupt_worker(f"{worker_name(slot).rsplit(':', 2)[0]}:{proc.pid}:{slot}",
                                   requeue_among=ids if requeue else ())

    failed_starts = 0
    for slot in range(workers):
        start(slot)
    try:
        while procs:
            for slot, proc in list(procs.items()):
                proc.join(timeout=0.5)
                if proc.exitcode is None:
                    continue
                del procs[slot]
                reap(slot, proc)
                # A worker that keeps dying (TensorFlow missing or crashing on import, say) must not
                # be restarted forever: three failures in a row end the sweep with a message.
                failed_starts = failed_starts + 1 if proc.exitcode != 0 else 0
                if failed_starts >= 3:
                    for other in procs.values():
                        other.terminate()
                    raise TransferlabError(
                        "Worker processes keep failing (exit code %s); see their output above. Check that the "
                        "training dependencies are installed: pip install 'transferlab[train]'." % proc.exitcode)
                queued = store.runs_frame(run_id=ids, status="queued")
                if not queued.empty:
                    start(slot)
    except KeyboardInterrupt:
        for proc in procs.values():
            proc.terminate()
        for slot, proc in procs.items():
            proc.join()
            reap(slot, proc, requeue=False)
        raise


def run_jobs(jobs: list[JobSpec], store: Store, workers: int = 1, registry=None,
             jobs_per_worker: int | None = JOBS_PER_WORKER, checked: bool = False) -> dict[str, int]:
    """Submit jobs and run them to the end; ``workers=0`` runs in this process.

    Succeeded runs are never redone. Returns the store's status counts for these jobs. ``registry``
    (default: the installed plugins) is used in-process; worker processes load the installed plugins
    and are replaced by fresh ones after ``jobs_per_worker`` jobs (None: never). ``checked``: the caller
    already ran :func:`transferlab.jobs.check_before_queueing` on these jobs (the CLI does, before it opens
    the store), so weight files are not loaded into their backbones a second time.
    """
    from transferlab.jobs import check_before_queueing
    from transferlab.registry import get_registry

    registry = registry or get_registry()
    if not checked:  # what the CLI checks before it opens the store, checked for every other caller (the API)
        check_before_queueing(registry, jobs)
    ids = [j.job_id for j in jobs]
    # before submitting: a run whose worker is gone is queued again, not counted as running
    recovered = store.recover_lost(requeue_among=ids)
    store.submit(jobs)
    frame = store.runs_frame(run_id=ids)
    from transferlab.progress import say

    say(_plan_message(frame, recovered))
    if (frame["status"] == "queued").any():  # queued by this call or left queued by an earlier, killed one
        # a dependency stored by another sweep (not among these jobs) is claimed here too: a queued one
        # that nobody else runs any more would keep its dependents waiting for ever
        among = ids + sorted({dep for job in jobs for dep in job.depends_on} - set(ids))
        if workers <= 0:
            from transferlab.progress import import_tensorflow_quietly

            import_tensorflow_quietly()
            work(store, among, worker_name(0), registry)
        else:
            _run_worker_processes(store, among, workers, jobs_per_worker)
    frame = store.runs_frame(run_id=ids)
    return frame["status"].value_counts().to_dict()


def _plan_message(frame, recovered: dict[str, list[str]]) -> str:
    """What a sweep is about to do: how many runs it will run, finds finished, or leaves to another worker."""
    status = frame["status"]
    message = (f"{len(frame)} jobs: {int((status == 'queued').sum())} to run, "
               f"{int(status.isin(['succeeded', 'nan']).sum())} already finished in the store")
    elsewhere = int(status.isin(["running", "stale"]).sum())
    if elsewhere:
        message += f", {elsewhere} held by a worker elsewhere (not waited for)"
    taken = recovered["requeued"] + recovered["interrupted"]
    if taken:
        message += f"; {len(taken)} taken back from a worker that is gone"
    return message + "."


def unfinished_report(frame, now: float | None = None) -> list[str]:
    """Lines naming every run of a sweep's ``frame`` (``Store.runs_frame``) that did not finish, with how
    many of each status first; empty when every run finished. A ``nan`` run finished (it diverged, its
    curve is kept and it is never rerun), so it is not listed here: the summary shows it."""
    from transferlab.store import heartbeat_timeout

    unfinished = frame[~frame["status"].isin(["succeeded", "nan"])]
    if unfinished.empty:
        return []
    now = time.time() if now is None else now
    names = {"running": "running in a live worker elsewhere", "stale": "held by a lost worker"}
    counts = unfinished["status"].value_counts()
    lines = [f"UNFINISHED: {len(unfinished)} of {len(frame)} runs did not finish ("
             + ", ".join(f"{n} {names.get(s, s)}" for s, n in counts.items()) + "):"]
    statuses = dict(zip(frame["run_id"], frame["status"]))
    for _, row in unfinished.iterrows():
        lines.append(f"  {row['status']}: {row['run_id']} {JobSpec.from_json(row['spec_json']).label()}: "
                     f"{_why_unfinished(row, statuses, now, heartbeat_timeout())}")
    if counts.get("running"):
        lines.append("Runs held by a live worker elsewhere are left to it; see them in `transferlab runs`.")
    lines.append("Finished runs are kept: run the same command again to run the rest.")
    return lines


def _why_unfinished(row, statuses: dict[str, str], now: float, timeout_s: float) -> str:
    """One line on why a run did not succeed."""
    import json

    if row["status"] == "queued":
        waiting = [d for d in json.loads(row["depends_on"] or "[]") if statuses.get(d) != "succeeded"]
        return f"waits for {', '.join(waiting)}" if waiting else "not started"
    if row["status"] == "running":
        beat = row["heartbeat_at"]
        return (f"held by {row['worker']}, heartbeat {now - beat:.0f} s ago (taken as lost after {timeout_s:g} s "
                "of silence)")
    if row["status"] == "stale":
        return row["worker_lost"]
    return str(row["error"]).splitlines()[0] if isinstance(row["error"], str) and row["error"] else "no message"
