"""Home computes the verdict once per store state, not on every rerun."""
from __future__ import annotations

from pathlib import Path

PAGES = Path(__file__).resolve().parents[1] / "dashboard" / "views"


def test_home_recomputes_the_verdict_only_when_the_store_changes(seeded_home, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import transferlab.verdict as verdict

    monkeypatch.setenv("TRANSFERLAB_HOME", str(seeded_home))
    monkeypatch.delenv("TRANSFERLAB_READ_ONLY", raising=False)
    calls = []
    real = verdict.recommend
    monkeypatch.setattr(verdict, "recommend", lambda *a, **k: calls.append(1) or real(*a, **k))
    st.cache_data.clear()
    at = AppTest.from_file(str(PAGES / "home.py"), default_timeout=120)
    at.run()
    at.run()  # a rerun (a click, a widget): same store, no new verdict
    assert not at.exception and len(calls) == 1
    assert any(s.value == "Verdict" for s in at.subheader)
    st.cache_data.clear()
