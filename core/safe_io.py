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
from typing import Iterator

from transferlab.errors import UserError, WeightsError


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


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: no other global can be reached."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
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
