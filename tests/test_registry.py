"""The plugin system: built-ins through public hooks, broken plugins isolated, strict mode, no TF on import."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import support_plugins

from transferlab import hookimpl
from transferlab.errors import PluginError, SpecError, UnknownNameError
from transferlab.registry import DEFAULT_PLUGINS, load_registry
from transferlab.specs import BackboneSpec, PhaseSpec, StrategySpec, TaskSpec


def _row(registry, name):
    return next(p for p in registry.health() if p["name"] == name)


def test_builtins_register_through_hooks():
    registry = load_registry()
    assert {"vgg16", "resnet50v2", "mobilenetv2", "inceptionv3", "efficientnetb0", "efficientnet_lite0",
            "small_cnn"} <= set(registry.backbones)
    assert {"scratch", "feature_extraction", "frozen_features", "fine_tune_top_k", "full_fine_tune", "lp_ft"} <= set(
        registry.strategies)
    assert {"animal_mnist", "digits", "lfw_faces", "fashion_mnist"} <= set(registry.tasks)
    assert [p["name"] for p in registry.health()][: len(DEFAULT_PLUGINS)] == list(DEFAULT_PLUGINS)
    assert all(p["status"] == "ok" for p in registry.health())
    assert registry.owner[("backbone", "efficientnet_lite0")] == "transferlab.plugins.efficientnet_lite"


def _registered_by(registry, plugin_name):
    """The health row of ``plugin_name``, checked to be healthy."""
    row = _row(registry, plugin_name)
    assert row["status"] == "ok", row["error"]
    return row


# One test per hook, named test_hook_<hook> (tests/test_hook_docs.py requires it): each registers a small
# plugin through pluggy the way a third party would and finds what it returned in the registry.
def test_hook_register_backbones():
    registry = load_registry(extra_plugins=[("tests.tiny", support_plugins.TinyPlugin)])
    row = _registered_by(registry, "tests.tiny")
    assert row["hooks"] == ["register_backbones"]
    assert row["registered"] == {"backbone": ["tiny", "leaky", "nan_net"]}
    tiny = registry.backbone("tiny")
    assert tiny.build is support_plugins.build_tiny and tiny.min_input_size == 8
    assert registry.owner[("backbone", "tiny")] == "tests.tiny"
    assert "tiny" not in load_registry().backbones  # only the plugin put it there


def test_hook_register_tasks():
    registry = load_registry(extra_plugins=[("tests.tasks", support_plugins.GoodTaskPlugin)])
    row = _registered_by(registry, "tests.tasks")
    assert row["hooks"] == ["register_tasks"]
    assert row["registered"] == {"task": ["digits_again"]}
    from transferlab.plugins.image_tasks import load_digits_task

    task = registry.task("digits_again")
    assert task.load is load_digits_task and task.num_classes == 10
    assert registry.owner[("task", "digits_again")] == "tests.tasks"
    assert "digits_again" not in load_registry().tasks


def test_hook_register_strategies():
    probe = StrategySpec(name="hook_probe", description="head, then everything",
                         phases=(PhaseSpec("head", "head"), PhaseSpec("all", "all")))

    class StrategyPlugin:
        @staticmethod
        @hookimpl
        def register_strategies():
            return [probe]

    registry = load_registry(extra_plugins=[("tests.strategies", StrategyPlugin)])
    row = _registered_by(registry, "tests.strategies")
    assert row["hooks"] == ["register_strategies"]
    assert row["registered"] == {"strategy": ["hook_probe"]}
    assert registry.strategy("hook_probe") is probe
    assert registry.owner[("strategy", "hook_probe")] == "tests.strategies"
    assert "hook_probe" not in load_registry().strategies


def test_unknown_name_lists_valid_names():
    registry = load_registry()
    with pytest.raises(UnknownNameError) as info:
        registry.strategy("fine_tune_everything")
    assert "Valid strategies: " in str(info.value)
    assert "lp_ft" in str(info.value) and "scratch" in str(info.value)


@pytest.mark.parametrize(
    "plugin, fragment",
    [
        (support_plugins.RaisingPlugin, "register_strategies raised RuntimeError: boom in hook"),
        (support_plugins.WrongTypePlugin, "must return a list of TaskSpec"),
        (support_plugins.UnknownHookPlugin, "unknown hook(s) ['register_backbone']"),
    ],
)
def test_broken_plugin_is_reported_and_others_keep_working(plugin, fragment):
    registry = load_registry(extra_plugins=[("broken", plugin), ("good", support_plugins.GoodTaskPlugin)])
    broken = _row(registry, "broken")
    assert broken["status"] == "error"
    assert fragment in broken["error"]
    assert _row(registry, "good")["status"] == "ok"
    assert "digits_again" in registry.tasks and "scratch" in registry.strategies


def test_duplicate_name_names_both_plugins_and_keeps_the_first():
    registry = load_registry(extra_plugins=[("dupe", support_plugins.DuplicatePlugin)])
    row = _row(registry, "dupe")
    assert row["status"] == "error"
    assert "'scratch' is already registered by plugin 'transferlab.plugins.strategies'" in row["error"]
    assert registry.owner[("strategy", "scratch")] == "transferlab.plugins.strategies"
    assert registry.strategies["my_unique_strategy"].description == "fine"  # the rest of the hook still counts


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="boom in hook"):
        load_registry(extra_plugins=[("broken", support_plugins.RaisingPlugin)])


def test_specs_validate_with_received_value():
    with pytest.raises(SpecError, match=r"Received: min_input_size=0"):
        BackboneSpec(name="x", build=lambda s, w: None, preprocess=lambda x: x, preprocessing="unit", min_input_size=0)
    with pytest.raises(SpecError, match=r"Received: name='Bad Name'"):
        TaskSpec(name="Bad Name", description="", load=lambda: None, num_classes=3)
    with pytest.raises(SpecError, match=r"Received: train='some'"):
        PhaseSpec("p", train="some")
    with pytest.raises(SpecError, match="cached_features takes one phase that trains the head alone"):
        StrategySpec(name="s", description="", phases=(PhaseSpec("p", "all"),), cached_features=True)


def fake_entry_points(tmp_path, entries: dict[str, str], modules: dict[str, str]):
    """A dist-info folder with entry points, and the modules they point at, on a PYTHONPATH dir (no pip needed;
    tests/test_plugin_isolation.py uses it too)."""
    site = tmp_path / "site"
    dist = site / "fakeplugins-1.2.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugins\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(
        "[transferlab]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()))
    for mod, code in modules.items():
        (site / f"{mod}.py").write_text(textwrap.dedent(code))
    return site


def _plugins_json(site, **env):
    full_env = dict(os.environ, PYTHONPATH=str(site), **env)
    out = subprocess.run([sys.executable, "-m", "transferlab.cli", "plugins", "--json"], capture_output=True,
                         text=True, env=full_env, timeout=120)
    assert out.returncode == 0, out.stderr
    return {row["name"]: row for row in json.loads(out.stdout)}


GOOD_PLUGIN = """
from transferlab import hookimpl, StrategySpec, PhaseSpec

