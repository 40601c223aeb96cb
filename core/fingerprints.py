"""Data fingerprints: a short content hash of the files a task reads, part of every job id and cache key.

A fingerprint (a *data version*, 12 hex digits) covers the file list: each file's path relative to the
dataset's root, its size, and the sha256 of its bytes while the files together stay under
:data:`FINGERPRINT_BYTES_LIMIT` (hashed once per file and state, then remembered); above it, each file's
modification time stands in for its bytes, so a bigger dataset is fingerprinted from one ``stat`` per file.
The two kinds are told apart in the hash, so they never collide. With bytes hashed, a copy of the data
elsewhere (another machine, another folder) has the same version and finds the same runs; a file edited,
added, removed, renamed or moved to another class changes it.

Plugins use the public helpers :func:`fingerprint_class_folders`, :func:`fingerprint_tree`,
:func:`fingerprint_files` and :func:`fingerprint_tfds` as a task's ``TaskSpec.fingerprint``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from transferlab.errors import DatasetUnavailableError, UserError

#: total bytes up to which every file's bytes are hashed; above it, sizes and modification times only
FINGERPRINT_BYTES_LIMIT = 256 * 2**20
#: hex digits of a data version
VERSION_DIGITS = 12

# (real path, size, mtime_ns, inode) -> sha256 of the bytes: a file is read again only once it changed
_BYTE_HASHES: dict[tuple[str, int, int, int], str] = {}


def _file_sha256(path: str, stat: os.stat_result) -> str | None:
    """The sha256 of a file's bytes, or None when it cannot be read: the scans skip such a file (up to
    their share of bad files), so the version counts it as missing rather than refusing the whole data."""
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _BYTE_HASHES:
        try:
            with open(path, "rb") as fh:
                _BYTE_HASHES[key] = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError:
            return None  # not remembered: once readable, its bytes count
    return _BYTE_HASHES[key]


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:  # gone, a broken link: listed as missing, so its return changes the version too
        return None


def fingerprint_entries(entries: Sequence[tuple[str, str, Any]], extra: Any = None) -> str:
    """The data version of ``entries``, each ``(path on disk, name in the dataset, label)``.

    ``name`` is what identifies the file inside the dataset (its path relative to the root), ``label`` its
    class (or None when the name implies it). ``extra`` is any JSON-able value that also belongs to the
    data's identity (class names, a split, a layout). Order does not matter. A file that cannot be
    ``stat``-ed, or (while bytes are hashed) read, counts as missing.
    """
    stats = [_stat(path) for path, _, _ in entries]
    total = sum(s.st_size for s in stats if s is not None)
    by_bytes = total <= FINGERPRINT_BYTES_LIMIT
    rows = []
    for (path, name, label), stat in zip(entries, stats):
        digest = _file_sha256(path, stat) if stat is not None and by_bytes else None
        if stat is None or (by_bytes and digest is None):
            rows.append([name, label, None, None])
        else:
            rows.append([name, label, stat.st_size, digest if by_bytes else stat.st_mtime_ns])
    rows.sort(key=lambda row: (row[0], str(row[1])))
    payload = {"kind": "bytes" if by_bytes else "stat", "files": rows, "extra": extra}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:VERSION_DIGITS]


def fingerprint_files(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None,
                      labels: Iterable[Any] | None = None, extra: Any = None) -> str:
    """The data version of a list of files (with their ``labels``, when the names do not imply them), named
    by their path relative to ``root`` (default: their common folder), so the same files elsewhere match."""
    paths = [os.fspath(p) for p in paths]
    labels = list(labels) if labels is not None else [None] * len(paths)
    if len(labels) != len(paths):
        raise UserError(f"fingerprint_files got {len(paths)} paths but {len(labels)} labels.")
    if root is None:
        root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]) if paths else "."
    base = os.path.abspath(os.fspath(root))
    names = [os.path.relpath(os.path.abspath(p), base).replace(os.sep, "/") for p in paths]
    return fingerprint_entries(list(zip(paths, names, labels)), extra)


def _require_folder(root: str | os.PathLike, what: str) -> Path:
    path = Path(os.path.abspath(os.fspath(root)))
    if not path.exists():
        raise DatasetUnavailableError(f"{what} not found: {path}. Check the path (it must exist on this machine).")
    if not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder.")
    return path


def fingerprint_tree(root: str | os.PathLike, include: Callable[[str], bool] | None = None, extra: Any = None) -> str:
    """The data version of every visible file under ``root`` (hidden files and folders are left out, as
    the scans leave them), or of those whose file name ``include(name)`` accepts."""
    from transferlab.image_files import walk_files

    base = _require_folder(root, "Data folder")
    files = [f for f in walk_files(base) if include is None or include(os.path.basename(f))]
    return fingerprint_files(files, base, extra=extra)


def fingerprint_class_folders(root: str | os.PathLike) -> str:
    """The data version of a one-folder-per-class image tree, listed exactly as
    :func:`transferlab.image_files.scan_class_folders` lists it (each class folder walked on its own, so a
    class folder that is a link is followed as the scan follows it). A file moved to another class changes
    the version: its name starts with its class folder."""
    from transferlab.image_files import is_hidden, is_image_name, walk_files

    base = _require_folder(root, "Image folder")
    entries = []
    for name in sorted(e for e in os.listdir(base) if not is_hidden(e)):
        folder = base / name
        if not folder.is_dir():
            continue
        for path in walk_files(folder):
            if is_image_name(os.path.basename(path)):
                relative = os.path.relpath(path, folder).replace(os.sep, "/")
                entries.append((path, f"{name}/{relative}", None))
    return fingerprint_entries(entries, extra={"layout": "class folders"})


def tfds_data_dir() -> Path:
    """Where tensorflow-datasets keeps prepared data: ``TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")


