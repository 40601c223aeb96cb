"""Shared fixtures: an isolated TRANSFERLAB_HOME per test, and a registry with tiny test backbones."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TRANSFERLAB_QUIET"] = "1"


@pytest.fixture(autouse=True)
def tl_home(tmp_path, monkeypatch):
    """Every test gets its own store and caches; no test sees the user's."""
    home = tmp_path / "tl-home"
    monkeypatch.setenv("TRANSFERLAB_HOME", str(home))
    monkeypatch.delenv("TRANSFERLAB_STORE", raising=False)
    monkeypatch.delenv("TRANSFERLAB_PLUGINS", raising=False)
    monkeypatch.delenv("TRANSFERLAB_STRICT_PLUGINS", raising=False)
    return home


@pytest.fixture
def registry():
    """Built-ins plus the test-only plugins (tiny, leaky and NaN backbones)."""
    import support_plugins

    from transferlab.registry import load_registry

    return load_registry(extra_plugins=[("tests.tiny", support_plugins.TinyPlugin)])


@pytest.fixture
def store(tl_home):
    """A fresh SQLite store in the test's home."""
    from transferlab.store import Store

    return Store()
