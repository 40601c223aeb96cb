"""Running queued jobs as Ray tasks, on a Ray cluster or a local Ray instance (``pip install 'transferlab[ray]'``).

Each queued job becomes one Ray task that asks for ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs. A
transfer job gets its pretrain job's task as an argument, so Ray starts it only after that task ended;
the task then claims its run in the shared store, where a run whose dependency did not succeed is
failed instead of claimed. Every node needs transferlab installed and must reach the store's URL
(PostgreSQL on a real cluster; a SQLite file serves only the machine it is on), and every node must see
the same ``TRANSFERLAB_HOME`` (a shared filesystem): a pretrain job saves its weights there and the
transfer job that reads them may run on another node.
"""
from __future__ import annotations

import os
import time
from typing import Any

from transferlab.errors import UserError
from transferlab.jobs import JobSpec
from transferlab.store import Store

#: how often a task looks again at a dependency that runs outside this call (another sweep on the store)
DEPENDENCY_POLL_S = 1.0


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("The Ray executor needs Ray, an optional extra: pip install 'transferlab[ray]'") from None
    return ray


def _task_env(cpus_per_job: float, gpus_per_job: float) -> dict[str, str]:
    """The tasks' environment: the driver's ``TRANSFERLAB_*`` settings, and TensorFlow kept to its share."""
    env = {name: value for name, value in os.environ.items() if name.startswith("TRANSFERLAB_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow sizes its thread pool by the node's cores, not by the CPUs Ray reserved for the task
    env["TF_NUM_INTRAOP_THREADS"] = str(max(1, int(cpus_per_job)))
    if gpus_per_job > 0:
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"  # a fractional share: TensorFlow would take the whole card
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""  # Ray leaves GPUs visible to num_gpus=0 tasks; TensorFlow would fill them
    return env


def _run_job_task(store_url: str, job_id: str, *dependencies: str) -> str:
    """One Ray task: claim ``job_id`` in the shared store and run it; returns the run's final status.

    ``dependencies`` (the final statuses of the dependency tasks) go unread: passing their refs is what
    makes Ray wait for them. The claim itself checks that every dependency succeeded.
    """
    import ray

    from transferlab.executor import run_one
    from transferlab.progress import import_tensorflow_quietly

    store = Store(store_url)
    worker = f"ray:{ray.util.get_node_ip_address()}:{os.getpid()}"
    while (job := store.claim(worker, among=[job_id])) is None:
        row = store.get(job_id)
        if row is None or row["status"] != "queued":
            return row["status"] if row else "missing"  # failed for its dependency, or taken by another executor
        store.mark_stale()
        time.sleep(DEPENDENCY_POLL_S)
    import_tensorflow_quietly()
    return run_one(store, job)


def _describe(exc: BaseException) -> str:
    """``Type: first line`` of a Ray error, or of the exception a task raised (which RayTaskError wraps)."""
    cause = getattr(exc, "cause", None)
    shown = cause if isinstance(cause, BaseException) else exc
    first_line = next(iter(str(shown).strip().splitlines()), "")
    return f"{type(shown).__name__}: {first_line}"


def _connect(ray, address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at ``address`` or start a local Ray instance; True when this call did either."""
    if ray.is_initialized():
        return False  # the caller's Ray session (a notebook, a script): use it and leave it running
    if address:
        try:
            ray.init(address=address)
        except ConnectionError as exc:
            reason = _describe(exc.__cause__ or exc)
            raise UserError(
                f"Cannot connect to the Ray cluster at {address!r} ({reason}). Check the address (`ray status` on the "
                "head node shows it); a cluster with token authentication also needs RAY_AUTH_MODE=token and its "
                "token (RAY_AUTH_TOKEN or ~/.ray/auth_token) on this machine."
            ) from None
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    return True


def run_jobs_ray(jobs: list[JobSpec], store: Store, address: str | None = None, num_cpus: int | None = None,
                 cpus_per_job: float = 1.0, gpus_per_job: float = 0.0, checked: bool = False) -> dict[str, int]:
    """Submit jobs to the store and run the queued ones as Ray tasks; returns the store's status counts.

    ``address`` is a Ray cluster's address; without one (and without a Ray session already open in this
    process) a local Ray instance with ``num_cpus`` CPUs (default: all) is started for this call. Each job
    reserves ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs (fractions share a GPU). Succeeded runs are
    never redone, and a job whose dependency did not succeed ends ``failed`` naming it. The tasks open the
    store by its URL, so on a cluster it must be a database every node reaches. A task that Ray loses (a
    crashed worker, a lost node) leaves its run ``interrupted``; running the sweep again re-queues it.
    """
    ray = _import_ray()
    from transferlab.jobs import check_before_queueing
    from transferlab.progress import say
    from transferlab.registry import get_registry

    if not checked:  # weight files and data, as for local workers (``checked``: the caller did it already)
        check_before_queueing(get_registry(), jobs)
    store.mark_stale()
    submitted = store.submit(jobs)
    by_id = {job.job_id: job for job in jobs}
    ids = list(by_id)
    say(f"{len(ids)} jobs: {submitted['queued']} to run on Ray, {submitted['kept']} already in the store.")
    frame = store.runs_frame(run_id=ids)
    queued = set(frame.loc[frame["status"] == "queued", "run_id"])
    if queued:
        started = _connect(ray, address, num_cpus)
        try:
            _run_queued(ray, store, by_id, queued, cpus_per_job, gpus_per_job)
        finally:
            if started:
                ray.shutdown()
    return store.runs_frame(run_id=ids)["status"].value_counts().to_dict()


def _run_queued(ray, store: Store, by_id: dict[str, JobSpec], queued: set[str], cpus_per_job: float,
                gpus_per_job: float) -> None:
    # max_retries=0: a retried task would find its run still `running` under the lost worker's name
    task = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=0,
                      runtime_env={"env_vars": _task_env(cpus_per_job, gpus_per_job)})(_run_job_task)
    refs: dict[str, Any] = {}

    def submit(job_id: str):
        if job_id not in refs:
            # only dependencies queued in this call have a task; the claim checks all the others
            upstream = [submit(dep) for dep in by_id[job_id].depends_on if dep in queued]
            refs[job_id] = task.remote(store.url, job_id, *upstream)
        return refs[job_id]

    for job_id in by_id:
        if job_id in queued:
            submit(job_id)
    lost: dict[str, str] = {}
    try:
        for job_id, ref in refs.items():
            try:
                ray.get(ref)
            except ray.exceptions.RayError as exc:  # the job's own failures are stored; this is Ray's
                lost[job_id] = _describe(exc)
    except KeyboardInterrupt:
        for ref in refs.values():
            ray.cancel(ref, force=True)
        store.cancel(list(refs), reason="interrupted by the user")
        raise
    for job_id, reason in lost.items():
        store.cancel([job_id], reason=f"Ray task did not finish: {reason}")
