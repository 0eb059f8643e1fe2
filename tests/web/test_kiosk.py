"""The kiosk page: set-up with a device token, the JSON call a barcode scanner triggers."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.web.conftest import World


def test_kiosk_needs_a_device_token(client: FlaskClient, world: World) -> None:
    html = client.get("/kiosk").get_data(as_text=True)
    assert 'id="token-input"' in html and 'id="code-input"' not in html
    bad = client.post("/kiosk/setup", data={"token": "dev_nonsense"})
    assert bad.status_code == 302 and "error=1" in bad.headers["Location"]
    assert client.post("/kiosk/scan", json={"code": world.code(0)}).status_code == 401
    assert world.scan_count() == 0


def test_kiosk_scan_shows_verdict_and_summary(client: FlaskClient, world: World) -> None:
    token = world.demo["tokens"]["kiosk-huaning"]
    r = client.post("/kiosk/setup", data={"token": token})
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    html = client.get("/kiosk").get_data(as_text=True)
    assert 'id="code-input"' in html and 'data-idle="20"' in html and "华宁县" in html

    url = "HTTPS://T.EXAMPLE.CN/Q/" + world.code(0)  # what the scanner types
    body = client.post("/kiosk/scan", json={"code": url}).json
    assert body["verdict"] == "genuine" and body["words"]["title"] == "正品"
    summary = body["summary"]
    assert summary["product"] == "华宁柑桔" and summary["batch_no"] == "HN-GJ-2026-11-001"
    facts = dict(summary["lines"])
    assert facts["产地"] == "云南省玉溪市华宁县盘溪镇华溪村"
    assert "华宁柑桔合作社" in facts["生产者"] and facts["检测"] == "合格"
    scan = world.scans()[-1]
    assert (scan.channel, scan.region_code, scan.device_id) == (
        "kiosk",
        "530424",
        world.demo["kiosk_id"],
    )

    again = client.post("/kiosk/scan?lang=en", json={"code": world.code(0)}).json
    assert again["words"]["title"] == "Genuine" and "first on" in again["words"]["lines"][0]
    assert "in 华宁县" in again["words"]["lines"][0]  # the kiosk's county

    assert client.post("/kiosk/scan", json=[world.code(0)]).status_code == 400  # not an object
    fake = client.post("/kiosk/scan", json={"code": "NOT-A-CODE"}).json
    assert fake["verdict"] == "counterfeit" and fake["summary"] is None


def test_deactivated_kiosk_stops_at_once(client: FlaskClient, world: World) -> None:
    device_id, token = world.device("kiosk", "530127", "嵩明 kiosk")
    client.post("/kiosk/setup", data={"token": token})
    assert client.post("/kiosk/scan", json={"code": world.code(1)}).status_code == 200
    admin = world.demo["tokens"]["admin"]
    r = client.patch(
        f"/api/v1/devices/{device_id}",
        json={"is_active": False},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 200 and r.json["is_active"] is False
    assert client.post("/kiosk/scan", json={"code": world.code(1)}).status_code == 401
