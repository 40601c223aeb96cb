"""Files written atomically and read only after their hash is checked."""
from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Literal

from transferlab.errors import DatasetUnavailableError, UserError, WeightsError


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success fsync it and rename it into place.

    A crash leaves either the old file or none, never a half-written one. The temporary name keeps
    the final suffix because Keras checks ``.weights.h5`` in file names.
    """
    final = Path(final)
    tmp: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=".tmp-", suffix="".join(final.suffixes))
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise UserError(
                f"Cannot write {final}: {os.strerror(exc.errno)}. Nothing was left half-written. Free space or fix the "
                "permissions there, or point TRANSFERLAB_HOME at a writable disk with room."
            ) from None
        raise
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def check_sha256(path: str | os.PathLike, expected: str, what: str) -> None:
    """Raise :class:`WeightsError` unless the file's sha256 is ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"{what} at {path} has sha256 {actual}, expected {expected}. The file is altered, truncated or "
            "a different version: reinstall the package or delete the file so it is rebuilt."
        )


class VerifiedFile:
    """A file written atomically with its sha256 kept beside it (``<name>.sha256``), read only once the
    hash checks out.

    The one helper for "write atomically, keep a hash, verify before reading": feature caches,
    converted weights and downloaded archives use it. ``write`` puts the file and then its hash into
    place, each by an atomic rename, so a crash leaves no file, a file without a hash (not verified:
    rebuilt), or both. A caller that keeps the hash elsewhere (a JSON record, a store row) passes it to
    :meth:`status` / :meth:`check` as ``expected``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.sidecar = self.path.with_name(self.path.name + ".sha256")

    def __repr__(self) -> str:
        return f"VerifiedFile({str(self.path)!r})"

    def write(self, write: Callable[[Path], object]) -> str:
        """Call ``write(tmp)`` to write the file to a temporary path beside it, rename it into place,
        then write its sha256 beside it the same way; return the sha256."""
        with atomic_path(self.path) as tmp:
            write(tmp)
        digest = sha256_file(self.path)
        with atomic_path(self.sidecar) as tmp:
            tmp.write_text(digest)
        return digest

    def status(self, expected: str | None = None) -> Literal["ok", "missing", "altered"]:
        """``ok`` when the file's sha256 is ``expected`` (default: the hash kept beside it); ``missing``
        when the file, or the kept hash that is needed, is absent; ``altered`` when the hashes differ."""
        if not self.path.is_file():
            return "missing"
        if expected is None:
            if not self.sidecar.is_file():
                return "missing"
            expected = self.sidecar.read_text().strip()
        return "ok" if sha256_file(self.path) == expected else "altered"

    def check(self, expected: str | None = None) -> bool:
        """Whether the file is there and its sha256 is ``expected`` (default: the hash kept beside it)."""
        return self.status(expected) == "ok"

    def adopt(self) -> bool:
        """For a file written by someone else (a download): keep its sha256 beside it the first time,
        and on every later call check it against that. True when it matches (or was just recorded)."""
        digest = sha256_file(self.path)
        if self.sidecar.is_file():
            return self.sidecar.read_text().strip() == digest
        with atomic_path(self.sidecar) as tmp:
            tmp.write_text(digest)
        return True


def checked_download(
    url: str,
    cache_subdir: str,
    file_name: str | None = None,
    sha256: str | None = None,
    unavailable: Callable[[str], Exception] | None = None,
) -> Path:
    """Download ``url`` once into the Keras cache (``keras.utils.get_file``) and return its path, checked.

    With ``sha256`` the file must have that hash; without it, the hash is recorded beside the file at
    the first download and checked at every later call (:meth:`VerifiedFile.adopt`), so an archive
    that is truncated or altered afterwards is reported instead of read. A failed download raises
    ``unavailable(reason)`` (``reason`` names the exception), by default a DatasetUnavailableError;
    a file that fails its check raises UserError.
    """
    import keras

    name = file_name or url.rsplit("/", 1)[1]
    try:
        path = Path(keras.utils.get_file(name, url, cache_subdir=cache_subdir))
    except Exception as exc:
        reason = type(exc).__name__
        if unavailable is not None:
            raise unavailable(reason) from None
        raise DatasetUnavailableError(
            f"Downloading {url} failed ({reason}). Run this online once; the file is then kept in the Keras cache."
        ) from None
    verified = VerifiedFile(path)
    if sha256 is not None:
        if not verified.check(sha256):
            raise UserError(
                f"{path} does not have the published sha256 {sha256} (truncated or altered). Delete it to download again."
            )
    elif not verified.adopt():
        raise UserError(f"{path} changed since it was downloaded (sha256 mismatch). Delete it to download again.")
    return path


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: no other global can be reached."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        """Resolve only the numpy globals an array pickle needs; refuse every other."""
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name}: only numpy arrays are allowed")
        import numpy as np

        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def load_numpy_pickle(path: str | os.PathLike, sha256: str):
    """Load a (gzipped) pickled numpy array from a pinned file: hash first, then a numpy-only unpickler."""
    check_sha256(path, sha256, "Data file")
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return _NumpyOnlyUnpickler(io.BytesIO(raw)).load()
