"""The documented example plugin installs from docs/example-plugin, registers, and runs a job."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_example_plugin_installs_registers_and_runs(tmp_path, monkeypatch):
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(ROOT / "docs" / "example-plugin")],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = dict(os.environ, PYTHONPATH=str(target), TRANSFERLAB_HOME=str(tmp_path / "home"), TRANSFERLAB_QUIET="1")
    listed = subprocess.run([sys.executable, "-m", "transferlab.cli", "plugins", "--json"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "example")
    assert row["status"] == "ok" and row["version"] == "0.1.0"
    assert row["registered"] == {"backbone": ["example_convnet"], "strategy": ["example_head_then_top4"]}
    run = subprocess.run(
        [sys.executable, "-m", "transferlab.cli", "run", "--task", "digits", "--backbone", "example_convnet",
         "--strategy", "example_head_then_top4", "--examples-per-class", "5", "--epochs", "1",
         "--fine-tune-epochs", "1", "--input-size", "16", "--workers", "0"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "status: succeeded 1" in run.stdout
    # the strategy did what its docstring says, with no change to core: head, then the top 4 units with
    # weights (the example net has 2) at a tenth of the head's learning rate
    from transferlab.store import Store

    monkeypatch.setenv("TRANSFERLAB_HOME", str(tmp_path / "home"))
    row = Store().runs_frame().iloc[0]
    phases = row["phases_json"] if isinstance(row["phases_json"], list) else json.loads(row["phases_json"])
    head, top4 = phases
    assert head["train"] == "head" and top4["train"] == "top 4" and top4["units_trained"] == 2
    assert top4["learning_rate"] == pytest.approx(head["learning_rate"] / 10)
    assert head["verified"] and top4["verified"] and top4["trainable_params"] > head["trainable_params"]
