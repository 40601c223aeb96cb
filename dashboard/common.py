"""Shared helpers of the dashboard pages: read-only mode, cached store reads, filters, error boxes.

Pages only read the store and call pure functions; nothing here imports TensorFlow. In read-only mode (a
hosted share) the runs are made public once, where they are read (:func:`load_runs`), so every legend,
filter, table and report shows ``file:x.weights.h5 (sha256 1a2b3c4d)`` and never this machine's folders.
"""
from __future__ import annotations

import os
import traceback
from typing import Any, Callable

import pandas as pd
import streamlit as st

from transferlab.errors import StoreError, TransferlabError
from transferlab.redact import public_runs, public_weights, redact_text  # noqa: F401 (public_weights: for pages)

READ_ONLY_ENV = "TRANSFERLAB_READ_ONLY"


def read_only() -> bool:
    """Hosted read-only mode: ``TRANSFERLAB_READ_ONLY=1`` or ``[transferlab] read_only = true`` in secrets."""
    if os.environ.get(READ_ONLY_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    try:
        return bool(st.secrets.get("transferlab", {}).get("read_only", False))
    except Exception:  # no secrets file: the usual local case
        return False


@st.cache_resource
def get_registry():
    """The plugin registry (loaded once per server)."""
    from transferlab.registry import get_registry as load

    return load()


def session_registry():
    """The registry for this browser session: the shared one (:func:`get_registry`) with a task table of its
    own, so the tasks a page makes from a path field (``resolve_data``) never reach another session, whose
    ``data.birds`` may be other data."""
    import dataclasses

    shared = get_registry()
    kept = st.session_state.get("transferlab-registry")
    if kept is None or kept[0] is not shared:  # the shared one was loaded again: copy that one
        kept = (shared, dataclasses.replace(shared, tasks=dict(shared.tasks), owner=dict(shared.owner)))
        st.session_state["transferlab-registry"] = kept
    return kept[1]


#: the path field's help, on every page that takes your data
DATA_HELP = ("A folder of class folders (root/<class>/<images>, nested folders and any image format), a CSV of "
             "path,label (paths relative to the CSV), or tfds:NAME[:split] for a tensorflow-datasets set prepared on "
             "this machine. It becomes a task named after it (as `--data` makes it), with no augmentation or class "
             "weights unless you ask.")


def data_path_input() -> str:
    """The path field of the pages that take your data; its text, stripped ("" while empty)."""
    return st.text_input("Your data (a path, or tfds:NAME)", "", help=DATA_HELP,
                         placeholder="/path/to/images  ·  /path/to/labels.csv  ·  tfds:cifar10").strip()


@st.cache_resource
def _store(url: str | None, ro: bool):
    from transferlab.store import Store

    return Store(url, read_only=ro)


def get_store():
    """The run store, opened read-only in read-only mode."""
    from transferlab.paths import default_store_url

    return _store(default_store_url(), read_only())


@st.cache_data(ttl=3, show_spinner=False)
def _runs(url: str, public: bool) -> pd.DataFrame:
    runs = get_store().runs_frame()
    return public_runs(runs) if public else runs


@st.cache_data(ttl=3, show_spinner=False)
def _epochs(url: str, run_ids: tuple[str, ...]) -> pd.DataFrame:
    return get_store().epochs_frame(list(run_ids))


def load_runs() -> pd.DataFrame:
    """Every run (one query), cached for a few seconds; in read-only mode as strangers may see it
    (:func:`transferlab.redact.public_runs`: weights files by name and sha256, no local paths)."""
    return _runs(get_store().url, read_only())


def load_epochs(run_ids: tuple[str, ...]) -> pd.DataFrame:
    """Per-epoch metrics of the given runs (one query), cached for a few seconds."""
    return _epochs(get_store().url, tuple(run_ids))


# Material icons ship with Streamlit's own font, so they render where no emoji font is installed.
PAGES = [
    ("home.py", "Home", ":material/home:"),
    ("verdict.py", "Verdict", ":material/gavel:"),
    ("backbones.py", "Backbones", ":material/view_in_ar:"),
    ("rank.py", "Rank", ":material/leaderboard:"),
    ("run.py", "Run", ":material/play_circle:"),
    ("compare.py", "Compare", ":material/show_chart:"),
    ("inspect.py", "Inspect", ":material/image_search:"),
    ("data_efficiency.py", "Data efficiency", ":material/stacked_line_chart:"),
    ("negative_transfer.py", "Negative transfer", ":material/trending_down:"),
    ("plugins.py", "Plugins", ":material/extension:"),
    ("share.py", "Share", ":material/share:"),
]
TRAINING_PAGES = {"run.py"}


def page_list(ro: bool) -> list[tuple[str, str, str]]:
    """(file, title, icon) of the pages offered; read-only mode drops the pages that train."""
    return [p for p in PAGES if not (ro and p[0] in TRAINING_PAGES)]


def train_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Succeeded training runs (pretrain jobs are inputs, not results)."""
    if runs.empty:
        return runs
    return runs[(runs["kind"] == "train") & (runs["status"] == "succeeded")]


def filter_runs(runs: pd.DataFrame, key: str, columns=("task", "backbone", "strategy", "weights")) -> pd.DataFrame:
    """Sidebar multiselects over ``columns``; an empty selection means all."""
    if runs.empty:
        return runs
    with st.sidebar:
        st.markdown("**Filter runs**")
        for column in columns:
            options = sorted(runs[column].dropna().astype(str).unique())
            chosen = st.multiselect(column.replace("_", " "), options, key=f"{key}-{column}")
            if chosen:
                runs = runs[runs[column].astype(str).isin(chosen)]
    return runs


def public_message(exc: BaseException) -> str:
    """An error message fit for strangers: no file paths, store URLs or secrets (a store error says only that
    the store is unavailable)."""
    if isinstance(exc, StoreError):
        return "The run store is unavailable right now. Try again later."
    return redact_text(str(exc))


def public_text(text: str) -> str:
    """Text from a plugin or the store, for this page: without secrets always, and without local paths in
    read-only mode (:func:`transferlab.redact.redact_text`)."""
    return redact_text(text, paths=read_only())


def guarded(render: Callable[[], Any]) -> None:
    """Run a page body; errors become one error box, never a traceback or a local path in read-only mode."""
    try:
        render()
    except TransferlabError as exc:
        st.error(public_message(exc) if read_only() else public_text(str(exc)))
    except Exception as exc:  # a bug must not take the page down, and must not leak paths to visitors
        if read_only():
            st.error("This page could not be shown. The store may be unavailable; try again later.")
        else:  # the local user's own paths help; a store password never shows, not even here
            st.error(public_text(f"{type(exc).__name__}: {exc}"))
            with st.expander("Details"):
                st.code(public_text(traceback.format_exc()))


def no_runs_message(what: str = "runs") -> None:
    """The empty-state box shared by the pages."""
    hint = "" if read_only() else " Start the demo on the Home page or a sweep on the Run page."
    st.info(f"No {what} in the store yet.{hint}")
