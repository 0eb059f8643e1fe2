"""A shopper's phone (390×844, WeChat's browser) opens a demo code's page: the verdict and
every section are there, the opt-in location works, the language switches."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.e2e.conftest import VIEWPORT, screenshot
from tests.web.conftest import World
from tests.web.test_consumer import _add_media

pytestmark = pytest.mark.browser

SECTIONS = (
    "verdict",
    "locate",
    "product",
    "producer",
    "origin",
    "certificates",
    "inspections",
    "timeline",
    "media",
)


def _wait(driver: Any, condition: Any, timeout: float = 10) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def test_phone_page_of_a_demo_code(app: Flask, live_server: str, driver: Any, world: World) -> None:
    from selenium.webdriver.common.by import By

    _add_media(app, world)
    code = world.code(0)
    driver.get(f"{live_server}/Q/{code}")  # as the camera app opens the QR's upper-case URL

    assert driver.execute_script("return window.innerWidth") == VIEWPORT[0]
    verdict = driver.find_element(By.ID, "verdict")
    assert verdict.get_attribute("data-verdict") == "genuine"
    assert verdict.find_element(By.TAG_NAME, "h1").text == "正品"
    assert "首次查询" in verdict.text
    # The verdict is the first thing on the screen.
    assert verdict.location["y"] < 80 and verdict.rect["height"] < VIEWPORT[1] / 2
    for section in SECTIONS:
        element = driver.find_element(By.ID, section)
        assert element.is_displayed(), section
        assert element.rect["width"] <= VIEWPORT[0], section  # nothing wider than the phone
    assert driver.execute_script("return document.documentElement.scrollWidth") <= VIEWPORT[0]
    assert driver.find_element(By.ID, "product-name").text == "华宁柑桔"
    assert driver.find_element(By.ID, "producer-wechat").text == "华宁柑桔合作社"
    assert "华宁县盘溪镇华溪村" in driver.find_element(By.ID, "origin-line").text
    timeline = driver.find_element(By.ID, "timeline").text
    assert "阿维菌素" in timeline and "安全间隔期 14 天" in timeline and "采收" in timeline
    assert "合格" in driver.find_element(By.ID, "inspections").text
    assert "承诺达标合格证" in driver.find_element(By.ID, "certificates").text
    video = driver.find_element(By.CSS_SELECTOR, "#media video")
    assert video.get_attribute("poster") and video.get_attribute("controls") is not None
    # The photo really loads from the public media route (lazily: scroll to it first).
    driver.execute_script("document.getElementById('media').scrollIntoView()")
    _wait(
        driver,
        lambda d: d.execute_script(
            "var i=document.querySelector('#media img');return i&&i.complete&&i.naturalWidth>0"
        ),
    )
    driver.execute_script("window.scrollTo(0, 0)")
    screenshot(driver, "consumer-zh")
    screenshot(driver, "consumer-zh-full", full_page=True)

    # Opt-in location: the browser reports a point in Huaning; the page names the county.
    driver.execute_cdp_cmd(
        "Browser.grantPermissions", {"origin": live_server, "permissions": ["geolocation"]}
    )
    driver.execute_cdp_cmd(
        "Emulation.setGeolocationOverride",
        {"latitude": 24.19, "longitude": 102.93, "accuracy": 50},
    )
    driver.find_element(By.ID, "locate-btn").click()
    _wait(driver, lambda d: "华宁县" in d.find_element(By.ID, "locate-out").text)
    assert world.scans()[-1].region_code == "530424"

    # Switch language with the visible toggle: English page, still one scan.
    driver.find_element(By.ID, "lang-switch").click()
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#verdict h1").text == "Genuine")
    assert driver.find_element(By.CSS_SELECTOR, "#timeline h2").text == "Production record"
    assert "First scan" in driver.find_element(By.ID, "verdict").text
    assert driver.find_element(By.ID, "lang-switch").text == "中文"
    screenshot(driver, "consumer-en")
    assert world.scan_count() == 1


def test_counterfeit_code_on_a_phone(live_server: str, driver: Any, world: World) -> None:
    from selenium.webdriver.common.by import By

    code = world.code(1)
    driver.get(f"{live_server}/q/{code[:-2]}{'AA' if code[-2:] != 'AA' else 'EE'}")
    verdict = driver.find_element(By.ID, "verdict")
    assert verdict.get_attribute("data-verdict") == "counterfeit"
    assert "疑似假冒" in verdict.text and "12315" in verdict.text
    assert not driver.find_elements(By.ID, "product")
    screenshot(driver, "consumer-counterfeit")
