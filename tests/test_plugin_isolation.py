"""Hostile plugins never hang, corrupt output, or take a command down.

Plugins that hang at import or in a hook are reported ``timed out`` under their own name within the deadline
(TRANSFERLAB_PLUGIN_TIMEOUT); what they print, even after the deadline, lands in their health row and never
in a command's output; a backbone whose build raises gets its own row. The end-to-end checks run the real
command in a subprocess against entry points written into a temporary site folder.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import support_plugins
from test_registry import GOOD_PLUGIN, fake_entry_points

from transferlab import hookimpl
from transferlab.errors import PluginError, UserError
from transferlab.isolation import OUTPUT_LIMIT, CapturedOutput
from transferlab.registry import DEFAULT_PLUGINS, load_registry, safe_available
from transferlab.specs import TaskSpec

DEADLINE_S = 6  # the subprocesses' TRANSFERLAB_PLUGIN_TIMEOUT: the built-ins import well within it on a slow CI
STARTUP_MARGIN_S = 20  # interpreter start and the built-ins, on a loaded 2-core machine

HANGS_AT_IMPORT = """
import sys, time
print("early_hang: importing")
while True:  # never returns, and keeps printing long after the deadline
    print("tick")
    sys.stderr.write("tock\\n")
    time.sleep(0.05)
"""

# Imported after early_hang has hung inside its import, and importing a module nobody imported yet: Python 3's
# per-module import locks let it through.
FINE_PLUGIN = "import fresh_helper\n" + GOOD_PLUGIN

CHATTY_PLUGIN = """
import sys, warnings
from transferlab import PhaseSpec, StrategySpec, hookimpl

print("hello from chatty")
warnings.warn("chatty warns on stderr")

@hookimpl
def register_strategies():
    print("chatty registering")
    return [StrategySpec(name="chatty_probe", description="x", phases=(PhaseSpec("head", "head"),))]
"""

HANGS_IN_HOOK = """
import time
from transferlab import hookimpl

@hookimpl
def register_tasks():
    time.sleep(3600)
"""

BRITTLE_BACKBONE = """
from transferlab import BackboneSpec, hookimpl

def build(input_shape, weights=None):
    raise RuntimeError("no such layer: conv9")

@hookimpl
def register_backbones():
    return [BackboneSpec(name="brittle", build=build, preprocess=lambda x: x / 255.0, preprocessing="unit",
                         min_input_size=8, default_input_size=16)]
