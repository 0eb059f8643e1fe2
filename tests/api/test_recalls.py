"""Recalls: who may open and close them, what they change at once, and the trace-forward
report of where the batch went."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.api.test_analytics import build_world
from tests.conftest import bearer
from trace.crypto.codes import mint
from trace.models import AuditEntry, Batch, Recall
from trace.services.keys import load_keyring

NOTICE = "本批次柑桔农药残留超标，请停止食用并联系购买点退货。"


def _open(client: FlaskClient, token: str, batch_id: int, **overrides: Any) -> Any:
    body = {
        "batch_id": batch_id,
        "reason": "农药残留超标",
        "level": "一级",
        "public_notice": NOTICE,
    }
    body.update(overrides)
    return client.post("/api/v1/recalls", json=body, headers=bearer(token))


@pytest.fixture
def world(app: Flask) -> dict[str, Any]:
    return build_world(app)


def test_regulator_opens_a_recall_and_the_batch_is_recalled_at_once(
    client: FlaskClient, world: dict[str, Any], session: Session
) -> None:
    r = _open(client, world["tokens"]["huaning-regulator"], world["batch_id"])
    assert r.status_code == 201, r.json
    recall = r.json
    assert recall["status"] == "open" and recall["level"] == "一级"
    assert recall["public_notice"] == NOTICE and recall["opened_at"]
    batch = session.get(Batch, world["batch_id"])
    assert batch is not None and batch.status == "recalled"
    audit = session.scalars(
        select(AuditEntry).where(
            AuditEntry.entity == "recall", AuditEntry.entity_id == str(recall["id"])
        )
    ).one()
    assert audit.action == "open" and audit.payload["batch_id"] == world["batch_id"]
    again = _open(client, world["tokens"]["huaning-coop"], world["batch_id"])
    assert again.status_code == 409
    listed = client.get("/api/v1/recalls", headers=bearer(world["tokens"]["huaning-coop"])).json
    assert [x["id"] for x in listed] == [recall["id"]]


def test_who_may_open(client: FlaskClient, world: dict[str, Any]) -> None:
    hn_reg = world["tokens"]["huaning-regulator"]
    # Another county's batch is invisible to the Huaning regulator and to Huaning's coop.
    assert _open(client, hn_reg, world["tomato_batch_id"]).status_code == 404
    assert (
        _open(client, world["tokens"]["huaning-coop"], world["tomato_batch_id"]).status_code == 404
    )
    # The platform administrator sees everything but orders no recall.
    assert _open(client, world["tokens"]["admin"], world["batch_id"]).status_code == 403
    assert _open(client, hn_reg, world["batch_id"], level="四级").status_code == 422
    assert _open(client, hn_reg, world["batch_id"], public_notice="").status_code == 422
    own = _open(client, world["tokens"]["songming-farm"], world["tomato_batch_id"], level="3")
    assert own.status_code == 201 and own.json["level"] == "三级"
    assert (
        client.get(f"/api/v1/recalls/{own.json['id']}", headers=bearer(hn_reg)).status_code == 404
    )
    assert client.get("/api/v1/recalls", headers=bearer(hn_reg)).json == []


def test_close_with_a_note_keeps_the_batch_recalled(
    client: FlaskClient, world: dict[str, Any], session: Session
) -> None:
    reg = world["tokens"]["huaning-regulator"]
    recall = _open(client, reg, world["batch_id"]).json
    url = f"/api/v1/recalls/{recall['id']}/close"
    # A regulator's order is the regulator's to close, not the enterprise's.
    coop = client.post(
        url, json={"note": "已全部召回"}, headers=bearer(world["tokens"]["huaning-coop"])
    )
    assert coop.status_code == 403
    assert client.post(url, json={"note": ""}, headers=bearer(reg)).status_code == 422
    closed = client.post(url, json={"note": "已召回9,800公斤并监督销毁"}, headers=bearer(reg))
    assert closed.status_code == 200
    c = closed.json
    assert c["status"] == "closed" and c["close_note"] == "已召回9,800公斤并监督销毁"
    assert c["closed_by"] is not None and c["closed_at"] >= c["opened_at"]
    assert client.post(url, json={"note": "again"}, headers=bearer(reg)).status_code == 409
    session.expire_all()
    batch = session.get(Batch, world["batch_id"])
    assert batch is not None and batch.status == "recalled"
    # The enterprise closes a recall it opened itself.
    own = _open(client, world["tokens"]["songming-farm"], world["tomato_batch_id"]).json
    done = client.post(
        f"/api/v1/recalls/{own['id']}/close",
        json={"note": "自查完毕"},
        headers=bearer(world["tokens"]["songming-farm"]),
    )
    assert done.status_code == 200
    actions = session.scalars(select(AuditEntry.action).where(AuditEntry.entity == "recall")).all()
    assert sorted(actions) == ["close", "close", "open", "open"]


def test_trace_forward_report(client: FlaskClient, world: dict[str, Any]) -> None:
    reg = world["tokens"]["huaning-regulator"]
    recall = _open(client, reg, world["batch_id"]).json
    r = client.get(f"/api/v1/recalls/{recall['id']}/report", headers=bearer(reg))
    assert r.status_code == 200, r.json
    report = r.json
    assert report["batch"]["batch_no"] == "HN-GJ-2026-11-001"
    assert report["batch"]["enterprise_region"] == "云南省玉溪市华宁县"
    labels = report["labels"]
    assert labels["codes_issued"] == 100 and labels["codes_scanned"] == 6
    assert labels["runs"][0]["first_serial"] == 1 and labels["runs"][0]["last_serial"] == 100
    scans = report["scans"]
    # Every scan of the batch's codes: 9 in Huaning (one long ago), 1 in Kunming. The
    # report follows the batch, so the producing county's regulator sees where it went.
    by_county = {c["region_code"]: c for c in scans["counties"]}
    assert {k: v["scans"] for k, v in by_county.items()} == {"530424": 9, "530111": 1}
    assert by_county["530111"]["region_name"] == "云南省昆明市官渡区"
    assert scans["total"] == 10 and scans["since_recall"] == 0
    assert scans["first_scan_at"] < scans["last_scan_at"]
    assert scans["first_scan_at"].endswith("+08:00")
    kiosk = scans["devices"]
    assert [(d["name"], d["scans"]) for d in kiosk] == [("华宁县电商服务中心溯源一体机", 2)]
    moves = report["movements"]
    assert [m["type"] for m in moves] == ["shipping"]
    assert moves[0]["details"]["destination"] == "昆明金马正昌农产品批发市场"
    # Not visible to another county's regulator.
    other = client.get(
        f"/api/v1/recalls/{recall['id']}/report",
        headers=bearer(world["tokens"]["songming-regulator"]),
    )
    assert other.status_code == 404


def test_recall_shows_in_the_resolve_api_in_the_same_request_cycle(
    app: Flask, client: FlaskClient, world: dict[str, Any], session: Session
) -> None:
    keyring = load_keyring(app.extensions["trace.config"])
    code = mint(keyring, world["hn_run_id"], 7)
    before = client.get(f"/api/v1/resolve/{code}")
    assert before.status_code == 200, before.get_data(as_text=True)
    assert before.json["verdict"] == "genuine"
    recall = _open(client, world["tokens"]["huaning-regulator"], world["batch_id"])
    assert recall.status_code == 201
    after = client.get(f"/api/v1/resolve/{code}")
    assert after.status_code == 200
    assert after.json["verdict"] == "recalled"
    assert NOTICE in after.get_data(as_text=True)
    assert session.scalars(select(Recall)).one().status == "open"
    # Closing the recall ends the regulator's action, not the shopper's warning.
    closed = client.post(
        f"/api/v1/recalls/{recall.json['id']}/close",
        json={"note": "已下架销毁"},
        headers=bearer(world["tokens"]["huaning-regulator"]),
    )
    assert closed.status_code == 200
    later = client.get(f"/api/v1/resolve/{code}")
    assert later.json["verdict"] == "recalled" and later.json["recall"]["notice"] == NOTICE
    page = client.get(f"/q/{code}").get_data(as_text=True)
    assert NOTICE in page and 'id="recall-notice"' in page
