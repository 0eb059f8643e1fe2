"""A suspended enterprise reads its records but changes nothing and issues no labels;
its printed labels keep resolving, and it can still recall a batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import bearer
from tests.factories import event_body
from trace.crypto.codes import mint
from trace.models import Device, Enterprise, LabelRun, User
from trace.services.keys import load_keyring


def test_suspended_enterprise_reads_but_does_not_write(
    client: FlaskClient, demo: dict[str, Any]
) -> None:
    coop, admin = bearer(demo["tokens"]["huaning-coop"]), bearer(demo["tokens"]["admin"])
    enterprise_url = f"/api/v1/enterprises/{demo['enterprise_ids'][0]}"
    batch_url = f"/api/v1/batches/{demo['batch_id']}"
    run = {"batch_id": demo["batch_id"], "count": 5, "profile": "zpl-203dpi-40x30", "format": "zpl"}
    issued = client.post("/api/v1/label-runs", json=run, headers=coop)
    assert issued.status_code == 201, issued.json

    r = client.patch(enterprise_url, json={"status": "suspended"}, headers=admin)
    assert r.status_code == 200 and r.json["status"] == "suspended"

    assert client.get(batch_url, headers=coop).status_code == 200
    refused = client.post("/api/v1/label-runs", json=run, headers=coop)
    assert refused.status_code == 403 and refused.mimetype == "application/problem+json"
    assert "suspended" in refused.json["detail"]
    event = event_body("care", occurred_at="2026-11-20T08:00:00+08:00")
    assert client.post(f"{batch_url}/events", json=event, headers=coop).status_code == 403

    # Labels already on the shelves still tell the truth.
    ring = load_keyring(client.application.extensions["trace.config"])
    code = mint(ring, issued.json["id"], issued.json["first_serial"], issued.json["key_version"])
    assert client.get(f"/api/v1/resolve/{code}").json["verdict"] == "genuine"
    r = client.patch(enterprise_url, json={"status": "admitted"}, headers=admin)
    assert r.status_code == 200
    assert client.post(f"{batch_url}/events", json=event, headers=coop).status_code == 201

    client.patch(enterprise_url, json={"status": "suspended"}, headers=admin)
    # A recall is a safety action: never blocked by the suspension.
    recall = {
        "batch_id": demo["batch_id"],
        "reason": "自查",
        "level": "三级",
        "public_notice": "暂停销售",
    }
    assert client.post("/api/v1/recalls", json=recall, headers=coop).status_code == 201


def test_suspended_enterprise_admin_changes_no_account_device_or_profile(
    client: FlaskClient, demo: dict[str, Any]
) -> None:
    """The whole enterprise is read-only, its administrator included; switching a device
    off and replacing a device's token (both reduce what a leaked token can do) stay open."""
    coop, admin = bearer(demo["tokens"]["huaning-coop"]), bearer(demo["tokens"]["admin"])
    enterprise_url = f"/api/v1/enterprises/{demo['enterprise_ids'][0]}"
    device = client.post(
        "/api/v1/devices",
        json={"kind": "kiosk", "name": "门店一体机", "region_code": "530424"},
        headers=coop,
    )
    assert device.status_code == 201, device.json
    device_url = f"/api/v1/devices/{device.json['id']}"
    assert (
        client.patch(enterprise_url, json={"status": "suspended"}, headers=admin).status_code == 200
    )

    refused = [
        client.patch(enterprise_url, json={"wechat_account": "hn-gj"}, headers=coop),
        client.post(
            "/api/v1/users",
            json={
                "username": "op-new",
                "password": "a-long-password-1",
                "role": "enterprise_operator",
            },
            headers=coop,
        ),
        client.post(
            "/api/v1/devices",
            json={"kind": "kiosk", "name": "第二台", "region_code": "530424"},
            headers=coop,
        ),
        client.patch(device_url, json={"name": "改名"}, headers=coop),
        client.patch(device_url, json={"is_active": True}, headers=coop),
    ]
    for r in refused:
        assert r.status_code == 403 and r.mimetype == "application/problem+json", r.json
        assert "suspended" in r.json["detail"]
    with client.application.extensions["trace.sessions"]() as s:
        enterprise = s.get(Enterprise, demo["enterprise_ids"][0])
        assert enterprise is not None and enterprise.wechat_account != "hn-gj"
        assert s.scalar(select(User.id).where(User.username == "op-new")) is None
        assert s.scalar(select(Device.id).where(Device.name == "第二台")) is None
        kept = s.get(Device, device.json["id"])
        assert kept is not None and (kept.name, kept.is_active) == ("门店一体机", True)

    off = client.patch(device_url, json={"is_active": False}, headers=coop)
    assert off.status_code == 200 and off.json["is_active"] is False
    assert client.post(f"{device_url}/token", headers=coop).status_code in (200, 201)
    # The platform administrator still manages the enterprise.
    r = client.patch(enterprise_url, json={"wechat_account": "hn-gj"}, headers=admin)
    assert r.status_code == 200


def test_the_server_cli_issues_no_labels_for_a_suspended_enterprise(
    client: FlaskClient, demo: dict[str, Any], tmp_path: Path
) -> None:
    admin = bearer(demo["tokens"]["admin"])
    enterprise_url = f"/api/v1/enterprises/{demo['enterprise_ids'][0]}"
    assert (
        client.patch(enterprise_url, json={"status": "suspended"}, headers=admin).status_code == 200
    )
    out = tmp_path / "run.zpl"
    args = ["labels", "issue", "--batch", str(demo["batch_id"]), "--count", "5"]
    args += ["--profile", "zpl-203dpi-40x30", "--format", "zpl", "--out", str(out)]
    refused = client.application.test_cli_runner().invoke(args=args)
    assert refused.exit_code != 0 and "suspended" in refused.output
    assert not out.exists()
    with client.application.extensions["trace.sessions"]() as s:
        assert s.scalar(select(LabelRun.id).where(LabelRun.batch_id == demo["batch_id"])) is None
