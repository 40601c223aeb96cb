"""The Ray executor on a local Ray instance with 2 CPUs: dependencies, a shared store, resubmission."""
from __future__ import annotations

import os
import sys

import pytest

ray = pytest.importorskip("ray")

from transferlab.errors import UserError  # noqa: E402
from transferlab.jobs import expand_grid  # noqa: E402
from transferlab.ray_executor import run_jobs_ray  # noqa: E402
from transferlab.registry import load_registry  # noqa: E402

FAST = dict(input_size=16, epochs=1, fine_tune_epochs=1, batch_size=16, pretrain_epochs=1)


@pytest.fixture(autouse=True)
def restore_ray_auth_mode():
    """A local ray.init() sets RAY_AUTH_MODE=token in this process's environment; undo that after each test."""
    before = os.environ.get("RAY_AUTH_MODE")
    yield
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


def _grid(strategies: list[str], sources: list[str]):
    return expand_grid(load_registry(), dict(tasks=["lfw_faces"], backbones=["small_cnn"], strategies=strategies,
                                             examples_per_class=[5], seeds=[0], sources=sources), FAST)


def test_jobs_run_as_ray_tasks_in_dependency_order(store):
    jobs = _grid(["scratch", "full_fine_tune"], ["none", "digits:shuffled"])
    pre, transfer = jobs[0], next(j for j in jobs if j.depends_on)
    assert pre.kind == "pretrain" and transfer.depends_on == (pre.job_id,) and len(jobs) == 4
    assert run_jobs_ray(jobs, store, num_cpus=2) == {"succeeded": 4}
    assert not ray.is_initialized()  # the local instance it started is shut down again
    assert store.get(transfer.job_id)["started_at"] >= store.get(pre.job_id)["finished_at"]
    frame = store.runs_frame(run_id=[j.job_id for j in jobs])
    assert frame["worker"].str.startswith("ray:").all()
    finished = frame.set_index("run_id")["finished_at"].to_dict()
    assert run_jobs_ray(jobs, store, num_cpus=2) == {"succeeded": 4}
    assert store.runs_frame(run_id=list(finished)).set_index("run_id")["finished_at"].to_dict() == finished


def test_a_failed_dependency_fails_the_dependent(store):
    pre, transfer = _grid(["full_fine_tune"], ["digits:shuffled"])
    store.submit([pre])
    store.finish(pre.job_id, "failed", only_if=None, error="RuntimeError: on purpose")
    assert run_jobs_ray([transfer], store, num_cpus=2) == {"failed": 1}
    row = store.get(transfer.job_id)
    assert f"dependency {pre.job_id} did not succeed (failed)" in row["error"]
    assert row["started_at"] is None  # failed at the claim, never run


def test_without_ray_a_user_error_says_what_to_install(store, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(UserError, match=r"pip install 'transferlab\[ray\]'"):
        run_jobs_ray(_grid(["scratch"], ["none"]), store)
    assert store.runs_frame().empty  # nothing submitted
