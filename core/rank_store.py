"""Where rankings live: one JSON file per (task, data version, input size, ``--max-images``, pairs asked for)
under ``<home>/cache/ranks/``, so a ranking of fewer images or of a few named backbones sits beside the full one.

Written atomically with its sha256 beside it (:class:`transferlab.safe_io.VerifiedFile`) and read only when
the hash checks out, so a page never shows half a file or an altered one. Reading creates nothing (a read-only
dashboard leaves the home as it found it) and imports neither TensorFlow nor scikit-learn.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transferlab.cells import json_ready  # noqa: F401 (part of this module's API since rankings were stored)

RANK_FORMAT = 1
DEFAULT_MAX_IMAGES = 1000


def pair_label(backbone: str, weights: str) -> str:
    """``backbone · weights``, ``random init`` for ``none``."""
    return f"{backbone} · {'random init' if weights == 'none' else weights}"


def p_text(p: float) -> str:
    """A p-value as shown: two decimals, ``< 0.01`` below that."""
    return "< 0.01" if p < 0.01 else f"{p:.2f}"


def ranks_dir() -> Path:
    """Where rankings are kept: ``<home>/cache/ranks`` (not created by reading)."""
    from transferlab.paths import home

    return home() / "cache" / "ranks"


def selection_key(pairs: Any) -> str:
    """The part of a ranking's file name that says which pairs it ranked: ``all`` (the default set) or a short
    hash of the sorted ``backbone:weights`` names asked for, so a partial ranking never replaces a full one."""
    if pairs is None:
        return "all"
    import hashlib

    return hashlib.sha256(",".join(sorted(pairs)).encode()).hexdigest()[:8]


def _prefix(task: str, data_version: str | None, input_size: int) -> str:
    return f"{task}--{data_version or 'pinned'}--{int(input_size)}px"


def rank_path(task: str, data_version: str | None, input_size: int, max_images: int = DEFAULT_MAX_IMAGES,
              pairs: Any = None) -> Path:
    """The file of the ranking of ``task`` at ``data_version`` (``pinned``: a task without one), input size,
    ``--max-images`` and pair selection (:func:`selection_key`; None: the default set)."""
    return ranks_dir() / f"{_prefix(task, data_version, input_size)}--{int(max_images)}img--{selection_key(pairs)}.json"


def save_ranking(result: dict[str, Any]) -> Path:
    """Write a ranking atomically, its sha256 beside it."""
    from transferlab.paths import cache_dir
    from transferlab.safe_io import VerifiedFile

    cache_dir("ranks")
    path = rank_path(result["task"], result["data_version"], result["input_size"], result["max_images"],
                     result.get("selection"))
    text = json.dumps(json_ready(result), indent=1, allow_nan=False)
    VerifiedFile(path).write(lambda tmp: tmp.write_text(text))
    return path


def _read(path: Path) -> dict[str, Any] | None:
    from transferlab.safe_io import VerifiedFile

    if VerifiedFile(path).status() != "ok":
        return None  # missing, or altered since it was written: not shown as if it were a ranking
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("format") == RANK_FORMAT else None


def load_ranking(task: str, data_version: str | None, input_size: int, max_images: int | None = None,
                 pairs: Any = ...) -> dict[str, Any] | None:
    """The stored ranking of ``task`` at this data version and input size, or None: the one of exactly this
    ``max_images`` and pair selection (None: the default set) when both are given, else the newest that fits."""
    if max_images is not None and pairs is not ...:
        return _read(rank_path(task, data_version, input_size, max_images, pairs))
    folder = ranks_dir()
    if not folder.is_dir():
        return None
    found = [r for r in (_read(p) for p in folder.glob(_prefix(task, data_version, input_size) + "--*.json"))
             if r is not None and (max_images is None or r.get("max_images") == max_images)
             and (pairs is ... or r.get("selection") == (None if pairs is None else sorted(pairs)))]
    return max(found, key=lambda r: r.get("computed_at", ""), default=None)


def stored_rankings(task: str | None = None) -> list[dict[str, Any]]:
    """Every stored ranking that passes its hash check (of ``task`` only, when given), newest first."""
    folder = ranks_dir()
    if not folder.is_dir():
        return []
    found = [r for r in (_read(p) for p in sorted(folder.glob("*.json"))) if r is not None]
    if task is not None:
        found = [r for r in found if r.get("task") == task]
    return sorted(found, key=lambda r: r.get("computed_at", ""), reverse=True)


def ranking_frame(result: dict[str, Any]) -> Any:
    """A ranking's pairs as a DataFrame in rank order, with a ``pair`` label column."""
    import pandas as pd

    frame = pd.DataFrame(result.get("pairs", []))
    if frame.empty:
        return frame
    frame.insert(0, "pair", [pair_label(b, w) for b, w in zip(frame["backbone"], frame["weights"])])
    return frame
