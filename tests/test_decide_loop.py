"""The whole loop on data the project has never seen: rank --data, sweep --data, recommend, from the CLI."""
from __future__ import annotations

import json

from test_userdata import tiny_cli, write_class_tree  # noqa: F401  (tiny_cli is a fixture)
from transferlab.cli import main


def test_rank_sweep_and_recommend_on_a_folder_never_seen(tmp_path, tiny_cli, capsys, tl_home):  # noqa: F811
    root = write_class_tree(tmp_path / "Garden Birds", per_class=8)
    assert main(["rank", "--data", str(root), "--backbones", "tiny:none", "--input-size", "32"]) == 0
    ranked = capsys.readouterr().out
    assert "data.garden_birds" in ranked and "tiny" in ranked

    assert main(["sweep", "--data", str(root), "--backbones", "tiny", "--weights", "none",
                 "--strategies", "scratch,frozen_features", "--examples-per-class", "4", "--seeds", "0,1,2",
                 "--input-size", "32", "--epochs", "2", "--batch-size", "8", "--workers", "0"]) == 0
    swept = capsys.readouterr().out
    assert "status: succeeded 6" in swept

    assert main(["recommend", "--task", "data.garden_birds", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    rows = verdict["verdicts"]
    # one verdict for the measured size, naming a winner and a runner-up from this sweep's configurations,
    # tested over the three paired seeds, on the data version the sweep trained on
    assert [int(r["examples_per_class"]) for r in rows] == [4]
    for row in rows:
        assert {row["winner"], row["runner_up"]} == {"tiny · random init · scratch",
                                                      "tiny · random init · frozen_features"}
        assert row["winner_n"] == 3 and row["runner_up_n"] == 3 and row["outcome"] in ("win", "tie")
        assert len(row["data_version"]) == 12
    assert [s["task"] for s in verdict["summaries"]] == ["data.garden_birds"]

    # the text form names the task and its data version, and says win or tie for every size
    assert main(["recommend", "--task", "data.garden_birds"]) == 0
    text = capsys.readouterr().out
    assert f"data.garden_birds (data {rows[0]['data_version']})" in text
