"""Reused phases are visible: the ``reused`` column of ``transferlab runs`` (and its --json) and the phases table of
the Inspect page, over a store whose runs carry the phase keys the runner writes (``on_features``, ``reused``,
``reused_from``), beside a run stored before those keys existed."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

PAGE = Path(__file__).resolve().parents[1] / "dashboard" / "views" / "inspect.py"
#: the page's caption (importing the page module would run it)
REUSED_CAPTION_START = "reused: trained once by an identical run prefix (same backbone, weights, data, subset, seed,"


def _head(**keys):
    return dict(phase="head", train="head", epochs=8, epochs_run=8, learning_rate=1e-3, trainable_params=650, **keys)


def _fine_tune(**keys):
    return dict(phase="fine_tune", train="all", epochs=3, epochs_run=3, learning_rate=1e-4, trainable_params=9000,
                **keys)


@pytest.fixture
def reuse_store(tl_home):
    """Three finished runs: one that trained its head on cached features (the source), one that reused that
    head, and one from before the keys (only the old phase fields)."""
    from transferlab.jobs import expand_grid
    from transferlab.registry import load_registry
    from transferlab.store import Store

    jobs = expand_grid(load_registry(), dict(tasks=["digits"], backbones=["small_cnn"],
                                             strategies=["lp_ft", "fine_tune_top_k", "scratch"],
                                             examples_per_class=[5], seeds=[0]), dict(input_size=16))
    source, reuser, old = (j.job_id for j in jobs)
    phases = {source: [_head(on_features=True, reused=False, reused_from=None, head_key="k1"), _fine_tune()],
              reuser: [_head(on_features=True, reused=True, reused_from=source, head_key="k1"), _fine_tune()],
              old: [dict(phase="train", train="all", epochs=4, learning_rate=1e-3, trainable_params=9000)]}
    store = Store()
    store.submit(jobs)
    for job in jobs:
        assert store.claim("w0", among=[job.job_id]) is not None
        store.finish(job.job_id, "succeeded", score=0.5, metric="accuracy", phases_json=phases[job.job_id])
    return dict(source=source, reuser=reuser, old=old)


def test_runs_lists_the_reused_phases_of_each_run(reuse_store, capsys):
    from transferlab.cli import main

    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "reused"
    start = lines[0].rindex("reused") - len("head")  # the last column, right-aligned under its header
    cells = {line.split()[0]: line[start:].strip() for line in lines[1:] if line.split()}
    assert cells[reuse_store["reuser"]] == "head"
    assert cells[reuse_store["source"]] == "" and cells[reuse_store["old"]] == ""
    assert any("loaded, not trained again" in line for line in lines[1:])


def test_runs_json_says_which_phases_were_reused(reuse_store, capsys):
    from transferlab.cli import main

    assert main(["runs", "--json"]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[reuse_store["reuser"]]["reused"] == ["head"]
    assert rows[reuse_store["source"]]["reused"] == [] and rows[reuse_store["old"]]["reused"] == []
    assert rows[reuse_store["old"]]["strategy"] == "scratch"


def test_runs_without_reused_phases_print_no_explanation(tl_home, capsys):
    from transferlab.cli import main, reused_phases

    assert reused_phases(None) == [] and reused_phases("{not json") == [] and reused_phases([{"phase": "x"}]) == []
    assert reused_phases(json.dumps([{"phase": "a", "reused": True}, {"phase": "b", "reused": False}])) == ["a"]
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "loaded, not trained again" not in out and "transferlab demo --quick" in out
    assert main(["runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def _page(run_id: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception, at.exception
    return at


def _phases(at):
    return next(d.value for d in at.dataframe if "trains" in d.value.columns)


def test_inspect_shows_a_reused_phase_and_links_the_run_that_trained_it(reuse_store):
    at = _page(reuse_store["reuser"])
    table = _phases(at)
    assert table["phase"].tolist() == ["head", "fine_tune"]
    assert table["on cached features"].tolist() == [True, False]
    assert table["reused"].tolist() == [True, False]
    assert table["reused from"].iloc[0] == f"inspect?run={reuse_store['source']}"
    assert pd.isna(table["reused from"].iloc[1])
    assert any(c.value.startswith(REUSED_CAPTION_START) for c in at.caption)
    assert any(s.value == "Training phases" for s in at.subheader)


def test_inspect_shows_a_run_that_trained_its_own_head_without_the_caption(reuse_store):
    at = _page(reuse_store["source"])
    table = _phases(at)
    assert table["on cached features"].tolist() == [True, False] and not table["reused"].any()
    assert not any(c.value.startswith(REUSED_CAPTION_START) for c in at.caption)


def test_inspect_shows_an_older_run_without_the_new_columns(reuse_store):
    at = _page(reuse_store["old"])
    table = _phases(at)
    assert table["phase"].tolist() == ["train"] and table["epochs"].tolist() == [4]
    assert not {"on cached features", "reused", "reused from"} & set(table.columns)


def test_runs_csv_has_a_reused_column(reuse_store, capsys):
    from transferlab.cli import main

    assert main(["runs", "--csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert table.columns[-1] == "reused"
    cells = dict(zip(table["run_id"], table["reused"]))
    assert cells[reuse_store["reuser"]] == "head"
    assert cells[reuse_store["source"]] == "" and cells[reuse_store["old"]] == ""