@hookimpl
def register_strategies():
    return [StrategySpec(name="third_party_probe", description="x", phases=(PhaseSpec("head", "head"),))]
"""


def test_entry_point_that_fails_to_import_is_isolated(tmp_path):
    site = fake_entry_points(
        tmp_path,
        {"fine": "fine_plugin", "broken": "missing_module_xyz"},
        {"fine_plugin": GOOD_PLUGIN},
    )
    rows = _plugins_json(site)
    assert rows["broken"]["status"] == "error"
    assert "failed to import" in rows["broken"]["error"] and "missing_module_xyz" in rows["broken"]["error"]
    assert rows["fine"]["status"] == "ok" and rows["fine"]["version"] == "1.2.3"
    assert rows["fine"]["registered"] == {"strategy": ["third_party_probe"]}
    assert {"name", "version", "status", "error"} <= set(rows["fine"])


def test_plugin_allowlist(tmp_path):
    site = fake_entry_points(tmp_path, {"fine": "fine_plugin", "other": "fine_plugin"}, {"fine_plugin": GOOD_PLUGIN})
    assert "other" not in _plugins_json(site, TRANSFERLAB_PLUGINS="fine")
    rows = _plugins_json(site, TRANSFERLAB_PLUGINS="")
    assert "fine" not in rows and "transferlab.plugins.strategies" in rows


def test_loading_plugins_does_not_import_tensorflow():
    code = (
        "import sys, transferlab\n"
        "from transferlab.registry import get_registry\n"
        "r = get_registry()\n"
        "[t.available() for t in r.tasks.values()]\n"
        "[w.available() for b in r.backbones.values() for w in b.weight_sources]\n"
        "from transferlab import cli, jobs, store, analysis, data\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr


def test_torch_is_not_installed():
    import importlib.util

    assert importlib.util.find_spec("torch") is None
