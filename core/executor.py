"""Running queued jobs: in worker processes (default one) that claim runs from the store.

Each worker is a separate process so TensorFlow's memory and threads are its own; with N workers each
gets cores/N intra-op threads so they do not fight. A heartbeat thread keeps a running run marked
alive; a run whose worker vanished is noticed through its stale heartbeat and marked interrupted.
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


def _weights_resolver(store: Store):
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
        weights_file=_weights_resolver(store),
        report_progress=lambda progress: store.heartbeat(job.job_id, progress),
        checkpoint_namespace=namespace,
    )
    try:
        result = runner.run(job)
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
    return "succeeded"


#: Jobs a worker process runs before it is replaced by a fresh one. TensorFlow keeps some memory
#: after ``clear_session`` (the peak of one long-lived worker grew by a third from 10 to 30 jobs), so
#: recycling the process, as Celery's max-tasks-per-child does, keeps a long sweep's memory flat.
JOBS_PER_WORKER = 10


def work(store: Store, among: Iterable[str], worker: str, registry=None, poll_s: float = 0.5,
         max_jobs: int | None = None) -> dict[str, int]:
    """Claim and run jobs from ``among`` until none is queued (or ``max_jobs`` ran). Returns counts by status."""
    among = list(among)
    counts: dict[str, int] = {}
    while max_jobs is None or sum(counts.values()) < max_jobs:
        job = store.claim(worker, among)
        if job is None:
            if store.pending(among) == 0:
                return counts
            store.mark_stale()
            time.sleep(poll_s)  # dependencies still running in another worker
            continue
        status = run_one(store, job, registry)
        counts[status] = counts.get(status, 0) + 1
    return counts


def _worker_main(store_url: str, among: list[str], index: int, workers: int, max_jobs: int | None) -> None:
    from transferlab.progress import import_tensorflow_quietly

    os.environ["TRANSFERLAB_BAR_POSITION"] = str(index)
    import_tensorflow_quietly(threads=thread_pools(workers))
    work(Store(store_url), among, worker_name(index), max_jobs=max_jobs)


def _run_worker_processes(store: Store, ids: list[str], workers: int, jobs_per_worker: int | None) -> None:
    """Keep ``workers`` processes busy until no job of ``ids`` is queued, replacing each after its quota."""
    ctx = mp.get_context("spawn")
    procs: dict[int, mp.Process] = {}

    def start(slot: int) -> None:
        proc = ctx.Process(target=_worker_main, args=(store.url, ids, slot, workers, jobs_per_worker))
        proc.start()
        procs[slot] = proc

    def reap(slot: int, proc: mp.Process) -> None:
        if proc.exitcode != 0:  # killed or crashed: its run cannot finish
            store.interrupt_worker(f"{worker_name(slot).rsplit(':', 2)[0]}:{proc.pid}:{slot}")

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
            reap(slot, proc)
        raise


def run_jobs(jobs: list[JobSpec], store: Store, workers: int = 1, registry=None,
             jobs_per_worker: int | None = JOBS_PER_WORKER) -> dict[str, int]:
    """Submit jobs and run them to the end; ``workers=0`` runs in this process.

    Succeeded runs are never redone. Returns the store's status counts for these jobs. ``registry``
    (default: the installed plugins) is used in-process; worker processes load the installed plugins
    and are replaced by fresh ones after ``jobs_per_worker`` jobs (None: never).
    """
    from transferlab.data import check_jobs_fit_data
    from transferlab.registry import get_registry

    registry = registry or get_registry()
    check_jobs_fit_data(registry, jobs)
    store.mark_stale()
    submitted = store.submit(jobs)
    ids = [j.job_id for j in jobs]
    from transferlab.progress import say

    say(f"{len(ids)} jobs: {submitted['queued']} to run, {submitted['kept']} already in the store.")
    if submitted["queued"]:
        if workers <= 0:
            from transferlab.progress import import_tensorflow_quietly

            import_tensorflow_quietly()
            work(store, ids, worker_name(0), registry)
        else:
            _run_worker_processes(store, ids, workers, jobs_per_worker)
    frame = store.runs_frame(run_id=ids)
    return frame["status"].value_counts().to_dict()
