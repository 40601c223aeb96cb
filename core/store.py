"""The run store: every job and its results, in SQLite (default) or any SQLAlchemy database.

One transaction per write; SQLite runs in WAL mode so the dashboard reads while workers write.
A run goes queued -> running -> succeeded | failed | nan | interrupted. Workers claim queued runs
with a conditional UPDATE, so no run is claimed twice. A claim records the worker's host, pid and process
start time: a running run whose worker on this machine is gone is recovered at once (see
:meth:`Store.recover_lost`); one held on another machine, once its heartbeat is older than the timeout.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlalchemy as sa

from transferlab import liveness
from transferlab.cells import known_bool
from transferlab.errors import StoreError
from transferlab.jobs import JobSpec

SCHEMA_VERSION = 1
#: PostgreSQL advisory lock held while a store's schema is created or migrated ("transfer" as a 64-bit number)
SCHEMA_LOCK_KEY = int.from_bytes(b"transfer", "big")
STATUSES = ("queued", "running", "succeeded", "failed", "nan", "interrupted")
FINAL_KEEP = ("succeeded", "nan")  # never redone when a sweep is submitted again
#: a running run whose heartbeat is older than this (seconds) is taken as interrupted;
#: ``TRANSFERLAB_HEARTBEAT_TIMEOUT`` overrides it (workers beat every 10 s)
HEARTBEAT_TIMEOUT_S = 90.0
#: how a run reads (never stored) while it is stored ``running`` but its worker is lost: dead on this
#: machine, or silent for longer than the heartbeat timeout; ``worker_lost`` in the frame says which
STALE = "stale"
#: claims of a run, since a sweep queued it, after which a lost worker leaves it ``interrupted`` instead
#: of queueing it again (a job that kills its worker each time must not loop)
MAX_ATTEMPTS = 3


def heartbeat_timeout() -> float:
    """Seconds without a heartbeat after which a run held on another machine is taken as lost."""
    return float(os.environ.get("TRANSFERLAB_HEARTBEAT_TIMEOUT", HEARTBEAT_TIMEOUT_S))

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("task", sa.String(128), nullable=False, index=True),
    sa.Column("backbone", sa.String(128), nullable=False),
    sa.Column("weights", sa.String(512), nullable=False),
    sa.Column("strategy", sa.String(128), nullable=False),
    sa.Column("source", sa.String(256)),
    sa.Column("examples_per_class", sa.Integer),
    sa.Column("fraction", sa.Float),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("input_size", sa.Integer),
    sa.Column("depends_on", sa.Text, nullable=False, default="[]"),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("error", sa.Text),
    sa.Column("score", sa.Float),  # the task's test score, in the metric named by `metric` (the task head's)
    sa.Column("metric", sa.String(32)),
    sa.Column("metric_label", sa.String(64)),  # how the task head calls it, e.g. "test accuracy"
    sa.Column("test_loss", sa.Float),
    sa.Column("balanced_accuracy", sa.Float),
    sa.Column("trainable_params", sa.BigInteger),
    sa.Column("total_params", sa.BigInteger),
    sa.Column("wall_seconds", sa.Float),
    sa.Column("images_per_second", sa.Float),
    sa.Column("transferability", sa.Float),
    # whether the validation loss was still falling when training ended (transferlab.convergence);
    # NULL when unknown: too few epochs, or a run stored before it was measured
    sa.Column("still_improving", sa.Boolean),
    sa.Column("phases_json", sa.Text),
    sa.Column("manifest_json", sa.Text),
    sa.Column("confusion_json", sa.Text),
    sa.Column("metrics_json", sa.Text),
    sa.Column("progress_json", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("worker", sa.String(128)),
    # who holds a running run, so a re-run on the same machine sees at once that its worker is gone
    # (transferlab.liveness): the host, the pid, the process's start time and the boot + pid namespace
    sa.Column("worker_host", sa.String(255)),
    sa.Column("worker_pid", sa.Integer),
    sa.Column("worker_started", sa.String(64)),
    sa.Column("worker_pidspace", sa.String(160)),
    sa.Column("attempts", sa.Integer),  # claims since a sweep last queued it; caps automatic retries
    sa.Column("data_version", sa.String(32)),  # the job's data fingerprint (None: data without one, or older runs)
)

epochs = sa.Table(
    "epochs",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("phase", sa.String(64), nullable=False),
    sa.Column("train_loss", sa.Float),
    sa.Column("train_score", sa.Float),  # the head's metric on the training batches, where Keras logs it
    sa.Column("val_loss", sa.Float),
    sa.Column("val_score", sa.Float),  # the head's validation metric (val_accuracy, val_map50, ...)
    sa.Column("seconds", sa.Float),
)

meta = sa.Table("meta", metadata, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.Text))

#: each succeeded run's test predictions, compact (``TaskHead.compact_predictions``): pages show a run's
#: mistakes without retraining it. Runs stored before it have no row.
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("predictions_json", sa.Text, nullable=False),
)

#: the runs whose trained weights are kept (:mod:`transferlab.models`): where, their hash and size, and why
models = sa.Table(
    "models",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("path", sa.String(1024), nullable=False),  # relative to transferlab.paths.home()
    sa.Column("sha256", sa.String(64), nullable=False),  # of the weights file
    sa.Column("bytes", sa.BigInteger, nullable=False),  # of the whole model folder
    sa.Column("reason", sa.String(16), nullable=False),  # "best" or "asked"
    sa.Column("score", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
)

#: columns of ``transferlab runs --csv``, in order
CSV_COLUMNS = [
    "run_id", "task", "backbone", "weights", "strategy", "source", "examples_per_class", "seed", "status",
    "score", "metric", "balanced_accuracy", "trainable_params", "total_params", "wall_seconds",
    "fraction", "input_size", "kind", "test_loss", "images_per_second", "transferability", "error", "still_improving",
    "data_version",
]


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _read_only_sqlite(path: str, timeout: float):
    """Connections to a SQLite store that read without writing a byte, even beside it.

    A WAL-mode database opened read-only makes SQLite create its ``-wal`` and ``-shm`` files when they are
    absent (the store at rest): a hosted read-only dashboard would change the folder it shows. When no
    write-ahead log exists, nobody is writing, so the connection opens the file ``immutable`` (no lock
    files, no coordination); while one exists (a sweep is writing), it joins in ``mode=ro`` as a reader
    of the live store. Each checkout decides anew (no pool), so a store that comes to life is read live.
    """
    import sqlite3

    def connect():
        flags = "mode=ro" if Path(path + "-wal").exists() else "mode=ro&immutable=1"
        return sqlite3.connect(f"file:{path}?{flags}", uri=True, timeout=timeout, check_same_thread=False)

    return connect


def _error_kind(exc: Exception) -> str | None:
    """``io``, ``full``, ``locked`` or ``read-only`` for a database error with a known cause, else None."""
    text = str(getattr(exc, "orig", exc)).lower()
    kinds = (("io", ("disk i/o",)), ("full", ("full", "no space")), ("locked", ("locked", "busy")),
             ("read-only", ("readonly", "read-only", "read only")))
    return next((kind for kind, words in kinds if any(w in text for w in words)), None)


def store_error(exc: Exception, url: str, doing: str) -> StoreError:
    """One clear message for a database error while ``doing`` something: full, locked, read-only, or other.

    Every write is one transaction, so the message can promise that nothing of it was kept.
    """
    kind = _error_kind(exc)
    where = _safe_url(url)
    kept = "Nothing of this write was kept (the transaction was rolled back)."
    if kind == "io":
        return StoreError(f"The disk under the store at {where} reported an I/O error while {doing}. {kept} "
                          "Check the disk (or network mount), or point TRANSFERLAB_STORE at another disk.")
    if kind == "full":
        return StoreError(f"The store at {where} is out of space while {doing}: the disk or its quota is full. "
                          f"{kept} Free some space, or point TRANSFERLAB_STORE at another disk, and run again.")
    if kind == "locked":
        return StoreError(f"The store at {where} stayed locked by another process while {doing} (waited "
                          f"{_busy_timeout():g} s). {kept} Wait for the other writer to finish, or raise "
                          "TRANSFERLAB_STORE_BUSY_TIMEOUT; use PostgreSQL for many concurrent writers.")
    if kind == "read-only":
        return StoreError(f"The store at {where} is read-only (file or folder permissions, or a read-only mount) "
                          f"while {doing}. {kept} Make it writable, or point TRANSFERLAB_STORE at a writable place.")
    return StoreError(f"The store at {where} failed while {doing}: {type(getattr(exc, 'orig', exc)).__name__}: "
                      f"{_safe_text(getattr(exc, 'orig', exc))[:200]}. {kept}")


def _busy_timeout() -> float:
    return float(os.environ.get("TRANSFERLAB_STORE_BUSY_TIMEOUT", "30"))


class Store:
    """Access to the runs, epochs, predictions and models tables. Safe to share across threads; open one per
    process.

    ``read_only=True`` opens an existing store without creating or changing anything (SQLite's
    read-only mode), for the hosted dashboard.
    """

    def __init__(self, url: str | None = None, read_only: bool = False):
        from transferlab.paths import default_store_url

        self.url = url or default_store_url()
        self.read_only = read_only
        kwargs: dict[str, Any] = {}
        engine_url = self.url
        if self.url.startswith("postgresql") and "connect_timeout" not in self.url:
            # an unreachable host otherwise waits for the system's TCP timeout (minutes) before saying so
            kwargs["connect_args"] = {"connect_timeout": 10}
        if self.url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": _busy_timeout()}
            if read_only:
                path = self.url.split(":///", 1)[-1]
                if not Path(path).is_file():
                    raise StoreError(f"There is no store at {_safe_url(self.url)} yet (TRANSFERLAB_STORE, or "
                                     "TRANSFERLAB_HOME, says where). Run `transferlab demo` or a sweep to create one.")
                # SQLite's own read-only mode: writes fail in the database, not only in this code.
                engine_url = f"sqlite:///file:{path}?mode=ro&uri=true"
                if "?" not in path:
                    kwargs = dict(creator=_read_only_sqlite(path, _busy_timeout()), poolclass=sa.pool.NullPool)
                    engine_url = "sqlite://"
        try:
            self.engine = sa.create_engine(engine_url, **kwargs)
        except Exception as exc:
            raise StoreError(f"Cannot use store URL {_safe_url(self.url)!r}: {_safe_text(exc)}") from None
        if self.url.startswith("sqlite") and not read_only:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._init_schema()

    def _init_schema(self) -> None:
        try:
            with self.engine.begin() as conn:
                if not self.read_only:
                    if conn.dialect.name == "postgresql":
                        # Workers starting together would each find a table missing and create it: all but one
                        # fail on the duplicate. One at a time (the lock ends with this transaction), the others
                        # find the schema made. SQLite needs none: its writers take the whole database in turn.
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
                    metadata.create_all(conn)
                    conn.execute(
                        sa.text("INSERT INTO meta (key, value) SELECT 'schema_version', :v WHERE NOT EXISTS "
                                "(SELECT 1 FROM meta WHERE key = 'schema_version')"),
                        {"v": str(SCHEMA_VERSION)},
                    )
                    _add_missing_columns(conn)
                else:
                    _refuse_outdated(conn, self.url)
                self._run_columns = _present_run_columns(conn)
                self._tables = set(sa.inspect(conn).get_table_names())
                version = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        except sa.exc.OperationalError as exc:
            if _error_kind(exc) in ("full", "locked", "read-only"):
                raise store_error(exc, self.url, "opening it") from None  # nothing was written

            raise StoreError(
                f"The store at {_safe_url(self.url)} cannot be opened ({type(exc.orig).__name__}: "
                f"{_safe_text(exc.orig)}). Check where TRANSFERLAB_STORE (or TRANSFERLAB_HOME) points and its "
                "permissions, or point it somewhere else."
            ) from None
        except sa.exc.DatabaseError as exc:
            raise StoreError(
                f"The store at {_safe_url(self.url)} cannot be read as a transferlab database "
                f"({type(exc.orig).__name__}: {_safe_text(exc.orig)}). Point TRANSFERLAB_STORE or TRANSFERLAB_HOME "
                "somewhere else, or move that file away."
            ) from None
        if version is not None and int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"The store at {_safe_url(self.url)} has schema version {version}, newer than this transferlab understands "
                f"({SCHEMA_VERSION}). Upgrade transferlab."
            )

    @contextlib.contextmanager
    def _write(self, doing: str) -> Iterator[Any]:
        """One write transaction; a database error becomes one clear StoreError (nothing kept)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise store_error(exc, self.url, doing) from None

    # ------------------------------------------------------------------------------------ submit

    def submit(self, jobs: Iterable[JobSpec]) -> dict[str, int]:
        """Queue jobs in one transaction. Succeeded and nan runs are kept; others are re-queued. A run whose
        stored spec asked to keep its model (``keep_model``) keeps asking when it is submitted again without it.

        Returns counts: ``queued`` (new or re-queued) and ``kept`` (already finished, queued or running).
        Each run queued here starts a fresh budget of :data:`MAX_ATTEMPTS` automatic retries.
        """
        now = time.time()
        counts = {"queued": 0, "kept": 0}
        with self._write("queueing jobs") as conn:
            for job in jobs:
                row = conn.execute(sa.select(runs.c.status, runs.c.attempts, runs.c.spec_json)
                                   .where(runs.c.run_id == job.job_id)).first()
                if row is None:
                    # Another sweep may insert the same run between our read and this write: skip it then.
                    inserted = conn.execute(_insert_ignoring_conflict(conn, dict(**_job_columns(job), status="queued",
                                                                              created_at=now))).rowcount
                    counts["queued" if inserted else "kept"] += 1
                elif row.status in FINAL_KEEP or row.status in ("queued", "running"):
                    if row.status == "queued":
                        # Left queued by an earlier sweep: a fresh budget, and the submitter's spec, since the
                        # job id leaves out where the data lies (the same content at another path is this run).
                        conn.execute(runs.update().where(runs.c.run_id == job.job_id, runs.c.status == "queued")
                                     .values(attempts=0, spec_json=_merged_spec(job, row.spec_json)))
                    counts["kept"] += 1
                else:
                    conn.execute(
                        runs.update().where(runs.c.run_id == job.job_id)
                        .values(status="queued", error=None, attempts=0, spec_json=_merged_spec(job, row.spec_json),
                                **_NO_WORKER)
                    )
                    counts["queued"] += 1
        return counts

    # ------------------------------------------------------------------------------------ claim

    def claim(self, worker: str, among: Iterable[str] | None = None) -> JobSpec | None:
        """Atomically take one queued run whose dependencies all succeeded; None if there is none now.

        Runs whose dependency ended in anything but success are failed with a message naming it.
        """
        among = set(among) if among is not None else None
        with self._write("claiming a job") as conn:
            queued = conn.execute(
                sa.select(runs.c.run_id, runs.c.spec_json, runs.c.depends_on)
                .where(runs.c.status == "queued")
                .order_by(runs.c.created_at, runs.c.run_id)
            ).all()
            statuses = dict(conn.execute(sa.select(runs.c.run_id, runs.c.status)).all())
        for run_id, spec_json, depends_json in queued:
            if among is not None and run_id not in among:
                continue
            deps = json.loads(depends_json or "[]")
            bad = [d for d in deps if statuses.get(d) in ("failed", "nan", "interrupted") or d not in statuses]
            if bad:
                self.finish(run_id, "failed", error=f"dependency {bad[0]} did not succeed ({statuses.get(bad[0], 'missing')})",
                            only_if="queued")
                continue
            if any(statuses.get(d) != "succeeded" for d in deps):
                continue
            now = time.time()
            me = liveness.current()
            with self._write("claiming a job") as conn:
                result = conn.execute(
                    runs.update()
                    .where(runs.c.run_id == run_id, runs.c.status == "queued")
                    .values(status="running", worker=worker, started_at=now, heartbeat_at=now, error=None,
                            worker_host=me.host, worker_pid=me.pid, worker_started=me.started,
                            worker_pidspace=me.pidspace, attempts=sa.func.coalesce(runs.c.attempts, 0) + 1)
                )
                if result.rowcount == 1:
                    # Epoch rows stay: a run resumed from its checkpoint keeps its curve so far. The
                    # executor clears them when a run starts over (see clear_epochs).
                    return JobSpec.from_json(spec_json)
        return None

    def pending(self, among: Iterable[str], statuses: Iterable[str] = ("queued", "running")) -> int:
        """How many of ``among`` are stored with one of ``statuses`` (default: still queued or running)."""
        ids = list(among)
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(runs)
                .where(runs.c.run_id.in_(ids), runs.c.status.in_(list(statuses)))
            ).scalar_one()

    # ------------------------------------------------------------------------------------ progress

    def heartbeat(self, run_id: str, progress: dict[str, Any] | None = None) -> None:
        """Mark a running run alive, optionally with its live progress (phase, epoch, metrics)."""
        values: dict[str, Any] = {"heartbeat_at": time.time()}
        if progress is not None:
            values["progress_json"] = json.dumps(progress)
        with self._write("recording a heartbeat") as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id, runs.c.status == "running").values(**values))

    def clear_epochs(self, run_id: str) -> None:
        """Forget a run's epoch rows (it starts over, with nothing to resume from)."""
        with self._write("clearing epochs") as conn:
            conn.execute(epochs.delete().where(epochs.c.run_id == run_id))

    def log_epoch(self, run_id: str, epoch: int, phase: str, metrics: dict[str, float], seconds: float) -> None:
        """Store one epoch's metrics (one transaction)."""
        row = dict(run_id=run_id, epoch=epoch, phase=phase, seconds=seconds,
                   train_loss=metrics.get("loss"), train_score=metrics.get("score"),
                   val_loss=metrics.get("val_loss"), val_score=metrics.get("val_score"))
        with self._write("storing an epoch") as conn:
            conn.execute(epochs.delete().where(epochs.c.run_id == run_id, epochs.c.epoch == epoch))
            conn.execute(epochs.insert().values(**row))
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(heartbeat_at=time.time()))

    def finish(self, run_id: str, status: str, only_if: str | None = "running", **results: Any) -> None:
        """Set a run's final status and results in one transaction.

        ``predictions`` (a :meth:`~transferlab.TaskHead.compact_predictions` dict, or None) goes to the
        predictions table in the same transaction; whatever an earlier attempt of the run stored there goes.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}. Received: status={status!r}")
        compact = results.pop("predictions", None)
        values = {k: (json.dumps(v) if k.endswith("_json") and not isinstance(v, str) else v) for k, v in results.items()}
        values.update(status=status, finished_at=time.time())
        query = runs.update().where(runs.c.run_id == run_id)
        if only_if:
            query = query.where(runs.c.status == only_if)
        with self._write("storing a finished run") as conn:
            if conn.execute(query.values(**values)).rowcount and "predictions" in self._tables:
                conn.execute(predictions.delete().where(predictions.c.run_id == run_id))
                if compact is not None:
                    conn.execute(predictions.insert().values(
                        run_id=run_id, kind=str(compact.get("kind", "")),
                        predictions_json=json.dumps(compact, separators=(",", ":"))))

    def recover_lost(self, requeue_among: Iterable[str] = (), timeout_s: float | None = None,
                     worker_prefix: str | None = None) -> dict[str, list[str]]:
        """Take back the running runs whose worker is lost: on this machine, one whose process is gone (at
        once, see :mod:`transferlab.liveness`); on another, one whose heartbeat is older than ``timeout_s``
        (default :func:`heartbeat_timeout`).

        Those among ``requeue_among`` (the caller's sweep) with claims left (:data:`MAX_ATTEMPTS`) go straight
        back to ``queued``, so no dependent sees them fail in between; the others become ``interrupted``.
        Returns ``{"requeued": [run ids], "interrupted": [run ids]}``.
        """
        timeout_s = heartbeat_timeout() if timeout_s is None else timeout_s
        query = sa.select(*_HOLDER_COLUMNS).where(runs.c.status == "running")
        if worker_prefix:
            query = query.where(runs.c.worker.like(f"{worker_prefix}%"))
        with self.engine.connect() as conn:
            held = conn.execute(query).mappings().all()
        now = time.time()
        lost = [(row, reason) for row in held if (reason := lost_reason(row, now, timeout_s))]
        return self._release(lost, set(requeue_among), "marking stale runs")

    def mark_stale(self, timeout_s: float | None = None, worker_prefix: str | None = None) -> int:
        """Running runs whose worker is lost (gone on this machine, or silent past the heartbeat timeout)
        become ``interrupted``. Returns how many."""
        released = self.recover_lost(timeout_s=timeout_s, worker_prefix=worker_prefix)
        return len(released["interrupted"])

    def _release(self, lost: list[tuple[Any, str]], requeue_among: set[str], doing: str) -> dict[str, list[str]]:
        """Queue again (or mark interrupted) each lost run, if it is still held as it was when read."""
        released: dict[str, list[str]] = {"requeued": [], "interrupted": []}
        if not lost:
            return released
        now = time.time()
        with self._write(doing) as conn:
            for row, reason in lost:
                # still running under the same holder, with no heartbeat since it was read
                query = runs.update().where(runs.c.run_id == row["run_id"], runs.c.status == "running",
                                            _same(runs.c.worker, row["worker"]),
                                            _same(runs.c.heartbeat_at, row["heartbeat_at"]))
                if row["run_id"] in requeue_among and (row["attempts"] or 0) < MAX_ATTEMPTS:
                    values = dict(status="queued", error=None, finished_at=None, **_NO_WORKER)
                    outcome = "requeued"
                else:
                    if row["run_id"] in requeue_among:
                        reason += f"; not retried again after {row['attempts']} attempts"
                    values = dict(status="interrupted", error=reason, finished_at=now)
                    outcome = "interrupted"
                if conn.execute(query.values(**values)).rowcount == 1:
                    released[outcome].append(row["run_id"])
        return released

    def cancel(self, run_ids: Iterable[str], reason: str = "cancelled by the user") -> int:
        """Queued or running runs among ``run_ids`` become ``interrupted``. Returns how many."""
        with self._write("cancelling runs") as conn:
            return conn.execute(
                runs.update().where(runs.c.run_id.in_(list(run_ids)), runs.c.status.in_(("queued", "running")))
                .values(status="interrupted", error=reason, finished_at=time.time())
            ).rowcount

    def interrupt_worker(self, worker: str, requeue_among: Iterable[str] = ()) -> int:
        """Runs held by a worker that is gone become ``interrupted``, or ``queued`` again when they are among
        ``requeue_among`` with claims left (as in :meth:`recover_lost`). Returns how many."""
        with self.engine.connect() as conn:
            held = conn.execute(sa.select(*_HOLDER_COLUMNS)
                                .where(runs.c.status == "running", runs.c.worker == worker)).mappings().all()
        released = self._release([(row, f"worker {worker} stopped") for row in held], set(requeue_among),
                                 "marking a worker's runs interrupted")
        return len(released["requeued"]) + len(released["interrupted"])

    # ------------------------------------------------------------------------------------ read

    def runs_frame(self, **filters: Any):
        """Runs as a pandas DataFrame; ``filters`` are column=value (lists allowed).

        A run stored ``running`` whose worker is lost (gone on this machine, or silent past the heartbeat
        timeout) reads as status ``stale``, with the reason in ``worker_lost`` (None for every other run).
        This only reads: the store is changed by :meth:`recover_lost`, never here, so a read-only viewer
        sees the truth without writing. ``status="stale"`` selects those runs.
        """
        import pandas as pd

        query = sa.select(*self._run_columns)
        wanted = None
        for column, value in filters.items():
            if value is None:
                continue
            if column == "status":
                wanted = set(value) if isinstance(value, (list, tuple, set)) else {value}
                value = (wanted - {STALE}) | ({"running"} if STALE in wanted else set())
            col = runs.c[column]
            query = query.where(col.in_(value) if isinstance(value, (list, tuple, set)) else col == value)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query.order_by(runs.c.created_at, runs.c.run_id), conn)
        if len(self._run_columns) < len(runs.columns):
            frame = frame.reindex(columns=[c.name for c in runs.columns])  # columns newer than the store: empty
        frame = _mark_lost(frame)
        # SQLite keeps booleans as 0/1 and pandas reads a column with NULLs as floats: True, False or None
        known = [known_bool(v) for v in frame["still_improving"]]
        frame["still_improving"] = pd.Series(known, index=frame.index, dtype=object)
        if wanted is not None and not frame["status"].isin(wanted).all():
            frame = frame[frame["status"].isin(wanted)].reset_index(drop=True)
        return frame

    def epochs_frame(self, run_ids: Iterable[str] | None = None):
        """Per-epoch metrics as a pandas DataFrame."""
        import pandas as pd

        query = sa.select(epochs).order_by(epochs.c.run_id, epochs.c.epoch)
        if run_ids is not None:
            query = query.where(epochs.c.run_id.in_(list(run_ids)))
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def get(self, run_id: str) -> dict[str, Any] | None:
        """One run as a dict, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*self._run_columns).where(runs.c.run_id == run_id)).mappings().first()
        return {**dict.fromkeys(runs.c.keys()), **row} if row else None

    # ------------------------------------------------------------------------------------ predictions, models

    def _has_table(self, name: str) -> bool:
        """Whether this store has table ``name``: one written by an older release and opened read-only may lack
        the predictions and models tables. Asked again while it lacks one (a writer may have added it since)."""
        if name not in self._tables:
            with self.engine.connect() as conn:
                self._tables = set(sa.inspect(conn).get_table_names())
        return name in self._tables

    def predictions(self, run_id: str) -> dict[str, Any] | None:
        """A run's compact test predictions (:meth:`~transferlab.TaskHead.compact_predictions`), or None:
        a run that did not succeed, one stored before predictions were kept, or a store without the table."""
        if not self._has_table("predictions"):
            return None
        with self.engine.connect() as conn:
            text = conn.execute(sa.select(predictions.c.predictions_json)
                                .where(predictions.c.run_id == run_id)).scalar()
        return json.loads(text) if text else None

    def model(self, run_id: str) -> dict[str, Any] | None:
        """The kept model of a run (its row of the models table: ``path`` relative to the home, ``sha256``
        of its weights, ``bytes``, ``reason``, ``score``, ``created_at``), or None."""
        if not self._has_table("models"):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(models).where(models.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def models_frame(self):
        """Every kept model as a pandas DataFrame (the models table's columns; empty when none is kept)."""
        import pandas as pd

        if not self._has_table("models"):
            return pd.DataFrame(columns=[c.name for c in models.columns])
        with self.engine.connect() as conn:
            return pd.read_sql(sa.select(models).order_by(models.c.created_at, models.c.run_id), conn)

    def add_model(self, run_id: str, path: str, sha256: str, size: int, reason: str, score: float | None,
                  created_at: float | None = None) -> None:
        """Register the kept model of ``run_id``, replacing an earlier one: ``path`` relative to the home,
        the ``sha256`` of its weights file, its ``size`` in bytes, ``reason`` (``best`` or ``asked``)."""
        row = dict(run_id=run_id, path=path, sha256=sha256, bytes=int(size), reason=reason,
                   score=None if score is None else float(score), created_at=created_at or time.time())
        with self._write("registering a kept model") as conn:
            conn.execute(models.delete().where(models.c.run_id == run_id))
            conn.execute(models.insert().values(**row))

    def drop_model(self, run_id: str) -> bool:
        """Forget the kept model of ``run_id`` (its files are the caller's to remove); whether there was one."""
        if not self._has_table("models"):
            return False
        with self._write("forgetting a kept model") as conn:
            return conn.execute(models.delete().where(models.c.run_id == run_id)).rowcount > 0


#: what a lost-worker check reads of a running run
_HOLDER_COLUMNS = (runs.c.run_id, runs.c.worker, runs.c.heartbeat_at, runs.c.started_at, runs.c.attempts,
                   runs.c.worker_host, runs.c.worker_pid, runs.c.worker_started, runs.c.worker_pidspace)
#: a run that no worker holds
_NO_WORKER = dict(worker=None, worker_host=None, worker_pid=None, worker_started=None, worker_pidspace=None)


def _same(column, value):
    """``column = value``, where None matches NULL."""
    return column.is_(None) if value is None else column == value


def _known(value: Any) -> Any:
    """None for a missing value (SQL NULL, or pandas' NaN), else the value."""
    return None if value is None or (isinstance(value, float) and value != value) else value


def lost_reason(row: Any, now: float, timeout_s: float) -> str | None:
    """Why the worker holding running run ``row`` (a mapping of its columns) is taken as lost, or None.

    A worker process on this machine that is gone (by its pid and start time) is lost at once; one that is
    alive is not lost, however late its heartbeat (a store busy with other writers can hold heartbeats back,
    and taking its run would train the job twice at once); any other worker, elsewhere, whose heartbeat is
    older than ``timeout_s`` seconds is lost.
    """
    pid = _known(row["worker_pid"])
    holder = liveness.ProcessIdentity(host=_known(row["worker_host"]), pid=None if pid is None else int(pid),
                                      started=_known(row["worker_started"]), pidspace=_known(row["worker_pidspace"]))
    verdict = liveness.state(holder)
    if verdict == liveness.DEAD:
        return f"worker {row['worker']} stopped: its process (pid {holder.pid}) on this machine is gone"
    if verdict == liveness.ALIVE:
        return None
    beat = _known(row["heartbeat_at"]) or _known(row["started_at"])
    if beat is None or beat < now - timeout_s:
        silent = f"{now - beat:.0f} s" if beat is not None else "ever"
        return f"worker stopped (heartbeat lost: {row['worker']} silent for {silent}, timeout {timeout_s:g} s)"
    return None


def _mark_lost(frame):
    """``runs_frame``'s read-only liveness: running runs with a lost worker read ``stale``, why in ``worker_lost``."""
    frame["worker_lost"] = None
    running = frame.index[frame["status"] == "running"]
    if len(running):
        now, timeout_s = time.time(), heartbeat_timeout()
        for index in running:
            reason = lost_reason(frame.loc[index], now, timeout_s)
            if reason:
                frame.loc[index, ["status", "worker_lost"]] = [STALE, reason]
    return frame


def _insert_ignoring_conflict(conn, values: dict[str, Any]):
    """INSERT of a run that does nothing when the run id already exists (SQLite and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        return runs.insert().values(**values)
    return insert(runs).values(**values).on_conflict_do_nothing(index_elements=["run_id"])


def _safe_url(url: str) -> str:
    """The store URL for messages: no password or secret query values, a SQLite store by its file name
    (:func:`transferlab.redact.redact_url`)."""
    from transferlab.redact import redact_url

    return redact_url(url)


def _safe_text(exc: object) -> str:
    """A driver's error text for messages, with any URL credentials or store secrets in it masked."""
    from transferlab.redact import redact_text

    return redact_text(str(exc), paths=False)


#: columns renamed since the first release: (table, old name, new name)
RENAMED_COLUMNS = (("runs", "test_accuracy", "score"), ("epochs", "train_accuracy", "train_score"),
                   ("epochs", "val_accuracy", "val_score"))


def _refuse_outdated(conn, url: str) -> None:
    """A read-only store cannot be migrated: say how to update it instead of failing on a missing column."""
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    for table_name, old, new in RENAMED_COLUMNS:
        if table_name in tables and old in {c["name"] for c in inspector.get_columns(table_name)}:
            raise StoreError(
                f"The store at {_safe_url(url)} was written by an older transferlab (column {table_name}.{old} is now "
                f"{new}) and is opened read-only, so it cannot be updated. Open it once writable, e.g. with "
                "`transferlab runs` and TRANSFERLAB_READ_ONLY unset, then serve it read-only again."
            )


def _present_run_columns(conn) -> list[Any]:
    """The columns of ``runs`` this store has: all of them once migrated; a read-only store written by an
    earlier release may lack the newest nullable ones, which then read as empty."""
    inspector = sa.inspect(conn)
    if "runs" not in inspector.get_table_names():
        return list(runs.columns)
    present = {c["name"] for c in inspector.get_columns("runs")}
    return [column for column in runs.columns if column.name in present]


def _add_missing_columns(conn) -> None:
    """Bring an older store of the same schema up to date: rename the columns renamed since (the task's
    score was stored as ``test_accuracy`` even when it was mAP), then add the nullable columns it lacks."""
    for table_name, old, new in RENAMED_COLUMNS:
        present = {c["name"] for c in sa.inspect(conn).get_columns(table_name)}
        if old in present and new not in present:
            conn.execute(sa.text(f'ALTER TABLE {table_name} RENAME COLUMN "{old}" TO "{new}"'))
    for table in (runs, epochs):
        present = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


def _merged_spec(job: JobSpec, stored_json: str | None) -> str:
    """The spec a re-submitted run is stored with: the submitter's (its data location), keeping the stored
    spec's wish to keep the model (``keep_model``): a sweep submitted again without ``--keep-models`` never
    withdraws what an earlier one asked for."""
    try:
        stored = json.loads(stored_json) if stored_json else {}
    except ValueError:
        stored = {}
    if not job.keep_model and isinstance(stored, dict) and stored.get("keep_model") is True:
        job = dataclasses.replace(job, keep_model=True)
    return job.canonical_json()


def _job_columns(job: JobSpec) -> dict[str, Any]:
    return dict(
        run_id=job.job_id, spec_json=job.canonical_json(), kind=job.kind, task=job.task, backbone=job.backbone,
        weights=job.weights, strategy=job.strategy, source=job.source, examples_per_class=job.examples_per_class,
        fraction=job.fraction, seed=job.seed, input_size=job.input_size, depends_on=json.dumps(sorted(job.depends_on)),
        data_version=job.data_version,
    )


def worker_name(index: int = 0) -> str:
    """A worker's name: host, pid and index."""
    return f"{socket.gethostname()}:{os.getpid()}:{index}"