"""

# The real command, then one line on stderr saying whether TensorFlow got imported.
CLI_THEN_REPORT_TF = (
    "import sys\n"
    "from transferlab.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "sys.stderr.write('\\nTENSORFLOW_IMPORTED=%s\\n' % ('tensorflow' in sys.modules))\n"
    "sys.exit(rc)\n"
)


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory):
    """A site folder with a plugin that hangs at import, one that hangs in a hook, a chatty one and a fine one."""
    return fake_entry_points(
        tmp_path_factory.mktemp("hostile"),
        {"early_hang": "early_hang", "fine": "fine_plugin", "chatty": "chatty_plugin", "hook_hang": "hook_hang"},
        {"early_hang": HANGS_AT_IMPORT, "fine_plugin": FINE_PLUGIN, "fresh_helper": "VALUE = 1\n",
         "chatty_plugin": CHATTY_PLUGIN, "hook_hang": HANGS_IN_HOOK},
    )


def _run_cli(site, tl_home, *argv, **env):
    full_env = dict(os.environ, PYTHONPATH=str(site), TRANSFERLAB_HOME=str(tl_home),
                    TRANSFERLAB_PLUGIN_TIMEOUT=str(DEADLINE_S), **env)
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", CLI_THEN_REPORT_TF, *argv], capture_output=True, text=True,
                         env=full_env, timeout=180)
    return out, time.monotonic() - start


def test_plugins_json_answers_in_time_with_hung_and_chatty_plugins(hostile_site, tl_home):
    out, seconds = _run_cli(hostile_site, tl_home, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    # two deadlines: the hung import and the hung hook; without them this never returns
    assert seconds < 2 * DEADLINE_S + STARTUP_MARGIN_S
    rows = {row["name"]: row for row in json.loads(out.stdout)}  # the whole of stdout is the JSON
    hung = rows["early_hang"]
    assert hung["status"] == "timed out"
    assert f"import timed out after {DEADLINE_S} s (TRANSFERLAB_PLUGIN_TIMEOUT)" in hung["error"]
    assert hung["output"].startswith("early_hang: importing\ntick\n") and "tock" in hung["output"]
    assert len(hung["output"]) < OUTPUT_LIMIT + 100  # it printed for seconds; the row keeps the ends
    assert rows["hook_hang"]["status"] == "timed out"
    assert f"register_tasks timed out after {DEADLINE_S} s" in rows["hook_hang"]["error"]
    assert rows["fine"]["status"] == "ok" and rows["fine"]["registered"] == {"strategy": ["third_party_probe"]}
    chatty = rows["chatty"]
    assert chatty["status"] == "ok" and chatty["registered"] == {"strategy": ["chatty_probe"]}
    assert "hello from chatty" in chatty["output"] and "chatty warns on stderr" in chatty["output"]
    assert "chatty registering" in chatty["output"]
    assert all(rows[name]["status"] == "ok" for name in DEFAULT_PLUGINS)
    for text in ("tick", "tock", "hello from chatty", "chatty warns"):  # stdout parsed whole, so nothing there
        assert text not in out.stderr
    assert "TENSORFLOW_IMPORTED=False" in out.stderr


def test_tasks_command_answers_in_time_with_a_hung_plugin(hostile_site, tl_home):
    out, seconds = _run_cli(hostile_site, tl_home, "tasks")
    assert out.returncode == 0, out.stderr
    assert seconds < 2 * DEADLINE_S + STARTUP_MARGIN_S
    assert any(line.startswith("digits ") for line in out.stdout.splitlines())
    assert "tick" not in out.stdout + out.stderr and "hello from chatty" not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_backbone_whose_build_raises_gets_its_own_row(tmp_path, tl_home):
    site = fake_entry_points(tmp_path, {"brittle": "brittle_plugin"}, {"brittle_plugin": BRITTLE_BACKBONE})
    out, _ = _run_cli(site, tl_home, "backbones", "--only", "brittle,small_cnn", TRANSFERLAB_PLUGINS="brittle")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.split()}
    assert "build failed: RuntimeError: no such layer: conv9" in lines["brittle"]
    assert lines["small_cnn"].split()[1].isdigit()  # total_params of the healthy one, in the same table
    assert "build failed" not in lines["small_cnn"]


# ------------------------------------------------------------------------------------------ in-process

@pytest.fixture
def short_deadline(monkeypatch):
    """A half-second deadline, after the built-ins have been imported once at the default one."""
    load_registry()
    monkeypatch.setenv("TRANSFERLAB_PLUGIN_TIMEOUT", "0.5")
    return 0.5


def _row(registry, name):
    return next(p for p in registry.health() if p["name"] == name)


def _wait_for(condition, seconds=10.0):
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)
    return condition()


def test_hook_that_hangs_is_timed_out_and_its_late_prints_stay_in_its_row(short_deadline, capsys):
    release = threading.Event()

    class HangingHook:
        @staticmethod
        @hookimpl
        def register_tasks():
            print("waiting")
            release.wait(30)
            print("late print")
            return []

    streams = sys.stdout, sys.stderr
    start = time.monotonic()
    registry = load_registry(extra_plugins=[("hangs", HangingHook), ("good", support_plugins.GoodTaskPlugin)])
    assert time.monotonic() - start < short_deadline + 5
    row = _row(registry, "hangs")
    assert row["status"] == "timed out" and "register_tasks timed out after 0.5 s" in row["error"]
    assert row["output"] == "waiting\n"
    assert _row(registry, "good")["status"] == "ok" and "digits_again" in registry.tasks
    release.set()  # the abandoned thread goes on, and prints after the registry was built
    assert _wait_for(lambda: "late print" in _row(registry, "hangs")["output"])
    assert _wait_for(lambda: (sys.stdout, sys.stderr) == streams)  # put back once the last plugin thread ended
    captured = capsys.readouterr()
    assert "waiting" not in captured.out + captured.err and "late print" not in captured.out + captured.err


def test_strict_mode_raises_on_a_timeout(short_deadline, monkeypatch):
    release = threading.Event()

    class HangingHook:
        @staticmethod
        @hookimpl
        def register_strategies():
            release.wait(30)
            return []

    monkeypatch.setenv("TRANSFERLAB_STRICT_PLUGINS", "1")
    try:
        with pytest.raises(PluginError, match=r"'hangs': register_strategies timed out after 0.5 s"):
            load_registry(extra_plugins=[("hangs", HangingHook)])
    finally:
        release.set()


HELD_AT_IMPORT = """
import plugin_release
print("held: importing")
plugin_release.EVENT.wait(30)
from transferlab import hookimpl
"""


def test_hung_import_is_reported_at_once_on_the_next_load(short_deadline, tmp_path, monkeypatch):
    site = fake_entry_points(
        tmp_path, {"aaa_held": "held_plugin", "fine": "fine_plugin"},
        {"held_plugin": HELD_AT_IMPORT, "fine_plugin": FINE_PLUGIN, "fresh_helper": "VALUE = 1\n",
         "plugin_release": "import threading\nEVENT = threading.Event()\n"})
    monkeypatch.syspath_prepend(str(site))
    import plugin_release

    try:
        first = load_registry()
        start = time.monotonic()
        second = load_registry()  # importing it again would wait on its module lock for another deadline
        assert time.monotonic() - start < short_deadline
        for registry in (first, second):
            assert _row(registry, "aaa_held")["status"] == "timed out"
            assert _row(registry, "aaa_held")["output"] == "held: importing\n"
            assert _row(registry, "fine")["status"] == "ok" and "third_party_probe" in registry.strategies
        assert "import timed out after 0.5 s" in _row(first, "aaa_held")["error"]
        assert "still running from an earlier try that timed out after 0.5 s" in _row(second, "aaa_held")["error"]
    finally:
        plugin_release.EVENT.set()
        assert _wait_for(lambda: "held_plugin" not in sys.modules or hasattr(sys.modules["held_plugin"], "hookimpl"))
        for module in ("held_plugin", "fine_plugin", "fresh_helper", "plugin_release"):
            sys.modules.pop(module, None)


def _task(name, available):
    return TaskSpec(name=name, description="", load=lambda: None, num_classes=2, available=available)


def test_safe_available_answers_raises_and_hangs_without_leaking(short_deadline, capsys):
    release = threading.Event()

    def broken():
        print("checking the disk")
        raise OSError("no disk")

    def hangs():
        release.wait(30)
        return True

    try:
        assert safe_available(_task("here", lambda: True)) is True
        assert safe_available(_task("away", lambda: 0)) is False
        reason = safe_available(_task("broken", broken))
        assert reason.startswith("available() raised OSError: no disk (test_plugin_isolation.py:")
        hung = _task("hangs", hangs)
        start = time.monotonic()
        assert safe_available(hung) == "available() timed out after 0.5 s (TRANSFERLAB_PLUGIN_TIMEOUT); left out"
        assert "still running" in safe_available(hung)  # at once: a page rerun does not wait again
        assert time.monotonic() - start < short_deadline + 5
    finally:
        release.set()
    assert "checking the disk" not in capsys.readouterr().out


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "inf", "nan"])
def test_bad_timeout_is_one_message_and_exit_2(raw, monkeypatch, capsys):
    from transferlab.cli import main

    monkeypatch.setenv("TRANSFERLAB_PLUGIN_TIMEOUT", raw)
    with pytest.raises(UserError, match=rf"TRANSFERLAB_PLUGIN_TIMEOUT must be a number of seconds greater than 0 "
                                        rf"\(default 10\)\. Received: TRANSFERLAB_PLUGIN_TIMEOUT='{raw}'"):
        load_registry()
    assert main(["plugins"]) == 2
    assert capsys.readouterr().err.startswith("transferlab: error: TRANSFERLAB_PLUGIN_TIMEOUT must be")


def test_captured_output_keeps_the_start_and_the_end():
    output = CapturedOutput()
    output.write("START" + "x" * 10_000)
    output.write("END")
    text = output.text()
    half = OUTPUT_LIMIT // 2
    assert text.startswith("START") and text.endswith("xEND")
    assert f"\n[... {10_008 - 2 * half} characters left out ...]\n" in text
    short = CapturedOutput()
    short.write("a\n")
    short.write("b\n")
    assert short.text() == "a\nb\n"


def _hostile_registry(release):
    class HangingHook:
        @staticmethod
        @hookimpl
        def register_tasks():
            release.wait(30)
            return []

    class Chatty:
        @staticmethod
        @hookimpl
        def register_strategies():
            print("chatty says hello")
            return []

    return load_registry(extra_plugins=[("hangs", HangingHook), ("chatty", Chatty)])


def test_plugins_table_shows_timed_out_and_output(short_deadline, monkeypatch, capsys):
    from transferlab import cli

    release = threading.Event()
    try:
        registry = _hostile_registry(release)
    finally:
        release.set()
    monkeypatch.setattr(cli, "_registry", lambda: registry)
    assert cli.main(["plugins"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.split()}
    assert "timed out" in lines["hangs"] and "register_tasks timed out after 0.5 s" in lines["hangs"]
    assert " ok " in lines["chatty"] and lines["chatty"].rstrip().endswith("chatty says hello")


def test_plugins_page_shows_timed_out_plugins_and_their_output(short_deadline, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from transferlab import registry as registry_module

    release = threading.Event()
    try:
        registry = _hostile_registry(release)
    finally:
        release.set()
    monkeypatch.setattr(registry_module, "get_registry", lambda: registry)
    st.cache_resource.clear()  # the page's cached registry from any earlier test
    at = AppTest.from_file(os.path.join(os.path.dirname(__file__), "..", "dashboard", "views", "plugins.py"),
                           default_timeout=60)
    at.run()
    assert not at.exception and not at.error
    assert at.warning[0].value.startswith(f"1 of {len(registry.plugins)} plugins reported an error (1 timed out)")
    frame = at.dataframe[0].value.set_index("plugin")
    assert frame.loc["hangs", "status"] == "timed out" and "after 0.5 s" in frame.loc["hangs", "error"]
    assert frame.loc["chatty", "status"] == "ok" and frame.loc["chatty", "output"] == "yes"
    assert [code.value.strip() for code in at.code] == ["chatty says hello"]
    st.cache_resource.clear()
