"""Browser tests: the app on a live local server, driven by headless Chromium (Debian's
chromium + chromedriver through Selenium; nothing is ever downloaded).

Outside CI a missing browser skips these tests with the reason; in CI it fails them.
Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import require_tool
from tests.web.conftest import World, world  # noqa: F401  (fixture re-exported)
from trace.config import Config

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
VIEWPORT = (390, 844)
KIOSK_IDLE_SECONDS = 2


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Browser tests run on SQLite only: they test pages, the backends are tested below."""
    from trace.cli.db import upgrade

    url = f"sqlite:///{tmp_path / 'e2e.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture
def config(config: Config) -> Config:
    return config.with_overrides(resolve_rate_limit="off", kiosk_idle_seconds=KIOSK_IDLE_SECONDS)


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require_tool(CHROMIUM, "browser tests drive Debian's chromium")
    require_tool(CHROMEDRIVER, "browser tests drive Debian's chromium-driver")
    # Never let Selenium Manager fetch a browser or driver: the paths below are given.
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--lang=zh-CN",
        f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "mobileEmulation",
        {
            "deviceMetrics": {"width": VIEWPORT[0], "height": VIEWPORT[1], "pixelRatio": 2},
            "userAgent": (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
                "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47 NetType/4G"
            ),
        },
    )
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    driver = start_chrome(options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def driver(browser: Any) -> Any:
    browser.delete_all_cookies()
    return browser


def screenshot(driver: Any, name: str, full_page: bool = False) -> Path:
    """Save a PNG under test-artifacts/ (the whole page with full_page, via DevTools)."""
    import base64

    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if full_page:
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        path.write_bytes(base64.b64decode(shot["data"]))
    else:
        driver.save_screenshot(str(path))
    return path


def start_chrome(options: Any) -> Any:
    """A Chrome session whose renderer has shown a page. Debian's chromium, started many
    times in one suite, now and then loses its first renderer ("Unable to receive message
    from renderer", seen once in CI); that is the browser's start-up, not the page under
    test, so one fresh start is tried before giving up."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    for attempt in (1, 2):
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(30)
        try:
            driver.get("data:text/html,<p>ready</p>")
            if driver.find_element("tag name", "p").text == "ready":
                return driver
        except WebDriverException:
            if attempt == 2:
                raise
        driver.quit()
    raise RuntimeError("chromium did not render a page")
