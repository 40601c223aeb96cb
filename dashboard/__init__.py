"""The Streamlit dashboard (transferlab.dashboard)."""
