"""Share: download runs as CSV or Parquet, or a self-contained HTML report with every plot."""
from __future__ import annotations

import io

import streamlit as st

from transferlab.dashboard.common import (get_store, guarded, load_epochs, load_runs, no_runs_message, read_only,
                                          session_registry, train_runs)
from transferlab.dashboard.report import html_report
from transferlab.store import CSV_COLUMNS


def render() -> None:
    st.title("Share")
    runs = load_runs()
    if runs.empty:
        no_runs_message()
        return
    table = runs.reindex(columns=CSV_COLUMNS)
    if read_only():  # strangers get results, not error texts (load_runs already took this machine's paths out)
        table = table.drop(columns=["error"])
    c1, c2, c3 = st.columns(3)
    c1.download_button("Runs as CSV", table.to_csv(index=False).encode(), "transferlab-runs.csv", "text/csv")
    parquet = io.BytesIO()
    table.to_parquet(parquet, index=False)
    c2.download_button("Runs as Parquet", parquet.getvalue(), "transferlab-runs.parquet", "application/octet-stream")
    finished = train_runs(runs)
    if c3.button("Build HTML report"):
        report = html_report(finished, load_epochs(tuple(finished["run_id"])), store=get_store(),
                             registry=session_registry())
        c3.download_button("Download report", report.encode(), "transferlab-report.html", "text/html")
    st.caption(f"{len(runs)} runs. The report holds every comparison plot and the summary table in one HTML file "
               "that opens offline.")
    st.subheader("Hosting a read-only dashboard")
    st.markdown(
        "Set `TRANSFERLAB_READ_ONLY=1` and point `TRANSFERLAB_STORE` at a store (a SQLite file or a database URL). "
        "Visitors can browse and download, but cannot train, and never see error details. "
        "Install only the view dependencies: `pip install 'transferlab[view]'`. See the README for Streamlit "
        "Community Cloud and containers." + (" **This dashboard is in read-only mode.**" if read_only() else "")
    )


guarded(render)
