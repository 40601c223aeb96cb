"""Disk and store errors: a full disk, a locked store and a read-only store each give one clear message,
and nothing of the failed write is kept."""
from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from transferlab.errors import StoreError, UserError
from transferlab.jobs import make_job
from transferlab.safe_io import atomic_path
from transferlab.store import Store


def _jobs(registry, n):
    return [make_job(registry, task="digits", backbone="tiny", strategy="scratch", examples_per_class=5, seed=s,
                     input_size=16) for s in range(n)]


def _path(store: Store) -> str:
    return store.url.removeprefix("sqlite:///")


def test_full_disk_says_so_and_keeps_no_half_rows(registry, store):
    store.submit(_jobs(registry, 2))

    @sa.event.listens_for(store.engine, "connect")
    def tiny_quota(dbapi_conn, _record):  # SQLite's own page limit: the same error as a full disk
        cur = dbapi_conn.cursor()
        pages = cur.execute("PRAGMA page_count").fetchone()[0]
        cur.execute(f"PRAGMA max_page_count = {pages}")
        cur.close()

    store.engine.dispose()
    with pytest.raises(StoreError, match="out of space") as err:
        store.submit(_jobs(registry, 400))
    assert "Nothing of this write was kept" in str(err.value) and "TRANSFERLAB_STORE" in str(err.value)
    with sqlite3.connect(_path(store)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_locked_store_says_who_to_wait_for(registry, store, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_STORE_BUSY_TIMEOUT", "0.2")
    locked = Store(store.url)
    holder = sqlite3.connect(_path(store), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            locked.submit(_jobs(registry, 1))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert locked.runs_frame().empty


def test_read_only_store_says_so(registry, store):
    store.submit(_jobs(registry, 1))
    with pytest.raises(StoreError, match="is read-only") as err:
        Store(f"sqlite:///file:{_path(store)}?mode=ro&uri=true")
    # the store is named by its file, never its folder (messages may reach others); the variable says where
    assert "runs.sqlite" in str(err.value) and "TRANSFERLAB_STORE" in str(err.value)
    assert str(Path(_path(store)).parent) not in str(err.value)
    assert len(Store(store.url).runs_frame()) == 1


def test_cli_with_a_read_only_store_exits_2(registry, store, monkeypatch, capsys):
    from transferlab.cli import main

    monkeypatch.setenv("TRANSFERLAB_STORE", f"sqlite:///file:{_path(store)}?mode=ro&uri=true")
    code = main(["run", "--task", "digits", "--backbone", "small_cnn", "--strategy", "scratch",
                 "--examples-per-class", "5", "--input-size", "16", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "read-only" in err and "Traceback" not in err


def test_disk_full_while_writing_a_file_leaves_nothing(tmp_path):
    target = tmp_path / "cache" / "features.npy"
    with pytest.raises(UserError, match="No space left on device") as err:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert "TRANSFERLAB_HOME" in str(err.value)
    assert not target.exists() and list(target.parent.iterdir()) == []
