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


@pytest.fixture(autouse=True)
def _no_reused_data_versions():
    """Each test starts with no reused data versions: a version reused for a few seconds (one walk of the files
    per sweep) is keyed on the task, not on settings such as a folder variable that another test changed."""
    from transferlab.fingerprints import forget_data_versions

    forget_data_versions()
    yield


@pytest.fixture(scope="session")
def seeded_home(tmp_path_factory):
    """A store with real runs: scratch, frozen features and a corrupted-source transfer, 2 sizes x 2 seeds."""
    home = tmp_path_factory.mktemp("seeded-home")
    saved = os.environ.get("TRANSFERLAB_HOME")
    os.environ["TRANSFERLAB_HOME"] = str(home)
    try:
        from transferlab.executor import run_jobs
        from transferlab.jobs import expand_grid
        from transferlab.registry import load_registry
        from transferlab.store import Store

        registry = load_registry()
        options = dict(input_size=16, epochs=2, fine_tune_epochs=2, batch_size=16, fine_tune_learning_rate=1e-3,
                       pretrain_epochs=1)
        jobs = expand_grid(registry, dict(tasks=["digits"], backbones=["small_cnn"],
                                          strategies=["scratch", "frozen_features", "full_fine_tune"],
                                          examples_per_class=[5, 10], seeds=[0, 1],
                                          sources=["none", "lfw_faces:shuffled"]), options)
        counts = run_jobs(jobs, Store(), workers=0, registry=registry)
        assert counts == {"succeeded": len(jobs)}
    finally:
        if saved is None:
            os.environ.pop("TRANSFERLAB_HOME", None)
        else:
            os.environ["TRANSFERLAB_HOME"] = saved
    return home
