"""The verified-file helper: atomic write, sha256 beside the file, checked before reading; and checked downloads."""
from __future__ import annotations

import sys
import types

import pytest

from transferlab.errors import DatasetUnavailableError, UserError
from transferlab.safe_io import VerifiedFile, checked_download, sha256_file


def test_write_keeps_the_hash_beside_the_file(tmp_path):
    cache = VerifiedFile(tmp_path / "sub" / "features.npy")
    digest = cache.write(lambda tmp: tmp.write_bytes(b"abc"))
    assert cache.path.read_bytes() == b"abc" and cache.sidecar.name == "features.npy.sha256"
    assert cache.sidecar.read_text() == digest == sha256_file(cache.path)
    assert cache.check() and cache.status() == "ok"
    assert not list(cache.path.parent.glob(".tmp-*"))


def test_a_missing_or_altered_file_is_not_verified(tmp_path):
    cache = VerifiedFile(tmp_path / "w.weights.h5")
    assert cache.status() == "missing"
    cache.write(lambda tmp: tmp.write_bytes(b"weights"))
    cache.path.write_bytes(b"weights, truncated")
    assert cache.status() == "altered" and not cache.check()
    cache.sidecar.unlink()
    assert cache.status() == "missing"  # a file whose hash was never written is not trusted


def test_an_expected_hash_kept_elsewhere(tmp_path):
    cache = VerifiedFile(tmp_path / "phase-0.weights.h5")
    digest = cache.write(lambda tmp: tmp.write_bytes(b"w"))
    cache.sidecar.unlink()
    assert cache.check(digest) and cache.status("0" * 64) == "altered"


def test_a_failed_write_leaves_nothing(tmp_path):
    cache = VerifiedFile(tmp_path / "x.npy")

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.write(broken)
    assert list(tmp_path.iterdir()) == []


def test_adopt_records_a_foreign_file_once_then_checks_it(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(b"archive")
    verified = VerifiedFile(archive)
    assert verified.adopt() and verified.sidecar.read_text() == sha256_file(archive)
    assert verified.adopt()
    archive.write_bytes(b"archive, altered")
    assert not verified.adopt()


@pytest.fixture
def fake_keras(tmp_path, monkeypatch):
    """A stand-in for keras.utils.get_file that 'downloads' by writing a file (no network, no TensorFlow)."""
    calls = []

    def get_file(fname, origin, cache_subdir):
        calls.append(origin)
        if "offline" in origin:
            raise OSError("no network")
        path = tmp_path / cache_subdir / fname
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"payload")
        return str(path)

    monkeypatch.setitem(sys.modules, "keras", types.SimpleNamespace(utils=types.SimpleNamespace(get_file=get_file)))
    return calls


def test_checked_download_records_then_checks(fake_keras, tmp_path):
    path = checked_download("https://example.org/data/set.zip", cache_subdir="datasets/x")
    assert path == tmp_path / "datasets/x/set.zip" and (tmp_path / "datasets/x/set.zip.sha256").is_file()
    assert checked_download("https://example.org/data/set.zip", cache_subdir="datasets/x") == path
    path.write_bytes(b"payload, altered")
    with pytest.raises(UserError, match="changed since it was downloaded"):
        checked_download("https://example.org/data/set.zip", cache_subdir="datasets/x")


def test_checked_download_with_a_pinned_hash(fake_keras):
    pinned = "0" * 64
    with pytest.raises(UserError, match=f"does not have the published sha256 {pinned}"):
        checked_download("https://example.org/w.h5", cache_subdir="models", sha256=pinned)


def test_checked_download_failure_says_why(fake_keras):
    with pytest.raises(DatasetUnavailableError, match=r"offline/set.zip failed \(OSError\)"):
        checked_download("https://example.org/offline/set.zip", cache_subdir="datasets/x")
    with pytest.raises(DatasetUnavailableError, match="custom: OSError"):
        checked_download("https://example.org/offline/set.zip", cache_subdir="datasets/x",
                         unavailable=lambda reason: DatasetUnavailableError(f"custom: {reason}"))
