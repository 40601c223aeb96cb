"""Every dashboard page renders (Streamlit AppTest) over a store seeded by real tiny engine runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "dashboard" / "views"
VIEW_PAGES = ["home.py", "backbones.py", "compare.py", "data_efficiency.py", "negative_transfer.py", "plugins.py",
              "share.py", "verdict.py", "rank.py", "inspect.py"]


@pytest.fixture
def app_env(seeded_home, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HOME", str(seeded_home))
    monkeypatch.delenv("TRANSFERLAB_READ_ONLY", raising=False)
    return seeded_home


def _run_page(name: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGES / name), default_timeout=120)
    at.run()
    return at


def _all_text(at) -> str:
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "text", "info", "success", "warning",
                 "error", "exception", "code"):
        for element in getattr(at, kind, []):
            parts.append(str(getattr(element, "value", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("page", VIEW_PAGES + ["run.py"])
def test_page_renders_without_exception(app_env, page):
    at = _run_page(page)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.title, "every page has a title"


def test_every_registered_page_is_a_script_in_views_and_no_pages_folder_exists():
    from transferlab.dashboard.common import PAGES as REGISTERED

    scripts = sorted(p.name for p in PAGES.glob("*.py") if p.name != "__init__.py")
    assert sorted(name for name, _, _ in REGISTERED) == scripts
    # Streamlit scans a pages/ folder beside the entry script and then runs deep links without app.py.
    assert not (ROOT / "dashboard" / "pages").exists()


def test_app_runs_its_default_page_through_navigation(app_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "transferlab"
    at.switch_page("views/data_efficiency.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Data efficiency"


def test_home_shows_store_counts_and_demo_button(app_env):
    at = _run_page("home.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["succeeded"] == "20"  # 12 without a source + 8 transfers; the 2 pretrain jobs are inputs
    labels = {b.label for b in at.button}
    assert {"Run the strategies demo", "Run the backbones demo"} <= labels  # both embedded demos are offered


def test_compare_lists_the_settings_that_differ(app_env):
    at = _run_page("compare.py")
    tables = [df.value for df in at.dataframe]
    differing = tables[-1]
    assert {"strategy", "examples_per_class", "seed"} <= set(differing.columns)
    assert len(differing) == 20
    assert list(differing.columns[:2]) == ["run_id", "training"]  # ↗ still improving / converged per run


def test_compare_names_the_score_by_the_runs_metric(app_env):
    at = _run_page("compare.py")
    radio = next(r for r in at.radio if r.label == "Metric")
    assert radio.options == ["accuracy", "loss"]  # the seeded digits runs' head calls its score accuracy


def test_data_efficiency_table_holds_the_summary(app_env):
    at = _run_page("data_efficiency.py")
    assert any(c.value.startswith("Mean test accuracy over seeds") for c in at.caption)
    summary = at.dataframe[0].value
    assert set(summary["strategy"]) == {"scratch", "frozen_features", "full_fine_tune"}
    assert set(summary["examples_per_class"]) == {5, 10}
    assert (summary["n"] == 2).all()


def test_run_page_counts_jobs_and_reuses_finished_ones(app_env):
    at = _run_page("run.py")
    text = _all_text(at)
    assert "jobs" in text and "estimated time" in text


def test_read_only_mode_has_no_run_page_and_refuses_launches(app_env, monkeypatch):
    from transferlab.dashboard.common import page_list
    from transferlab.errors import UserError
    from transferlab.launch import launch

    assert "run.py" in [p[0] for p in page_list(False)]
    assert "run.py" not in [p[0] for p in page_list(True)]
    monkeypatch.setenv("TRANSFERLAB_READ_ONLY", "1")
    at = _run_page("run.py")
    assert "read-only" in at.error[0].value and not at.button
    with pytest.raises(UserError, match="read-only"):
        launch([object()])
    at = _run_page("home.py")
    assert not any(b.label == "Run the demo sweep" for b in at.button)


def test_read_only_pages_with_a_broken_store_show_no_traceback_or_path(tmp_path, monkeypatch):
    broken = tmp_path / "broken-store-dir"
    broken.mkdir()
    (broken / "runs.sqlite").write_bytes(b"not a database at all" * 50)
    monkeypatch.setenv("TRANSFERLAB_HOME", str(broken))
    monkeypatch.setenv("TRANSFERLAB_READ_ONLY", "1")
    for page in VIEW_PAGES:
        at = _run_page(page)
        text = _all_text(at)
        assert not at.exception
        assert "Traceback" not in text and str(tmp_path) not in text and "broken-store-dir" not in text, page
        if page not in ("plugins.py", "rank.py"):  # neither reads the store before there is something to show
            assert at.error, f"{page} should say that it could not read the store"


def test_viewing_pages_never_import_tensorflow(seeded_home):
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"for page in {VIEW_PAGES!r}:\n"
        f"    at = AppTest.from_file({str(PAGES)!r} + '/' + page, default_timeout=120)\n"
        "    at.run()\n"
        "    assert not at.exception, (page, at.exception)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    env = dict(os.environ, TRANSFERLAB_HOME=str(seeded_home))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["False", "False"]


def test_html_report_is_self_contained(app_env):
    from transferlab.dashboard.report import html_report
    from transferlab.store import Store

    store = Store()
    runs = store.runs_frame()
    runs = runs[runs["kind"] == "train"]
    report = html_report(runs, store.epochs_frame())
    assert report.count("<h2>") >= 6 and "digits: data efficiency" in report
    assert 'src="https://' not in report and "Plotly.newPlot" in report  # plotly.js inlined, no CDN
    assert json.dumps("frozen_features")[1:-1] in report


def test_share_page_builds_the_report_from_its_own_store_and_registry(app_env, monkeypatch):
    import transferlab.dashboard.report as report

    seen = []

    def spy(runs, epochs, store=None, registry=None):
        seen.append((runs, store, registry))
        return "<html>report</html>"

    monkeypatch.setattr(report, "html_report", spy)
    at = _run_page("share.py")
    next(b for b in at.button if b.label == "Build HTML report").click().run()
    assert not at.exception, at.exception
    (runs, store, registry), = seen
    # the page's own store (the report closes only a store it opened itself) and this session's plugins
    assert store is not None and store.url == f"sqlite:///{app_env / 'runs.sqlite'}"
    assert registry is not None and "digits" in registry.tasks
    assert set(runs["kind"]) == {"train"} and [b.label for b in at.get("download_button")][-1] == "Download report"


def test_run_page_shows_one_error_box_for_a_bad_dataset_and_launches_nothing(app_env, tmp_path, monkeypatch):
    from PIL import Image

    from transferlab.launch import launches

    folder = tmp_path / "one-class"
    (folder / "benign").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / "benign" / f"{i}.png")
    monkeypatch.setenv("TRANSFERLAB_MEDICAL_DIR", str(folder))
    before = len(launches())
    at = _run_page("run.py")
    next(m for m in at.multiselect if m.label == "Tasks").set_value(["medical_folder"]).run()
    next(b for b in at.button if b.label == "Launch in the background").click().run()
    assert not at.exception
    assert len(at.error) == 1
    assert "needs at least two" in at.error[0].value and "benign" in at.error[0].value
    assert len(launches()) == before


def test_backbones_page_shows_measured_frozen_accuracy_and_latency_of_this_machine(app_env):
    from transferlab.latency import Latency, machine_id, record_latencies

    record_latencies([Latency("small_cnn", "none", 32, 1, 0.75, 0.9, 5, machine_id(), "x", "2026-01-01T00:00:00"),
                      Latency("vgg16", "none", 224, 1, 99.0, 99.0, 5, "another machine", "x", "2026-01-01T00:00:00")])
    at = _run_page("backbones.py")
    assert not at.exception, at.exception
    backbones = at.dataframe[0].value.set_index("backbone")
    assert backbones.loc["small_cnn", "latency_ms"] == 0.75
    assert backbones["latency_ms"].isna()["vgg16"]  # measured elsewhere: not shown as this machine's
    frozen = at.dataframe[1].value
    assert set(frozen["starting_point"]) == {"random init", "pretrained on lfw_faces:shuffled"}
    assert "digits @ 5/class" in frozen.columns and set(frozen["backbone"]) == {"small_cnn"}
    assert all(cell.endswith("(2)") for cell in frozen["digits @ 5/class"])  # mean ± CI over the two seeds
    assert "Do better ImageNet models transfer better?" in _all_text(at)


# ------------------------------------------------------------------------------------------------ tables

# pages whose tables go through transferlab.dashboard.tables.show_table
TABLE_PAGES = ["home.py", "backbones.py", "compare.py", "data_efficiency.py", "verdict.py", "inspect.py"]


def test_no_table_on_any_page_spells_a_missing_value_as_none_or_nan(app_env):
    import re

    from transferlab.dashboard.tables import MISSING

    spelled_missing = re.compile(r"\b(?:None|nan|NaN|NaT)\b")
    seen = 0
    for page in VIEW_PAGES + ["run.py"]:
        at = _run_page(page)
        assert not at.exception, (page, at.exception)
        for table in at.dataframe:
            frame = table.value
            seen += 1
            for name in frame.columns:
                if frame[name].dtype != object:
                    continue
                spelled = [v for v in frame[name] if isinstance(v, str) and spelled_missing.search(v)]
                assert not spelled, (page, name, spelled[:3])
            if page in TABLE_PAGES:
                assert table.proto.placeholder == MISSING, page  # missing cells drawn as —, numbers kept numbers
    assert seen >= 8


def test_home_tasks_table_is_wide_enough_for_every_cell(app_env):
    from transferlab.dashboard.tables import CHAR_PX

    at = _run_page("home.py")
    tasks = next(t for t in at.dataframe if "ready" in t.value.columns)
    config = json.loads(tasks.proto.columns)
    widths = {key.split(":", 1)[-1]: value.get("width") for key, value in config.items()}
    for column in ("ready", "about"):
        longest = tasks.value[column].astype(str).str.len().max()
        assert isinstance(widths[column], int) and widths[column] >= longest * CHAR_PX, (column, widths)
    assert "needs its data (see about)" in set(tasks.value["ready"]) or "yes" in set(tasks.value["ready"])


def test_live_view_labels_a_run_on_the_whole_pool():
    import pandas as pd

    from transferlab.dashboard.live import _run_label

    row = dict(backbone="small_cnn", strategy="scratch", seed=0)
    assert _run_label(pd.Series(dict(row, examples_per_class=None))) == "small_cnn · scratch · all data · seed 0"
    assert _run_label(pd.Series(dict(row, examples_per_class=20.0))) == "small_cnn · scratch · 20/class · seed 0"
