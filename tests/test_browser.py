"""A real browser: start the dashboard headless on 127.0.0.1 and drive Debian's Chromium.

- every page renders without a Streamlit exception block, with a screenshot of each;
- a deep link opened first on a fresh server (``/data_efficiency``) runs through app.py: the sidebar
  lists the pages registered in ``st.navigation`` by title, not script file names, and the page draws;
- in read-only mode, again deep link first on a fresh server, the Run page is neither listed nor served.

Each test starts its own server, because Streamlit decides how a server routes pages when its first
session arrives. Screenshots go to ``$TRANSFERLAB_SCREENSHOTS`` (the README's come from a run with the
demo store, ``$TRANSFERLAB_BROWSER_HOME``) or the test's temporary folder. Skipped only when Chromium or
its driver is not installed (`.ci/run` installs both).
"""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlparse
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from transferlab.dashboard.common import page_list

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                                reason="Debian chromium and chromium-driver are not installed")


def _url_path(script: str) -> str:
    """The URL path app.py gives a page: its file name without ``.py``."""
    return Path(script).stem


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _dashboard(home: Path, log_path: Path, read_only: bool):
    """A freshly started dashboard server; yields its base URL."""
    port = _free_port()
    env = dict(os.environ, TRANSFERLAB_HOME=str(home), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    env.pop("TRANSFERLAB_READ_ONLY", None)
    if read_only:
        env["TRANSFERLAB_READ_ONLY"] = "1"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=log_path.parent,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(120):
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    time.sleep(0.5)
            else:
                pytest.fail("the dashboard did not start: " + log_path.read_text()[-2000:])
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)


@pytest.fixture
def start_dashboard(seeded_home, tmp_path):
    """``start_dashboard(read_only=False)`` starts a fresh server over the seeded store (or
    ``$TRANSFERLAB_BROWSER_HOME``) and returns its URL; every server stops when the test ends."""
    home = Path(os.environ.get("TRANSFERLAB_BROWSER_HOME") or seeded_home)
    started = itertools.count()
    with ExitStack() as servers:
        def start(read_only: bool = False) -> str:
            log = tmp_path / f"streamlit-{next(started)}.log"
            return servers.enter_context(_dashboard(home, log, read_only))

        yield start


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1500,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    out = Path(os.environ.get("TRANSFERLAB_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _wait_rendered(driver, timeout: float = 90.0) -> None:
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    while time.time() < deadline:
        titles = driver.find_elements(By.CSS_SELECTOR, "h1")
        running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        if titles and not running:
            time.sleep(2.0)  # let plotly draw
            return
        time.sleep(0.5)
    raise AssertionError("page did not finish rendering")


def _assert_no_exception(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    exceptions = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not exceptions, f"{name}: {exceptions[0].text[:500]}"
    assert "Traceback" not in driver.find_element(By.TAG_NAME, "body").text, name


def _sidebar_pages(driver) -> list[tuple[str, str]]:
    """(title, URL path) of each link in the sidebar navigation."""
    from selenium.webdriver.common.by import By

    links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a[data-testid="stSidebarNavLink"]')
    # The title sits in a span of its own; the link's text also holds the icon's ligature name ("home").
    return [(link.find_element(By.CSS_SELECTOR, "span[label]").get_attribute("label"),
             urlparse(link.get_attribute("href")).path.strip("/"))
            for link in links]


def _h1(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h1")]


def test_every_page_renders_in_chromium(start_dashboard, browser, screenshots):
    url = start_dashboard()
    for i, (script, _, _) in enumerate(page_list(False)):
        name = _url_path(script)
        browser.get(f"{url}/{'' if i == 0 else name}")
        _wait_rendered(browser)
        _assert_no_exception(browser, name)
        browser.save_screenshot(str(screenshots / f"{name}.png"))
        assert (screenshots / f"{name}.png").stat().st_size > 10_000


def test_deep_link_opened_first_on_a_fresh_server_runs_through_the_app(start_dashboard, browser, screenshots):
    from selenium.webdriver.common.by import By

    url = start_dashboard()
    browser.get(f"{url}/data_efficiency")  # the server's first session: nothing has opened / before
    _wait_rendered(browser)
    browser.save_screenshot(str(screenshots / "deeplink.png"))
    _assert_no_exception(browser, "data_efficiency")
    expected = [(title, "" if i == 0 else _url_path(script)) for i, (script, title, _) in enumerate(page_list(False))]
    assert _sidebar_pages(browser) == expected, "the sidebar lists the pages app.py registers, by title"
    assert _h1(browser) == ["Data efficiency"]
    # app.py ran before the page: its page config names the tab and makes the layout wide.
    assert browser.title == "transferlab"
    assert browser.find_element(By.CSS_SELECTOR, '[data-testid="stMainBlockContainer"]').size["width"] > 900
    charts = browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
    assert len(charts) >= 2, "the data-efficiency page draws its two charts"
    assert browser.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]'), "and its summary table"
    assert "Mean test" in browser.find_element(By.TAG_NAME, "body").text


def test_read_only_deep_link_first_neither_lists_nor_serves_the_run_page(start_dashboard, browser, screenshots):
    from selenium.webdriver.common.by import By

    url = start_dashboard(read_only=True)
    browser.get(f"{url}/data_efficiency")
    _wait_rendered(browser)
    _assert_no_exception(browser, "data_efficiency (read-only)")
    listed = _sidebar_pages(browser)
    expected = [(title, "" if i == 0 else _url_path(script)) for i, (script, title, _) in enumerate(page_list(True))]
    assert listed == expected
    assert "run" not in [path for _, path in listed] and "Run" not in [title for title, _ in listed]
    assert _h1(browser) == ["Data efficiency"]

    browser.get(f"{url}/run")
    _wait_rendered(browser)
    browser.save_screenshot(str(screenshots / "run-read-only.png"))
    body = browser.find_element(By.TAG_NAME, "body").text
    assert _h1(browser) == ["transferlab"], "an unknown page falls back to Home"
    assert "Run a comparison" not in body and "Launch in the background" not in body
    assert "Run" not in [title for title, _ in _sidebar_pages(browser)]
