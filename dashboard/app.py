"""transferlab dashboard: ``streamlit run dashboard/app.py``.

Navigation only; each page is a thin script in ``views/``. The folder is deliberately not ``pages/``:
Streamlit scans a ``pages/`` folder beside the entry script, and a deep link opened first on a fresh
server would then run the page without this script (no page config, no read-only settings, a sidebar
of file names). Every page is registered in ``st.navigation`` below instead; its URL path is its file
name (``/data_efficiency``). In read-only mode (``TRANSFERLAB_READ_ONLY=1``) the Run page is not offered
and error details are never shown.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from transferlab.dashboard.common import page_list, read_only

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="transferlab", page_icon=":material/biotech:", layout="wide")
if read_only():
    st.set_option("client.showErrorDetails", False)

pages = [st.Page(VIEWS / name, title=title, icon=icon, url_path=Path(name).stem, default=i == 0)
         for i, (name, title, icon) in enumerate(page_list(read_only()))]
st.navigation(pages).run()
