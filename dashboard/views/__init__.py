"""The dashboard's page scripts, run by ``st.navigation`` in ``app.py`` (never imported as modules).

A package so that wheels ship them beside ``app.py``.
"""
