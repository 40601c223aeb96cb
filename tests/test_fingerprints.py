"""Data versions: an unreadable file counts as missing (as a vanished one does), and a task's reused
version belongs to that task's data, never to an earlier fingerprint that happened to share its id."""
from __future__ import annotations

import builtins
import functools
import os

import numpy as np
from PIL import Image

from transferlab import fingerprints
from transferlab.specs import TaskSpec


def _folder(root):
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4, 3), 40 * i, np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_an_unreadable_file_counts_as_missing_instead_of_refusing_the_data(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d")
    readable = fingerprints.fingerprint_class_folders(root)
    locked = os.path.realpath(root / "b" / "2.png")
    real_open = builtins.open

    def refusing_open(path, *args, **kwargs):
        if os.path.realpath(os.fspath(path)) == locked:
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    fingerprints._BYTE_HASHES.clear()
    monkeypatch.setattr(fingerprints, "open", refusing_open, raising=False)
    unreadable = fingerprints.fingerprint_class_folders(root)
    assert unreadable != readable and len(unreadable) == fingerprints.VERSION_DIGITS
    monkeypatch.undo()
    fingerprints._BYTE_HASHES.clear()
    assert fingerprints.fingerprint_class_folders(root) == readable  # readable again: the version comes back


def _load():
    raise AssertionError("not loaded")


def test_a_reused_version_belongs_to_the_task_asking():
    fingerprints.forget_data_versions()
    for i in range(20):  # freed partials' ids are reused by CPython: each task must still get its own version
        task = TaskSpec(name="data.birds", description="d", load=_load, num_classes=None,
                        fingerprint=functools.partial(str, f"version {i}"), data=f"folder:/p{i}/birds")
        expected = fingerprints._normalise(task.name, f"version {i}")
        assert fingerprints.task_data_version(task) == expected
        del task
