"""The Rank page (Streamlit AppTest): a stored ranking shown with its top sentence, table and the check against
the store's runs; the button starts a background ranking (never in the page); a failed one says why;
read-only mode offers no button. And the background ranking itself, end to end (slow)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "dashboard" / "views" / "rank.py"


@pytest.fixture
def ranked_home(seeded_home, tmp_path, monkeypatch, registry):
    """A copy of the seeded store (digits runs of the small CNN) with a ranking of digits stored in it."""
    from transferlab.ranking import rank

    home = tmp_path / "home"
    shutil.copytree(seeded_home, home)
    monkeypatch.setenv("TRANSFERLAB_HOME", str(home))
    monkeypatch.delenv("TRANSFERLAB_READ_ONLY", raising=False)
    rank(registry, "digits", ["tiny:none", "small_cnn:none"], max_images=100)
    return home


def _page():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _text(at) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "error", "success")
                     for e in getattr(at, kind, []))


def test_the_page_shows_the_stored_ranking_and_its_check_against_the_runs(ranked_home):
    at = _page()
    assert at.title[0].value == "Rank before training"
    assert at.selectbox[0].value == "digits"  # the task with a ranking comes first
    text = _text(at)
    assert "**Top: " in text and "(the training subset of a job at --examples-per-class 10 --seed 0)" in text
    table = at.dataframe[0].value
    assert list(table["pair"]) == sorted(table["pair"], key=list(table["pair"]).index)
    assert set(table["pair"]) == {"tiny · random init", "small_cnn · random init"}
    assert table["probe accuracy"].is_monotonic_decreasing
    taus = at.dataframe[1].value  # only the small CNN has runs here: one pair per size, too few for a tau
    assert set(taus["size"]) == {"5 per class", "10 per class"} and (taus["pairs"] == 1).all()
    assert taus["reading"].str.startswith("too few pairs (1)").all()


def test_the_button_starts_a_background_ranking_and_the_page_never_ranks_itself(ranked_home, monkeypatch):
    started = []

    class Record:
        launch_id = "fake-launch"

    monkeypatch.setattr("transferlab.rank_launch.launch_rank", lambda task, argv: started.append((task, argv))
                        or Record())
    monkeypatch.setattr("transferlab.ranking.rank", lambda *a, **k: pytest.fail("the page ranked in-process"))
    at = _page()
    next(b for b in at.button if b.label == "Rank in the background").click().run()
    assert not at.exception, at.exception
    assert started == [("digits", ["rank", "--task", "digits", "--max-images", "1000"])]
    assert "Started (fake-launch)." in _text(at)


def test_a_failed_background_ranking_says_why(ranked_home):
    folder = ranked_home / "rank-launches" / "20260101-000000-abcdef"
    folder.mkdir(parents=True)
    (folder / "launch.json").write_text(json.dumps(dict(
        launch_id=folder.name, task="digits", argv=["rank", "--task", "digits"], folder=str(folder),
        created_at=time.time() - 5, pid=None, started=None)))
    (folder / "log.txt").write_text("transferlab: error: --max-images 4 leaves a class with fewer than 2 images\n")
    (folder / "exit_code").write_text("2")
    at = _page()
    errors = [e.value for e in at.error]
    assert any("did not finish (exit status 2)" in e and "--max-images 4 leaves a class" in e for e in errors)


def test_read_only_mode_offers_no_ranking_button_nor_path_field(ranked_home, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_READ_ONLY", "1")
    at = _page()
    assert not [b for b in at.button if b.label == "Rank in the background"] and not at.text_input
    assert at.dataframe, "the stored ranking is still shown"


def test_launch_rank_refuses_read_only_and_builds_the_command(monkeypatch):
    from transferlab.errors import UserError
    from transferlab.rank_launch import launch_rank, rank_command

    assert rank_command(data="/x/y", input_size=64) == ["rank", "--data", "/x/y", "--input-size", "64"]
    with pytest.raises(UserError):
        rank_command()
    monkeypatch.setenv("TRANSFERLAB_READ_ONLY", "1")
    with pytest.raises(UserError, match="read-only"):
        launch_rank("digits", rank_command(task="digits"))


@pytest.mark.slow
def test_a_background_ranking_runs_to_the_end_and_is_stored(tl_home):
    from transferlab.rank_launch import launch_rank, rank_command, rank_launches
    from transferlab.ranking import load_ranking

    record = launch_rank("digits", rank_command(task="digits", max_images=100, backbones="small_cnn:none"))
    deadline = time.time() + 240
    while record.exit_code is None and time.time() < deadline:
        time.sleep(1)
        record = rank_launches("digits")[0]
    assert record.exit_code == 0, record.log_tail()
    assert not record.alive
    assert load_ranking("digits", None, 32)["pairs"][0]["backbone"] == "small_cnn"
