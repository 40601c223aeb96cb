"""Where transferlab keeps its store and caches: ``TRANSFERLAB_HOME``."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """The data folder: ``$TRANSFERLAB_HOME`` or the platform's user data dir. Created on demand."""
    root = os.environ.get("TRANSFERLAB_HOME") or platformdirs.user_data_dir("transferlab", appauthor=False)
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(kind: str) -> Path:
    """A cache folder under the home (``weights``, ``features``, ``runs``), created on demand."""
    path = home() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_store_url() -> str:
    """``$TRANSFERLAB_STORE`` (any SQLAlchemy URL) or a SQLite file in the home."""
    return os.environ.get("TRANSFERLAB_STORE") or f"sqlite:///{home() / 'runs.sqlite'}"


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it (so none of its code runs), or None.

    Used for packages that transferlab reads only for their files (weights, data)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])
