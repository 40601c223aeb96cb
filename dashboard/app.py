"""Placeholder dashboard: lists the runs in the store. The full comparison dashboard is its own issue.

Run with ``streamlit run dashboard/app.py``. It only reads the store and never imports TensorFlow.
"""
from __future__ import annotations

import streamlit as st

from transferlab.store import CSV_COLUMNS, Store

st.set_page_config(page_title="transferlab", layout="wide")
st.title("transferlab")
st.caption("Runs in the store. Start a comparison with `transferlab demo` or `transferlab sweep`.")
runs = Store().runs_frame()
if runs.empty:
    st.info("The store is empty. Run `transferlab demo` to fill it.")
else:
    st.dataframe(runs.reindex(columns=CSV_COLUMNS), hide_index=True)
