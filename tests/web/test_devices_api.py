"""Registering kiosks and printer stations: who may, token shown once, rotation, scoping."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.conftest import bearer
from tests.web.conftest import World


def test_enterprise_admin_registers_own_device_and_token_works(
    client: FlaskClient, world: World
) -> None:
    coop = world.demo["tokens"]["huaning-coop"]
    r = client.post(
        "/api/v1/devices",
        json={"kind": "printer_station", "name": "分选车间打印站", "region_code": "530424"},
        headers=bearer(coop),
    )
    assert r.status_code == 201, r.json
    device = r.json
    assert (
        device["token"].startswith("dev_")
        and device["enterprise_id"] == world.demo["enterprise_ids"][0]
    )
    # Shown once: reading the device again never returns it.
    again = client.get(f"/api/v1/devices/{device['id']}", headers=bearer(coop)).json
    assert "token" not in again
    scan = client.post(
        "/api/v1/scans", json={"code": world.code(0)}, headers=bearer(device["token"])
    )
    assert scan.status_code == 200 and scan.json["channel"] == "printer_check"

    # Rotation: the old token stops working.
    rotated = client.post(f"/api/v1/devices/{device['id']}/token", headers=bearer(coop))
    assert rotated.status_code == 201 and rotated.json["token"] != device["token"]
    old = client.post(
        "/api/v1/scans", json={"code": world.code(0)}, headers=bearer(device["token"])
    )
    assert old.status_code == 401
    new = client.post(
        "/api/v1/scans", json={"code": world.code(0)}, headers=bearer(rotated.json["token"])
    )
    assert new.status_code == 200

    # Another enterprise neither sees nor manages it, nor registers for someone else.
    other = world.demo["tokens"]["songming-farm"]
    assert client.get(f"/api/v1/devices/{device['id']}", headers=bearer(other)).status_code == 404
    assert (
        client.post(f"/api/v1/devices/{device['id']}/token", headers=bearer(other)).status_code
        == 404
    )
    assert device["id"] not in [
        d["id"] for d in client.get("/api/v1/devices", headers=bearer(other)).json
    ]
    foreign = client.post(
        "/api/v1/devices",
        json={
            "kind": "kiosk",
            "name": "x",
            "region_code": "530127",
            "enterprise_id": world.demo["enterprise_ids"][0],
        },
        headers=bearer(other),
    )
    assert foreign.status_code == 403


def test_platform_admin_registers_county_kiosk_and_regulators_list_by_region(
    client: FlaskClient, world: World
) -> None:
    admin = world.demo["tokens"]["admin"]
    r = client.post(
        "/api/v1/devices",
        json={"kind": "kiosk", "name": "嵩明县电商服务站", "region_code": "530127"},
        headers=bearer(admin),
    )
    assert r.status_code == 201 and r.json["enterprise_id"] is None
    sm_reg = world.demo["tokens"]["songming-regulator"]
    hn_reg = world.demo["tokens"]["huaning-regulator"]
    assert [
        d["region_code"] for d in client.get("/api/v1/devices", headers=bearer(sm_reg)).json
    ] == ["530127"]
    assert r.json["id"] not in [
        d["id"] for d in client.get("/api/v1/devices", headers=bearer(hn_reg)).json
    ]
    # Regulators do not register devices; bad input is refused with field errors.
    assert (
        client.post(
            "/api/v1/devices",
            json={"kind": "kiosk", "name": "x", "region_code": "530127"},
            headers=bearer(sm_reg),
        ).status_code
        == 403
    )
    bad = client.post(
        "/api/v1/devices",
        json={"kind": "toaster", "name": "", "region_code": "999999"},
        headers=bearer(admin),
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json["errors"]} >= {"kind", "name", "region_code"}
    assert client.post("/api/v1/devices", json={}).status_code in (401, 422)


def test_device_enterprise_id_out_of_range_is_named(client: FlaskClient, world: World) -> None:
    """A 64-bit enterprise_id reached the lookup and overflowed the driver: once a 500."""
    admin = world.demo["tokens"]["admin"]
    for value in (10**30, 2**31, 0, -1, "1", 1.5):
        r = client.post(
            "/api/v1/devices",
            json={"kind": "kiosk", "name": "x", "region_code": "530127", "enterprise_id": value},
            headers=bearer(admin),
        )
        assert r.status_code == 422, (value, r.get_data(as_text=True)[:300])
        assert [e["field"] for e in r.json["errors"]] == ["enterprise_id"]
    for method, url in (
        ("GET", "/api/v1/devices/2147483648"),
        ("PATCH", f"/api/v1/devices/{10**30}"),
    ):
        r = client.open(url, method=method, json={"name": "x"}, headers=bearer(admin))
        assert r.status_code == 404 and r.mimetype == "application/problem+json"
