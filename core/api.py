"""Everything a plugin needs, in one place: ``from transferlab import TaskSpec, TaskData, hookimpl``.

A plugin (a built-in in ``transferlab.plugins`` or a third-party package) imports only these names,
from ``transferlab`` or from ``transferlab.api``; the modules behind them are core's to reorganise.
``tests/test_plugin_boundary.py`` holds the built-ins to that.

- hooks: :data:`hookimpl`;
- specs the hooks return: :class:`BackboneSpec`, :class:`WeightSourceSpec`, :class:`TaskSpec`,
  :class:`StrategySpec`, :class:`PhaseSpec`;
- what a task's ``load()`` returns: :class:`TaskData`, with :class:`ImageFiles` for images streamed
  from disk; task heads: :class:`TaskHead`, :class:`ClassificationHead`;
- errors: :class:`TransferlabError`, :class:`UserError`, :class:`DatasetUnavailableError`,
  :class:`WeightsError`, :class:`SpecError`;
- files: :func:`package_dir` (an installed package's folder, without importing it), :func:`cache_dir`,
  :class:`VerifiedFile` (written atomically, sha256 beside it, checked before reading),
  :func:`checked_download`, :func:`check_sha256` and :func:`sha256_file` for pinned files,
  :func:`load_numpy_pickle`;
- data: :func:`tfds_prepared`, :data:`SPLIT_SEED`, and the image-folder helpers (:func:`scan_class_folders`,
  :func:`scan_to_task_data`, :class:`ImageFolderScan`, ...);
- data versions, for ``TaskSpec.fingerprint``: :func:`fingerprint_class_folders`, :func:`fingerprint_tree`,
  :func:`fingerprint_files`, :func:`fingerprint_tfds`;
- PyTorch checkpoints without torch: :func:`load_legacy_state_dict` (a restricted reader that runs no
  pickled code), :func:`load_torch_state` and :func:`torch_layer_arrays` (onto Keras layers, all or nothing);
- progress: :func:`bar`, :func:`say`;
- redaction, for anything others may read: :func:`redact_url`, :func:`redact_path`, :func:`redact_text`,
  :func:`public_weights`, :func:`public_runs`.

Importing this module never imports TensorFlow, Keras or Pillow: the specs, errors and ``hookimpl``
load at once, every other name on first use.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from transferlab.errors import (
    DatasetUnavailableError,
    SpecError,
    TransferlabError,
    UserError,
    WeightsError,
)
from transferlab.hookspecs import hookimpl
from transferlab.specs import (
    BackboneSpec,
    PhaseSpec,
    StrategySpec,
    TaskSpec,
    WeightSourceSpec,
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors; at run time these load lazily
    from transferlab.data import SPLIT_SEED, ImageFiles, TaskData, tfds_prepared
    from transferlab.fingerprints import fingerprint_class_folders, fingerprint_files, fingerprint_tfds, fingerprint_tree
    from transferlab.heads import ClassificationHead, TaskHead
    from transferlab.image_files import (
        MAX_BAD_FRACTION,
        ImageFolderScan,
        PathLike,
        check_bad_fraction,
        check_files,
        is_hidden,
        read_table,
        refuse_if_too_many_bad,
        scan_class_folders,
        scan_to_task_data,
        walk_files,
    )
    from transferlab.paths import cache_dir, package_dir
    from transferlab.progress import bar, say
    from transferlab.redact import public_runs, public_weights, redact_path, redact_text, redact_url
    from transferlab.safe_io import VerifiedFile, check_sha256, checked_download, load_numpy_pickle, sha256_file

#: Public name -> the core module that defines it, imported on first use (Pillow, pandas and tqdm stay
#: unloaded until a plugin needs them; a viewing-only install has no Pillow at all).
LAZY = {
    **dict.fromkeys(("SPLIT_SEED", "ImageFiles", "TaskData", "tfds_prepared"), "transferlab.data"),
    **dict.fromkeys(("ClassificationHead", "TaskHead"), "transferlab.heads"),
    **dict.fromkeys(("fingerprint_class_folders", "fingerprint_files", "fingerprint_tfds", "fingerprint_tree"),
                    "transferlab.fingerprints"),
    **dict.fromkeys(
        ("MAX_BAD_FRACTION", "ImageFolderScan", "PathLike", "check_bad_fraction", "check_files", "is_hidden",
         "read_table", "refuse_if_too_many_bad", "scan_class_folders", "scan_to_task_data", "walk_files"),
        "transferlab.image_files",
    ),
    **dict.fromkeys(("cache_dir", "package_dir"), "transferlab.paths"),
    **dict.fromkeys(("bar", "say"), "transferlab.progress"),
    **dict.fromkeys(
        ("public_runs", "public_weights", "redact_path", "redact_text", "redact_url"), "transferlab.redact"
    ),
    **dict.fromkeys(("CheckpointFormatError", "UnsafeCheckpointError", "load_legacy_state_dict"),
                    "transferlab.torch_legacy"),
    **dict.fromkeys(("load_torch_state", "torch_layer_arrays"), "transferlab.torch_weights"),
    **dict.fromkeys(
        ("VerifiedFile", "check_sha256", "checked_download", "load_numpy_pickle", "sha256_file"), "transferlab.safe_io"
    ),
}

__all__ = sorted(
    [
        "BackboneSpec",
        "DatasetUnavailableError",
        "PhaseSpec",
        "SpecError",
        "StrategySpec",
        "TaskSpec",
        "TransferlabError",
        "UserError",
        "WeightSourceSpec",
        "WeightsError",
        "hookimpl",
        *LAZY,
    ]
)


def load_lazy(name: str) -> Any:
    """The public name ``name`` from the core module that defines it (imported now if need be)."""
    try:
        module = LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'transferlab.api' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __getattr__(name: str) -> Any:
    value = load_lazy(name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