def tfds_prepared_version(name: str) -> Path | None:
    """The newest prepared version folder of tensorflow-datasets' ``name`` (``cifar10`` or ``voc/2007``), the
    one holding ``dataset_info.json`` (written last), or None when it is not prepared here. No TensorFlow."""
    folder = tfds_data_dir() / name
    found = sorted(folder.glob("*/dataset_info.json")) + sorted(folder.glob("*/*/dataset_info.json"))
    if not found:
        return None

    def version_key(info: Path) -> tuple[int, ...]:
        try:
            return tuple(int(part) for part in info.parent.name.split("."))
        except ValueError:
            return (-1,)

    return max(found, key=version_key).parent


def fingerprint_tfds(name: str, split: str | None = None) -> str | None:
    """The data version of a prepared tensorflow-datasets set: its name, prepared version, split and
    ``dataset_info.json`` (which records every split's shard lengths and sizes); None when it is not
    prepared here (it downloads on first use, and is fingerprinted once it is here)."""
    version = tfds_prepared_version(name)
    if version is None:
        return None
    info = version / "dataset_info.json"
    return fingerprint_entries([(str(info), "dataset_info.json", None)],
                               extra={"tfds": name, "version": version.name, "split": split})


# ------------------------------------------------------------------------------------------ per task

#: seconds a task's data version is reused before its ``fingerprint()`` runs again: a sweep makes many
#: jobs of one task at once, and one walk of the files serves them all
VERSION_REUSE_S = 5.0
# (task name, data location) -> (when, version, the fingerprint asked): the fingerprint is kept, so it is
# the one reused for (an id could belong to a freed one's successor), and a replaced one is asked again
_VERSIONS: dict[tuple[str, str | None], tuple[float, str | None, Any]] = {}
_HEX = frozenset("0123456789abcdef")


def _normalise(task_name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise UserError(f"Task {task_name!r}: fingerprint() must return a string or None. Received: {value!r}")
    if len(value) == VERSION_DIGITS and set(value) <= _HEX:
        return value
    return hashlib.sha256(value.encode()).hexdigest()[:VERSION_DIGITS]  # a plugin's own id, kept short


def task_data_version(task: Any, fresh: bool = False) -> str | None:
    """The data version of ``task`` (a ``TaskSpec``): its ``fingerprint()`` (None without one), as 12 hex
    digits (a plugin's other string is hashed to that). Reused for :data:`VERSION_REUSE_S` seconds unless
    ``fresh``; the runner always asks fresh."""
    import time

    fingerprint = getattr(task, "fingerprint", None)
    if fingerprint is None:
        return None
    key = (task.name, getattr(task, "data", None))
    now = time.monotonic()
    kept = _VERSIONS.get(key)
    if not fresh and kept is not None and kept[2] is fingerprint and now - kept[0] < VERSION_REUSE_S:
        return kept[1]
    try:
        value = _normalise(task.name, fingerprint())
    except UserError:
        raise
    except Exception as exc:  # plugin code: say whose
        from transferlab.isolation import short_error

        raise UserError(f"Task {task.name!r}: its fingerprint() raised {short_error(exc)}. Check the task's data; "
                        "the plugin that registers it may need fixing.") from None
    _VERSIONS[key] = (time.monotonic(), value, fingerprint)
    return value


def forget_data_versions() -> None:
    """Forget every reused data version (a long-lived process, such as the dashboard, before it plans)."""
    _VERSIONS.clear()
