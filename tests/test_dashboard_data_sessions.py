"""The Run page's path field per browser session: a task made from one session's path never reaches the
shared registry or another session (both may call their folder ``birds``), and reruns reuse the data
version instead of walking the tree on every keystroke."""
from __future__ import annotations

from pathlib import Path

from test_userdata import write_class_tree

PAGE = Path(__file__).resolve().parents[1] / "dashboard" / "views" / "run.py"


def _session(path: Path):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    next(t for t in at.text_input if t.label.startswith("Your data")).set_value(str(path)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def _shared_tasks() -> set[str]:
    from streamlit.testing.v1 import AppTest

    def script():
        import streamlit as st

        from transferlab.dashboard.common import get_registry

        st.markdown(",".join(sorted(get_registry().tasks)))

    at = AppTest.from_function(script, default_timeout=60)
    at.run()
    return set(at.markdown[0].value.split(","))


def test_data_tasks_stay_in_their_session_and_reruns_reuse_the_version(tmp_path, monkeypatch, tl_home):
    from transferlab import fingerprints

    monkeypatch.setattr(fingerprints, "VERSION_REUSE_S", 600.0)  # however slow the reruns here, they are "brief"
    walks = []
    walk = fingerprints.fingerprint_class_folders
    monkeypatch.setattr(fingerprints, "fingerprint_class_folders", lambda root: walks.append(root) or walk(root))
    a = write_class_tree(tmp_path / "a" / "birds", per_class=3)
    b = write_class_tree(tmp_path / "b" / "birds", per_class=4, seed=1)
    first = _session(a)
    walked = len(walks)
    for seeds in ("0,1", "0,1,2"):  # reruns within a few seconds: the version is reused, not walked again
        next(t for t in first.text_input if t.label == "Seeds").set_value(seeds).run()
    assert len(walks) == walked
    second = _session(b)
    assert "data.birds" not in _shared_tasks()
    mine = {at: at.session_state["transferlab-registry"][1].tasks["data.birds"].data for at in (first, second)}
    assert mine == {first: f"folder:{a}", second: f"folder:{b}"}
    first.run()  # session A still shows its own data, not B's
    splits = next(df.value for df in first.dataframe if "validation" in df.value.columns)
    assert splits["examples"].tolist() == [3, 3, 3]
