"""The dashboard in headless Chromium at laptop and tablet sizes: the Huaning regulator signs
in, the charts render with data, and a city regulator drills from Yuxi into Huaning county.

The Huaning regulator's jurisdiction is one county, so it has nothing below to drill into;
the drill-down is driven by a Yuxi (5304) city regulator created for the test, and by
clicking the county in the regional comparison. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from tests.api.test_analytics import build_world
from tests.conftest import require_tool
from tests.e2e.conftest import CHROMEDRIVER, CHROMIUM, screenshot, start_chrome
from trace.models.enums import Role
from trace.services import accounts, demo

pytestmark = pytest.mark.browser

LAPTOP = (1366, 900)
TABLET = (820, 1180)


@pytest.fixture(scope="module")
def desktop() -> Iterator[Any]:
    """A desktop Chromium of our own: the shared `browser` fixture emulates a phone."""
    require_tool(CHROMIUM, "browser tests drive Debian's chromium")
    require_tool(CHROMEDRIVER, "browser tests drive Debian's chromium-driver")
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager download anything
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
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    driver = start_chrome(options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def world(app: Flask) -> dict[str, Any]:
    ids = build_world(app)
    with app.extensions["trace.sessions"]() as s:
        accounts.create_user(
            s,
            demo.SYSTEM,
            {
                "username": "yuxi-regulator",
                "password": demo.DEMO_PASSWORD,
                "display_name": "玉溪市市场监督管理局",
                "role": Role.REGULATOR.value,
                "region_prefix": "5304",
            },
        )
        s.commit()
    return ids


def _sign_in(driver: Any, base: str, username: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{base}/login?next=/dashboard")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(demo.DEMO_PASSWORD)
    _follow(driver, driver.find_element(By.ID, "login-submit"))


def _follow(driver: Any, element: Any) -> None:
    """Click something that loads a new page, and wait until the old page is gone.

    While the old document is torn down, chromedriver may answer the staleness probe with
    an inspector error ("Node with given id does not belong to the document") instead of a
    stale-element error; that is the same news, so the wait polls on through it."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element("tag name", "html")
    element.click()
    wait = WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,))
    wait.until(expected_conditions.staleness_of(page))


def _series_points(driver: Any) -> list[tuple[float, float]]:
    from selenium.webdriver.common.by import By

    line = driver.find_element(By.CSS_SELECTOR, "#series-chart polyline.series-scans")
    pairs = line.get_attribute("points").split()
    return [(float(x), float(y)) for x, y in (p.split(",") for p in pairs)]


def test_huaning_regulator_dashboard_renders(
    desktop: Any, live_server: str, world: dict[str, Any]
) -> None:
    from selenium.webdriver.common.by import By

    driver = desktop
    driver.set_window_size(*LAPTOP)
    _sign_in(driver, live_server, "huaning-regulator")
    assert driver.current_url.endswith("/dashboard")
    assert driver.find_element(By.TAG_NAME, "h2").text.startswith("扫码量趋势")
    assert driver.find_element(By.ID, "kpi-scans").text == "10"
    # The time series is drawn: a point per week, not flat (there are scans), on screen.
    chart = driver.find_element(By.ID, "series-chart")
    assert chart.is_displayed() and chart.size["width"] > 600
    points = _series_points(driver)
    assert len(points) >= 50 and len({y for _, y in points}) > 1
    # The regional comparison and the top list have bars; the region table names the county.
    bars = driver.find_elements(By.CSS_SELECTOR, "#region-bars rect")
    assert len(bars) == 1 and float(bars[0].get_attribute("width")) > 0
    assert driver.find_elements(By.CSS_SELECTOR, "#product-bars rect")
    assert "华宁县" in driver.find_element(By.ID, "region-table").text
    assert driver.find_elements(By.CSS_SELECTOR, "#farming-chart rect")
    # Alerts for the county, with the regulator's buttons.
    alerts = driver.find_elements(By.CSS_SELECTOR, "#alerts li.alert")
    assert len(alerts) == 2
    assert "嵩" not in driver.page_source
    screenshot(driver, "dashboard-huaning-regulator", full_page=True)

    # Acknowledge an alert through the page: the status changes after the round trip.
    first = alerts[0]
    first.find_element(By.NAME, "note").send_keys("已通知企业")
    _follow(driver, first.find_element(By.CSS_SELECTOR, "form button"))
    status = driver.find_elements(By.CSS_SELECTOR, "#alerts li.alert .status")
    assert any(s.text == "已确认" for s in status)

    # English, and a tablet-sized window still shows the chart at full width.
    _follow(driver, driver.find_element(By.ID, "lang-switch"))
    assert driver.find_element(By.TAG_NAME, "h2").text.startswith("Scan volume")
    driver.set_window_size(*TABLET)
    chart = driver.find_element(By.ID, "series-chart")
    assert chart.size["width"] > TABLET[0] * 0.7
    screenshot(driver, "dashboard-huaning-regulator-tablet-en", full_page=True)


def test_drill_from_city_into_a_county(
    desktop: Any, live_server: str, world: dict[str, Any]
) -> None:
    from selenium.webdriver.common.by import By

    driver = desktop
    driver.set_window_size(*LAPTOP)
    _sign_in(driver, live_server, "yuxi-regulator")
    crumbs = driver.find_element(By.ID, "breadcrumb").text
    assert crumbs.replace(" ", "") == "全国›云南省›玉溪市"
    # Click Huaning in the regional comparison chart.
    _follow(driver, driver.find_element(By.CSS_SELECTOR, '#region-bars a[data-region="530424"]'))
    assert driver.current_url.endswith("region=530424")
    assert driver.find_element(By.ID, "breadcrumb").text.replace(" ", "") == (
        "全国›云南省›玉溪市›华宁县"
    )
    assert driver.find_element(By.ID, "kpi-scans").text == "10"
    assert len(_series_points(driver)) >= 50
    screenshot(driver, "dashboard-drill-huaning-county", full_page=True)
    # And back up through the breadcrumb.
    _follow(driver, driver.find_element(By.CSS_SELECTOR, '#breadcrumb a[data-region="5304"]'))
    assert "华宁县" in driver.find_element(By.ID, "region-table").text
