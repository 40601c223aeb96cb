"""transferlab dashboard: ``streamlit run dashboard/app.py``.

Navigation only; each page is a thin script in ``pages/``. In read-only mode (``TRANSFERLAB_READ_ONLY=1``)
the Run page is not offered and error details are never shown.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from transferlab.dashboard.common import page_list, read_only

HERE = Path(__file__).parent / "pages"

st.set_page_config(page_title="transferlab", page_icon=":material/biotech:", layout="wide")
if read_only():
    st.set_option("client.showErrorDetails", False)

pages = [st.Page(HERE / name, title=title, icon=icon, default=i == 0)
         for i, (name, title, icon) in enumerate(page_list(read_only()))]
st.navigation(pages).run()
