"""A real browser: start the dashboard headless on 127.0.0.1, visit every page in Debian's Chromium,
assert that no Streamlit exception block appears, and save a screenshot of each page.

Screenshots go to ``$TRANSFERLAB_SCREENSHOTS`` (the README's come from a run with the demo store) or
the test's temporary folder. Skipped only when Chromium or its driver is not installed (`.ci/run`
installs both).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PAGES = {"home": "", "backbones": "backbones", "run": "run", "compare": "compare",
         "data_efficiency": "data_efficiency", "negative_transfer": "negative_transfer", "plugins": "plugins",
         "share": "share"}

pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                                reason="Debian chromium and chromium-driver are not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dashboard_url(seeded_home, tmp_path):
    home = Path(os.environ.get("TRANSFERLAB_BROWSER_HOME") or seeded_home)
    port = _free_port()
    env = dict(os.environ, TRANSFERLAB_HOME=str(home), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    env.pop("TRANSFERLAB_READ_ONLY", None)
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
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
            pytest.fail("the dashboard did not start: " + (tmp_path / "streamlit.log").read_text()[-2000:])
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


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


def test_every_page_renders_in_chromium(dashboard_url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    out = Path(os.environ.get("TRANSFERLAB_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    for name, path in PAGES.items():
        browser.get(f"{dashboard_url}/{path}")
        _wait_rendered(browser)
        exceptions = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
        assert not exceptions, f"{name}: {exceptions[0].text[:500]}"
        assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text, name
        browser.save_screenshot(str(out / f"{name}.png"))
        assert (out / f"{name}.png").stat().st_size > 10_000
    charts = None
    browser.get(f"{dashboard_url}/data_efficiency")
    _wait_rendered(browser)
    charts = browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
    assert len(charts) >= 2, "the data-efficiency page draws its two charts"
