"""Checkpoints and resume: one checkpoint per finished phase, and an atomic per-epoch backup of the phase in
progress, both keyed by the data they were trained on. Removed when a run ends."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from transferlab.errors import UserError
from transferlab.jobs import JobSpec
from transferlab.runner.assembly import load_weights_strictly

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

    def backup(self, index: int):
        """Keras' per-epoch backup of phase ``index``: an interrupted fit continues after its last finished epoch."""
        return _backup_callback(self.folder / f"phase-{index}-backup", self.identity)


def _backup_callback(folder: Path, identity: str):
    """A BackupAndRestore callback writing to ``folder`` (see AtomicBackupAndRestore below)."""
    import json

    import keras

    from transferlab.safe_io import VerifiedFile, atomic_path

    class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
        """BackupAndRestore whose files are written atomically and hash-checked before they are loaded.

        Keras writes the backup in place, so a kill in the middle of a write would leave a torn file that
        fails (or half-succeeds) to load. Here the weights and then the epoch record (holding the weights'
        sha256 and the data identity) are each renamed into place; a backup that does not check out is
        dropped and the phase starts over from its beginning, with nothing half-loaded.
        """

        def _save_model(self):
            digest = VerifiedFile(self._weights_path).write(self.model.save_weights)
            with atomic_path(self._training_metadata_path) as tmp:
                tmp.write_text(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen,
                                           "weights_sha256": digest, "identity": identity}))

        def on_train_begin(self, logs=None):
            self.model._initial_epoch = None
            try:
                record = json.loads(Path(self._training_metadata_path).read_text())
                usable = (record["identity"] == identity
                          and VerifiedFile(self._weights_path).check(record["weights_sha256"]))
            except (OSError, ValueError, KeyError):
                usable = False
            if usable:
                self._load_model()
            else:
                shutil.rmtree(self.backup_dir, ignore_errors=True)

        def on_train_end(self, logs=None):
            # Keras leaves the restored epoch on the model, and fit() prefers it to its own initial_epoch:
            # without this, the next phase would start at this phase's restored epoch.
            self.model._initial_epoch = None
            super().on_train_end(logs)

    return AtomicBackupAndRestore(str(folder), save_freq="epoch", delete_checkpoint=True)
