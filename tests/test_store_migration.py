"""An older store, whose task score column was called test_accuracy, is renamed in place on open and keeps its
runs; opened read-only it is refused with what to do instead of failing on a missing column."""
from __future__ import annotations

import contextlib
import sqlite3

import pytest

from transferlab.errors import StoreError
from transferlab.store import Store


def _old_store(tmp_path):
    """A store as the first release wrote it: score in runs.test_accuracy, curves in epochs.val_accuracy."""
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    Store(url).engine.dispose()  # today's schema (closed: nothing of it left open), then taken back to the old column names
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE runs RENAME COLUMN score TO test_accuracy")
        db.execute("ALTER TABLE runs DROP COLUMN metric_label")
        db.execute("ALTER TABLE epochs RENAME COLUMN val_score TO val_accuracy")
        db.execute("ALTER TABLE epochs RENAME COLUMN train_score TO train_accuracy")
        db.execute("INSERT INTO runs (run_id, spec_json, kind, task, backbone, weights, strategy, seed, depends_on, "
                   "status, test_accuracy, metric, created_at) VALUES ('r1', '{}', 'train', 'digits', 'tiny', 'none', "
                   "'scratch', 0, '[]', 'succeeded', 0.75, 'accuracy', 1.0)")
        db.execute("INSERT INTO epochs (run_id, epoch, phase, val_accuracy) VALUES ('r1', 1, 'train', 0.5)")
    return path, url


def test_an_older_store_is_renamed_on_open_and_keeps_its_runs(tmp_path):
    path, url = _old_store(tmp_path)
    store = Store(url)
    runs = store.runs_frame()
    assert runs.loc[0, "score"] == 0.75 and "test_accuracy" not in runs
    assert runs.loc[0, "metric_label"] is None  # added, empty for runs stored before labels
    assert store.epochs_frame()["val_score"].tolist() == [0.5]
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert "score" in columns and "test_accuracy" not in columns


def test_an_older_store_opened_read_only_says_how_to_update_it(tmp_path):
    path, url = _old_store(tmp_path)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"written by an older transferlab \(column runs.test_accuracy is now score\)"):
        Store(url, read_only=True)
    assert path.read_bytes() == before  # nothing written


WORKER_COLUMNS = ("worker_host", "worker_pid", "worker_started", "worker_pidspace", "attempts")


def _store_before_worker_identity(tmp_path, heartbeat_age_s: float):
    """A store as the release before claims recorded the worker's process wrote it, with one run a worker
    of that release holds (its last heartbeat ``heartbeat_age_s`` ago)."""
    import time

    path = tmp_path / "before.db"
    url = f"sqlite:///{path}"
    Store(url).engine.dispose()
    beat = time.time() - heartbeat_age_s
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # closed: its WAL checkpointed before the test
        for column in WORKER_COLUMNS:
            db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        db.execute("INSERT INTO runs (run_id, spec_json, kind, task, backbone, weights, strategy, seed, depends_on, "
                   "status, created_at, started_at, heartbeat_at, worker) VALUES ('r1', '{}', 'train', 'digits', "
                   f"'tiny', 'none', 'scratch', 0, '[]', 'running', 1.0, {beat}, {beat}, 'oldhost:1:0')")
    return path, url


def test_an_older_store_gets_the_worker_columns_on_open(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HEARTBEAT_TIMEOUT", "60")
    path, url = _store_before_worker_identity(tmp_path, heartbeat_age_s=5)
    store = Store(url)
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert set(WORKER_COLUMNS) <= columns
    row = store.get("r1")
    assert row["status"] == "running" and row["worker_pid"] is None and row["attempts"] is None
    # nothing says where its worker runs: the heartbeat timeout decides, as before
    assert store.mark_stale() == 0 and store.runs_frame().loc[0, "status"] == "running"
    assert store.mark_stale(timeout_s=1) == 1


def test_an_older_store_opened_read_only_is_read_without_the_new_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HEARTBEAT_TIMEOUT", "60")
    path, url = _store_before_worker_identity(tmp_path, heartbeat_age_s=120)
    before = path.read_bytes()
    store = Store(url, read_only=True)
    runs = store.runs_frame()
    assert runs.loc[0, "status"] == "stale" and "heartbeat lost" in runs.loc[0, "worker_lost"]
    assert set(WORKER_COLUMNS) <= set(runs.columns) and runs.loc[0, list(WORKER_COLUMNS)].isna().all()
    assert store.get("r1")["worker_started"] is None
    store.engine.dispose()
    assert path.read_bytes() == before  # nothing written
