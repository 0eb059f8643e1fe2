"""A kiosk whose barcode scanner types the label's URL and Enter: the result shows large,
then the idle screen comes back after the configured seconds."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import KIOSK_IDLE_SECONDS, screenshot
from tests.web.conftest import World

pytestmark = pytest.mark.browser


def _wait(driver: Any, condition: Any, timeout: float = 10) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _scan(driver: Any, text: str) -> None:
    """Type like a scanner: into whatever has the focus, then Enter."""
    from selenium.webdriver.common.keys import Keys

    driver.switch_to.active_element.send_keys(text + Keys.ENTER)


def test_kiosk_scan_and_return_to_idle(live_server: str, driver: Any, world: World) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{live_server}/kiosk")
    driver.find_element(By.ID, "token-input").send_keys(world.demo["tokens"]["kiosk-huaning"])
    driver.find_element(By.CSS_SELECTOR, "form button").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "code-input"))
    idle = driver.find_element(By.ID, "idle")
    assert idle.is_displayed() and "溯源码" in idle.text
    assert driver.switch_to.active_element.get_attribute("id") == "code-input"
    screenshot(driver, "kiosk-idle")

    _scan(driver, "HTTPS://T.EXAMPLE.CN/Q/" + world.code(0))
    _wait(driver, lambda d: d.find_element(By.ID, "result").is_displayed())
    title = driver.find_element(By.ID, "verdict-title")
    assert title.text == "正品"
    assert driver.find_element(By.ID, "verdict").get_attribute("data-verdict") == "genuine"
    # Large: readable from a step away.
    assert float(title.value_of_css_property("font-size").removesuffix("px")) >= 40
    assert driver.find_element(By.ID, "product").text == "华宁柑桔"
    assert "华宁县盘溪镇华溪村" in driver.find_element(By.ID, "facts").text
    shown_at = time.monotonic()
    screenshot(driver, "kiosk-result")
    scan = world.scans()[-1]
    assert (scan.channel, scan.region_code) == ("kiosk", "530424")

    # Back to idle by itself after the configured seconds.
    _wait(
        driver,
        lambda d: d.find_element(By.ID, "idle").is_displayed(),
        timeout=KIOSK_IDLE_SECONDS + 8,
    )
    assert time.monotonic() - shown_at >= KIOSK_IDLE_SECONDS - 0.5
    assert not driver.find_element(By.ID, "result").is_displayed()
    assert driver.find_element(By.ID, "code-input").get_attribute("value") == ""

    # The next scan is a counterfeit: shown as such, without product facts.
    _scan(driver, "HTTPS://T.EXAMPLE.CN/Q/" + "A" * 27)
    _wait(driver, lambda d: d.find_element(By.ID, "result").is_displayed())
    assert driver.find_element(By.ID, "verdict").get_attribute("data-verdict") == "counterfeit"
    assert "疑似假冒" in driver.find_element(By.ID, "verdict-title").text
    assert not driver.find_element(By.ID, "summary").is_displayed()
    screenshot(driver, "kiosk-counterfeit")
    assert [s.channel for s in world.scans()] == ["kiosk", "kiosk"]
