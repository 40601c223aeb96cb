"""The Compare page draws one page of learning-curve groups at a time and loads only their runs' epochs."""
from __future__ import annotations

from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "dashboard" / "views" / "compare.py"


@pytest.fixture
def app_env(seeded_home, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HOME", str(seeded_home))
    monkeypatch.delenv("TRANSFERLAB_READ_ONLY", raising=False)
    return seeded_home


def _groups_in(at) -> set[str]:
    """The learning-curve groups of the runs the page's settings table lists (one row per run on screen)."""
    from transferlab import compare
    from transferlab.store import Store

    runs = Store().runs_frame()
    runs = runs[(runs["kind"] == "train") & (runs["status"] == "succeeded")]
    groups = dict(zip(runs["run_id"], compare.curve_groups(runs)))
    return {groups[run_id] for run_id in at.dataframe[-1].value["run_id"]}


def test_compare_pages_through_groups_when_there_are_more_than_fit(app_env, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from transferlab import compare

    monkeypatch.setattr(compare, "GROUPS_PER_PAGE", 2)
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    pager = next(n for n in at.number_input if n.label.startswith("Page of groups"))
    assert pager.value == 1
    first = _groups_in(at)
    assert len(first) == 2  # the table under the chart lists the runs drawn, two groups of them
    pager.set_value(2).run()
    assert not at.exception, at.exception
    second = _groups_in(at)
    assert len(second) == 2 and not first & second
    assert max(first) < min(second)  # pages go in name order
