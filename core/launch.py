"""Launching sweeps in the background (for the dashboard) and cancelling them.

A launch is a detached ``transferlab sweep --jobs FILE`` process in its own session, so it survives the
page that started it and can be stopped as a group (the sweep and its workers). Its folder under
``TRANSFERLAB_HOME/launches/`` holds the jobs, the log and the process id.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.errors import UserError
from transferlab.jobs import JobSpec


@dataclass
class Launch:
    """A background sweep started from the dashboard."""

    launch_id: str
    pid: int
    job_ids: list[str]
    created_at: float
    folder: str
    pid_started: str | None = None

    @property
    def alive(self) -> bool:
        """Whether the sweep process still runs (the same process: a recycled pid does not count)."""
        try:
            os.kill(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        if self.pid_started is not None and _process_start(self.pid) != self.pid_started:
            return False
        try:  # a finished child we started ourselves is a zombie until reaped
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            return done == 0
        except ChildProcessError:
            return True


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat), which tells a recycled pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _launch_root() -> Path:
    from transferlab.paths import home

    root = home() / "launches"
    root.mkdir(parents=True, exist_ok=True)
    return root


def write_jobs_file(jobs: list[JobSpec], path: Path) -> None:
    """Save job specs as JSON (their canonical form), readable by ``transferlab sweep --jobs``."""
    path.write_text(json.dumps([job.canonical() for job in jobs], indent=1))


def read_jobs_file(path: str | os.PathLike) -> list[JobSpec]:
    """Job specs saved by :func:`write_jobs_file`."""
    try:
        items = json.loads(Path(path).read_text())
        return [JobSpec.from_json(json.dumps(item)) for item in items]
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"Cannot read jobs file {path}: {exc}") from None


def launch(jobs: list[JobSpec], workers: int = 1) -> Launch:
    """Start the jobs in a detached background sweep and return at once."""
    if os.environ.get("TRANSFERLAB_READ_ONLY", "").strip().lower() in ("1", "true", "yes"):
        raise UserError("This transferlab is read-only (TRANSFERLAB_READ_ONLY is set): training is disabled.")
    if not jobs:
        raise UserError("Nothing to launch: the sweep has no jobs.")
    launch_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    folder = _launch_root() / launch_id
    folder.mkdir()
    jobs_path = folder / "jobs.json"
    write_jobs_file(jobs, jobs_path)
    env = dict(os.environ, TRANSFERLAB_QUIET="1")
    with open(folder / "log.txt", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "transferlab.cli", "sweep", "--jobs", str(jobs_path), "--workers", str(workers)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )
    record = Launch(launch_id=launch_id, pid=proc.pid, job_ids=[j.job_id for j in jobs], created_at=time.time(),
                    folder=str(folder), pid_started=_process_start(proc.pid))
    (folder / "launch.json").write_text(json.dumps(asdict(record)))
    return record


def launches() -> list[Launch]:
    """Every launch recorded in this home, newest first."""
    found = []
    for path in _launch_root().glob("*/launch.json"):
        try:
            found.append(Launch(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # a half-written record from a crash: ignore it
    return sorted(found, key=lambda launch_: launch_.created_at, reverse=True)


def cancel(record: Launch, store: Any) -> int:
    """Stop a launch's process group and mark its unfinished runs interrupted. Returns how many."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not record.alive:  # never signal a process group that is no longer this launch's
            break
        try:
            os.killpg(record.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        for _ in range(20):
            if not record.alive:
                break
            time.sleep(0.1)
        if not record.alive:
            break
    return store.cancel(record.job_ids)


def estimate_seconds(runs: Any, jobs: list[JobSpec], registry: Any) -> tuple[float | None, int]:
    """Estimated wall time of ``jobs`` from measured runs.

    Each job takes the median seconds per (training image x epoch) of finished runs with the same
    backbone, strategy and input size (else the same backbone), times its own images x epochs.
    Returns (seconds, or None without any measurement; how many jobs had a measurement).
    """
    if runs is None or len(runs) == 0:
        return None, 0
    done = runs[(runs["status"] == "succeeded") & runs["wall_seconds"].notna()]
    if done.empty:
        return None, 0
    done = done.assign(work=[_work(json.loads(spec), json.loads(man or "{}").get("n_train", 0), registry)
                             for spec, man in zip(done["spec_json"], done["manifest_json"])])
    done = done[done["work"] > 0]
    total, covered = 0.0, 0
    for job in jobs:
        same = done[(done["backbone"] == job.backbone) & (done["strategy"] == job.strategy)
                    & (done["input_size"] == job.input_size)]
        if same.empty:
            same = done[done["backbone"] == job.backbone]
        if same.empty:
            continue
        n_train = (job.examples_per_class or 100) * (registry.task(job.task).num_classes or 2)  # None: the data decides
        total += float(np.median(same["wall_seconds"] / same["work"])) * _work(job.canonical(), n_train, registry)
        covered += 1
    return (total if covered else None), covered


def _work(spec: dict[str, Any], n_train: float, registry: Any) -> float:
    """Training images x epochs of a job: its strategy's phases, each at the epochs it resolves to."""
    from types import SimpleNamespace

    strategy = registry.strategies.get(spec.get("strategy"))
    if strategy is None:  # a run of a strategy no longer installed: its job fields are all there is
        return float(n_train) * (int(spec.get("epochs", 1)) + int(spec.get("fine_tune_epochs", 0)))
    job = SimpleNamespace(**{"epochs": 1, "fine_tune_epochs": 0, **spec})
    return float(n_train) * sum(phase.resolved_epochs(job) for phase in strategy.phases)
