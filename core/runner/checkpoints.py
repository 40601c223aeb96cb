"""Checkpoints and resume: one checkpoint per finished phase, and an atomic backup of the phase in progress at the
end of an epoch once :func:`backup_seconds` of training have passed since the last one, both keyed by the data they
were trained on. Removed when a run ends."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from transferlab.errors import UserError
from transferlab.jobs import JobSpec
from transferlab.runner.assembly import load_weights_strictly

#: seconds of training a kill may lose at most (plus the epoch in progress): a phase writes its backup at the end of
#: the first epoch past this since its start or its last backup. Writing every epoch cost a short run ~0.2 s per
#: epoch of a 3.4M-parameter model (weights, their sha256, the best epoch's weights) for epochs of about a second.
BACKUP_SECONDS = 10.0


def backup_seconds() -> float:
    """Seconds between epoch backups: ``TRANSFERLAB_BACKUP_SECONDS`` (``0``: every epoch), else
    :data:`BACKUP_SECONDS`, or every epoch under ``TRANSFERLAB_REUSE=off`` (the runner before, for baselines)."""
    from transferlab.runner.shared_head import reuse_enabled

    raw = os.environ.get("TRANSFERLAB_BACKUP_SECONDS", "").strip()
    if not raw:
        return BACKUP_SECONDS if reuse_enabled() else 0.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # NaN fails this too
        raise UserError("TRANSFERLAB_BACKUP_SECONDS must be a number of seconds, 0 or more (0: every epoch; default "
                        f"{BACKUP_SECONDS:g}), or unset. Received: TRANSFERLAB_BACKUP_SECONDS={raw!r}")
    return value


def _clock() -> float:
    """Seconds on a monotonic clock (one name for the backup interval's readings, so a test can set them)."""
    return time.monotonic()


def checkpoint_dir(job: JobSpec, namespace: str = "") -> Path:
    """Where an unfinished run keeps its checkpoints: one per finished phase, and Keras
    ``BackupAndRestore``'s per-epoch backup of the phase in progress. Removed when the run ends.

    ``namespace`` separates stores that share a home (the executor passes a hash of the store's URL),
    so two stores running the same job never touch each other's checkpoints.
    """
    from transferlab.paths import cache_dir

    return cache_dir("checkpoints") / (f"{namespace}-{job.job_id}" if namespace else job.job_id)


def has_checkpoint(job: JobSpec, namespace: str = "") -> bool:
    """Whether an interrupted attempt of ``job`` left something to resume from."""
    folder = checkpoint_dir(job, namespace)
    return folder.is_dir() and any(folder.iterdir())


class Checkpoints:
    """The checkpoints of one attempt at a job.

    ``identity`` names what the checkpoints were trained on (training, validation and test indices);
    a checkpoint from another identity, e.g. a folder dataset that gained files, is never resumed.
    """

    def __init__(self, job: JobSpec, namespace: str, identity: str):
        self.folder, self.identity = checkpoint_dir(job, namespace), identity

    def _files(self, index: int) -> tuple[Path, Path]:
        return self.folder / f"phase-{index}.weights.h5", self.folder / f"phase-{index}.json"

    def save(self, model: Any, index: int, record: dict[str, Any]) -> None:
        """Weights and record of a finished phase, each written atomically (the record last: it marks done)."""
        import json

        from transferlab.safe_io import VerifiedFile, atomic_path

        weights, done = self._files(index)
        digest = VerifiedFile(weights).write(model.save_weights)
        with atomic_path(done) as tmp:
            tmp.write_text(json.dumps({"record": record, "weights_sha256": digest, "identity": self.identity}))

    def load(self, model: Any, index: int, backbone_name: str) -> dict[str, Any] | None:
        """The record of a phase finished by an earlier attempt, with its weights loaded; None when there is
        none, it was trained on other data, or its files fail their hash check (the phase then runs again)."""
        import json

        from transferlab.safe_io import VerifiedFile

        weights, done = self._files(index)
        if not (weights.is_file() and done.is_file()):
            return None
        try:
            saved = json.loads(done.read_text())
            if saved.get("identity") != self.identity or not VerifiedFile(weights).check(saved["weights_sha256"]):
                return None
            load_weights_strictly(model, weights, backbone_name)
        except (OSError, ValueError, KeyError, UserError):
            return None
        return saved["record"]

    def forget_from(self, index: int) -> None:
        """Drop the checkpoints of phase ``index`` and every later one: they grew from an earlier state."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            number = path.name.split("-")[1].split(".")[0] if path.name.startswith("phase-") else ""
            if number.isdigit() and int(number) >= index:
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def backup(self, index: int, watch: Any = None, tag: str = ""):
        """Keras' epoch backup of phase ``index`` (at most every :func:`backup_seconds`): an interrupted fit
        continues after the epoch of its last backup.

        ``tag`` keeps backups of different models of one phase apart (``features``: the head model a head
        phase trains on cached features), so an attempt never loads the other's backup into the wrong model.

        ``watch`` (:func:`transferlab.runner.budget.phase_watch`) is backed up with each epoch: its
        validation losses, its early-stopping counters and its best weights, so that a resumed phase stops
        (and restores) exactly where an uninterrupted one would; it must come before this callback in
        ``fit``'s list, so each backup holds the watch's view of the same epoch."""
        suffix = f"-{tag}" if tag else ""
        return _backup_callback(self.folder / f"phase-{index}{suffix}-backup", self.identity, watch, backup_seconds())


def _backup_callback(folder: Path, identity: str, watch: Any = None, every_seconds: float = 0.0):
    """A BackupAndRestore callback writing to ``folder`` at the end of an epoch once ``every_seconds`` have passed
    since the phase began or its last backup (see AtomicBackupAndRestore below)."""
    import json

    import keras

    from transferlab.runner import budget
    from transferlab.safe_io import VerifiedFile, atomic_path

    class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
        """BackupAndRestore whose files are written atomically and hash-checked before they are loaded.

        Keras writes the backup in place, so a kill in the middle of a write would leave a torn file that
        fails (or half-succeeds) to load. Here the weights and then the epoch record (holding the weights'
        sha256 and the data identity) are each renamed into place; a backup that does not check out is
        dropped and the phase starts over from its beginning, with nothing half-loaded.
        """

        best_saved: tuple[int, str, str] | None = None  # (epoch, file name, sha256) of the best weights on disk
        last_saved: float = 0.0  # _clock() at the phase's start or its last backup

        def on_epoch_end(self, epoch, logs=None):
            # Keras saves every epoch or every N batches; neither bounds the work a kill loses in seconds, which
            # is what matters when epochs take from milliseconds to minutes. Same bookkeeping as Keras' own.
            self._current_epoch = epoch + 1
            self._last_batch_seen = 0
            if _clock() - self.last_saved >= every_seconds:
                self._save_model()
                self.last_saved = _clock()

        def _save_model(self):
            digest = VerifiedFile(self._weights_path).write(self.model.save_weights)
            record = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights_sha256": digest,
                      "identity": identity}
            if watch is not None:
                record["watch"] = budget.state(watch)
                if watch.best_weights is not None:
                    # one file per best epoch, the old one removed only once the record naming the new one is
                    # in place: a kill between the two leaves a record whose files all check out
                    if self.best_saved is None or self.best_saved[0] != watch.best_epoch:
                        name = f"best-{watch.best_epoch}.npz"
                        sha = budget.write_weights(Path(self.backup_dir) / name, watch.best_weights)
                        self.best_saved = (watch.best_epoch, name, sha)
                    record["watch_best"] = {"file": self.best_saved[1], "sha256": self.best_saved[2]}
            with atomic_path(self._training_metadata_path) as tmp:
                tmp.write_text(json.dumps(record))
            if watch is not None:
                for old in Path(self.backup_dir).glob("best-*.npz*"):
                    if self.best_saved is None or not old.name.startswith(self.best_saved[1]):
                        old.unlink(missing_ok=True)

        def on_train_begin(self, logs=None):
            self.model._initial_epoch = None
            self.best_saved = None
            self.last_saved = _clock()
            best = None
            try:
                record = json.loads(Path(self._training_metadata_path).read_text())
                usable = (record["identity"] == identity
                          and VerifiedFile(self._weights_path).check(record["weights_sha256"]))
                if usable and watch is not None and record.get("watch_best"):
                    saved = record["watch_best"]
                    best = budget.read_weights(Path(self.backup_dir) / saved["file"], saved["sha256"])
                    usable = best is not None
                    self.best_saved = (record["watch"]["best_epoch"], saved["file"], saved["sha256"])
            except (OSError, ValueError, KeyError):
                usable = False
            if usable:
                self._load_model()
                if watch is not None and "watch" in record:  # a backup written before watches has none
                    budget.restore(watch, record["watch"], best)
                    if watch.stopped:  # it had stopped early: nothing is left to train, only the restore
                        self.model._initial_epoch = self.params["epochs"]
            else:
                self.best_saved = None
                shutil.rmtree(self.backup_dir, ignore_errors=True)

        def on_train_end(self, logs=None):
            # Keras leaves the restored epoch on the model, and fit() prefers it to its own initial_epoch:
            # without this, the next phase would start at this phase's restored epoch.
            self.model._initial_epoch = None
            super().on_train_end(logs)

    return AtomicBackupAndRestore(str(folder), save_freq="epoch", delete_checkpoint=True)
