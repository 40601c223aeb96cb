"""The live view of background launches, shared by the Home and Run pages."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from transferlab.dashboard.common import get_store
from transferlab.dashboard.tables import show_table


def _run_label(row) -> str:
    """``backbone · strategy · 20/class · seed 0`` (``all data`` for a run on the whole pool)."""
    size = row["examples_per_class"]
    size_text = "all data" if size is None or pd.isna(size) else f"{size:.0f}/class"
    return f"{row['backbone']} · {row['strategy']} · {size_text} · seed {row['seed']}"


@st.fragment(run_every=2)
def live_view(limit: int = 5) -> None:
    """Every launch with its runs: status, phase, epoch and live metrics; refreshes every 2 seconds."""
    from transferlab.launch import cancel, launches

    records = launches()
    if not records:
        st.caption("Nothing launched from here yet.")
        return
    store = get_store()
    for record in records[:limit]:
        frame = store.runs_frame(run_id=record.job_ids)
        done = int(frame["status"].isin(["succeeded", "failed", "nan", "interrupted"]).sum())
        unfinished = len(record.job_ids) - done
        state = "running" if record.alive else ("finished" if not unfinished else f"stopped, {unfinished} unfinished")
        head = st.columns([4, 1])
        head[0].markdown(f"**Launch {record.launch_id}** · {state} · {done}/{len(record.job_ids)} runs done")
        if record.alive and head[1].button("Cancel", key=f"cancel-{record.launch_id}"):
            n = cancel(record, store)
            st.warning(f"Cancelled; {n} unfinished runs marked interrupted. Finished runs are kept.")
        st.progress(done / max(1, len(record.job_ids)))
        for _, row in frame[frame["status"] == "running"].iterrows():
            progress = json.loads(row["progress_json"]) if isinstance(row["progress_json"], str) else {}
            label = _run_label(row)
            if progress:
                metrics = ", ".join(f"{k} {v:.3f}" for k, v in progress.get("metrics", {}).items())
                st.text(f"{label}: {progress['phase']} epoch {progress['epoch']}/{progress['last_epoch']}, "
                        f"batch {progress['step']}/{progress['steps']}  {metrics}")
                st.progress(min(1.0, progress["step"] / max(1, progress["steps"])))
            else:
                st.text(f"{label}: preparing (loading data, weights or features)")
        for _, row in frame[frame["status"] == "stale"].iterrows():
            label = _run_label(row)
            st.text(f"{label}: running — worker lost ({row.get('worker_lost') or 'no heartbeat'}); "
                    "the next sweep or demo takes it back")
        failed = frame[frame["status"].isin(["failed", "nan", "interrupted", "stale"])]
        if not failed.empty:
            show_table(failed[["run_id", "backbone", "strategy", "status", "error"]])
