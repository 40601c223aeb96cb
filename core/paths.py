"""Where transferlab keeps its store and caches: ``TRANSFERLAB_HOME``."""
from __future__ import annotations

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
