"""Alerts: detected once, listed for the regulator of the region, acknowledged and closed
with a note, and who and when kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.api.test_analytics import Scans, build_world
from tests.conftest import bearer
from trace.models import Alert, AuditEntry, User
from trace.services import alerts


@pytest.fixture(autouse=True)
def refresh_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listings look for new problems at most once a minute; these tests add problems
    between listings and must see them at once."""
    monkeypatch.setattr(alerts, "REQUEST_INTERVAL", timedelta(0))


def _list(client: FlaskClient, token: str, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/alerts", query_string=params, headers=bearer(token))
    assert r.status_code == 200, r.get_data(as_text=True)
    return list(r.json)


def _burst(app: Flask, county: str, verdict: str, times: int, days_ago: int = 0) -> None:
    factory = app.extensions["trace.sessions"]
    with factory() as s:
        when = datetime.now(UTC) - timedelta(days=days_ago, minutes=times + 5)
        Scans(s).add(None, None, county, verdict, when, times=times)
        s.commit()


def test_problems_are_found_once_and_filed_by_county(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    world = build_world(app)
    hn = _list(client, world["tokens"]["huaning-regulator"])
    assert {a["kind"] for a in hn} == {"phi_violation", "failed_inspection"}
    assert all(a["region_code"] == "530424" for a in hn)
    assert all(a["region_name"] == "云南省玉溪市华宁县" for a in hn)
    phi = next(a for a in hn if a["kind"] == "phi_violation")
    assert "HN-GJ-2026-11-009" in phi["summary"] and phi["details"]["days_short"] == 16
    sm = _list(client, world["tokens"]["songming-regulator"])
    assert {a["region_code"] for a in sm} == {"530127"} and len(sm) == 2
    # Listing again (and refreshing) raises nothing twice.
    assert alerts.refresh(session) == 0
    _list(client, world["tokens"]["admin"])
    assert session.scalar(select(func.count()).select_from(Alert)) == 4
    # The enterprise sees its own alerts; a county regulator never its neighbour's.
    coop = _list(client, world["tokens"]["huaning-coop"])
    assert {a["id"] for a in coop} == {a["id"] for a in hn}
    other = client.get(
        f"/api/v1/alerts/{sm[0]['id']}", headers=bearer(world["tokens"]["huaning-regulator"])
    )
    assert other.status_code == 404


def test_suspicious_cluster_and_counterfeit_burst(app: Flask, client: FlaskClient) -> None:
    world = build_world(app)
    token = world["tokens"]["huaning-regulator"]
    before = {a["kind"] for a in _list(client, token)}
    assert "suspicious_cluster" not in before and "counterfeit_burst" not in before
    _burst(app, "530424", "suspicious", 5)
    # A quiet baseline of counterfeits a week ago, then a burst today.
    _burst(app, "530424", "counterfeit", 2, days_ago=9)
    _burst(app, "530424", "counterfeit", 12)
    _burst(app, "530127", "counterfeit", 12)
    found = {a["kind"]: a for a in _list(client, token)}
    assert found["suspicious_cluster"]["details"]["scans"] == 5
    burst = found["counterfeit_burst"]
    assert burst["details"]["scans"] == 12 and burst["region_code"] == "530424"
    assert burst["details"]["baseline_per_day"] < 1
    assert all(a["region_code"] == "530424" for a in found.values())
    sm = _list(client, world["tokens"]["songming-regulator"], kind="counterfeit_burst")
    assert [a["region_code"] for a in sm] == ["530127"]


def test_small_numbers_raise_nothing(app: Flask, client: FlaskClient) -> None:
    world = build_world(app)
    _burst(app, "530424", "suspicious", 4)
    _burst(app, "530424", "counterfeit", 9)
    kinds = {a["kind"] for a in _list(client, world["tokens"]["huaning-regulator"])}
    assert kinds == {"phi_violation", "failed_inspection"}


def test_acknowledge_and_close_keep_who_when_and_note(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    world = build_world(app)
    token = world["tokens"]["huaning-regulator"]
    alert = next(a for a in _list(client, token) if a["kind"] == "phi_violation")
    url = f"/api/v1/alerts/{alert['id']}"
    regulator = session.scalars(select(User).where(User.username == "huaning-regulator")).one()

    # Neither the enterprise nor another county's regulator may act on it.
    coop = client.post(
        f"{url}/acknowledge", json={}, headers=bearer(world["tokens"]["huaning-coop"])
    )
    assert coop.status_code == 403
    sm = world["tokens"]["songming-regulator"]
    assert client.post(f"{url}/acknowledge", json={}, headers=bearer(sm)).status_code == 404

    t0 = datetime.now(UTC)
    ack = client.post(
        f"{url}/acknowledge", json={"note": "已通知合作社暂停销售"}, headers=bearer(token)
    )
    assert ack.status_code == 200, ack.json
    a = ack.json
    assert a["status"] == "acknowledged" and a["acknowledged_by"] == regulator.id
    assert a["acknowledge_note"] == "已通知合作社暂停销售"
    assert datetime.fromisoformat(a["acknowledged_at"]) >= t0 - timedelta(seconds=1)
    again = client.post(f"{url}/acknowledge", json={}, headers=bearer(token))
    assert again.status_code == 409

    no_note = client.post(f"{url}/close", json={"note": ""}, headers=bearer(token))
    assert no_note.status_code == 422
    closed = client.post(f"{url}/close", json={"note": "批次已召回并销毁"}, headers=bearer(token))
    assert closed.status_code == 200
    c = closed.json
    assert c["status"] == "closed" and c["closed_by"] == regulator.id
    assert c["close_note"] == "批次已召回并销毁" and c["closed_at"] >= a["acknowledged_at"]
    # The acknowledgement is still on record, and both steps are in the audit trail.
    assert c["acknowledged_by"] == regulator.id and c["acknowledge_note"]
    assert client.post(f"{url}/close", json={"note": "x"}, headers=bearer(token)).status_code == 409
    actions = session.scalars(
        select(AuditEntry.action).where(
            AuditEntry.entity == "alert", AuditEntry.entity_id == str(alert["id"])
        )
    ).all()
    assert sorted(actions) == ["acknowledge", "close"]

    # Closed alerts leave the default list, stay under status=closed, and are not raised again.
    assert alert["id"] not in {x["id"] for x in _list(client, token)}
    assert alert["id"] in {x["id"] for x in _list(client, token, status="closed")}
    assert alerts.refresh(session) == 0


def test_refresh_endpoint_is_for_regulators(app: Flask, client: FlaskClient) -> None:
    world = build_world(app)
    r = client.post("/api/v1/alerts/refresh", headers=bearer(world["tokens"]["huaning-regulator"]))
    assert r.status_code == 200 and r.json["new_alerts"] == 4
    coop = client.post("/api/v1/alerts/refresh", headers=bearer(world["tokens"]["huaning-coop"]))
    assert coop.status_code == 403
