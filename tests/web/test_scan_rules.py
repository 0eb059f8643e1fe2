"""Verdict rules: voided, recalled, suspicious by count and by distance (kiosk regions and
phone opt-in locations), batch-level codes, user-agent classes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient

from tests.web.conftest import World
from trace.models import Batch, Recall
from trace.models.enums import Role
from trace.services import events, labels, resolve, scanlog
from trace.services.actors import Actor

HEBEI = "130102"  # 石家庄市长安区, ~1,900 km from Huaning
HUANING = "530424"
TONGHAI = "530423"  # Huaning's neighbour
RULES = scanlog.Rules(max_scans=5, max_speed_kmh=300.0)


def add_events(world: World, batch_id: int, n: int) -> None:
    with world.session() as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None
        actor = Actor(user_id=None, role=Role.ENTERPRISE_ADMIN, enterprise_id=batch.enterprise_id)
        for i in range(n):
            events.record_event(
                s,
                actor,
                batch_id,
                {
                    "type": "irrigation",
                    "occurred_at": datetime(2026, 9, 1 + i, tzinfo=UTC),
                    "details": {"method": "滴灌", "water_m3": "10"},
                },
            )
        s.commit()


def _api(client: FlaskClient, code: str) -> dict[str, Any]:
    r = client.get("/api/v1/resolve/" + code)
    assert r.status_code == 200
    return r.json  # type: ignore[no-any-return]


def _kiosk(client: FlaskClient, token: str, code: str) -> dict[str, Any]:
    r = client.post(
        "/api/v1/scans", json={"code": code}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.json
    return r.json  # type: ignore[no-any-return]


def test_voided_label(client: FlaskClient, world: World) -> None:
    with world.session() as s:
        actor = Actor(
            user_id=None, role=Role.ENTERPRISE_ADMIN, enterprise_id=world.demo["enterprise_ids"][0]
        )
        run = labels.get_run(s, actor, world.citrus_run)
        labels.void_range(s, actor, run.id, run.first_serial + 10, run.first_serial + 12, "印坏")
        s.commit()
    assert _api(client, world.code(11))["verdict"] == "voided"
    assert _api(client, world.code(13))["verdict"] == "genuine"
    page = client.get("/q/" + world.code(12)).get_data(as_text=True)
    assert 'data-verdict="voided"' in page and "标签已作废" in page
    assert "印坏" not in page  # the producer's internal reason is not published
    assert "华宁柑桔" in page  # the product is still shown, to recognise it
    assert world.scans()[0].verdict == "voided"


def _recall(world: World, batch_id: int) -> None:
    with world.session() as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None
        batch.status = "recalled"
        s.add(
            Recall(
                batch_id=batch_id,
                enterprise_id=batch.enterprise_id,
                level="二",
                reason="吡虫啉残留超标",
                public_notice="本批次柑桔吡虫啉残留超标，请停止食用，凭包装到购买处退货。",
                status="open",
            )
        )
        s.commit()


def test_recalled_batch_shows_the_notice(client: FlaskClient, world: World) -> None:
    code = world.code(20)
    assert _api(client, code)["verdict"] == "genuine"
    _recall(world, world.demo["batch_id"])
    body = _api(client, code)
    assert body["verdict"] == "recalled" and body["recall"]["level"] == "二"
    assert "吡虫啉残留超标" in body["recall"]["notice"]
    page = client.get("/q/" + code).get_data(as_text=True)
    assert 'data-verdict="recalled"' in page and "产品已召回" in page
    assert 'id="recall-notice"' in page and "凭包装到购买处退货" in page
    en = client.get("/q/" + code + "?lang=en").get_data(as_text=True)
    assert "Product recalled" in en
    # Other batches are unaffected; a closed recall still warns (the batch stays recalled:
    # a package left on a shelf after the recall ended must not read "genuine").
    assert _api(client, world.code(0, world.tomato_run))["verdict"] == "genuine"
    with world.session() as s:
        for recall in s.query(Recall).all():
            recall.status = "closed"
        s.commit()
    closed = _api(client, code)
    assert closed["verdict"] == "recalled" and "吡虫啉残留超标" in closed["recall"]["notice"]


def test_void_outranks_recall(client: FlaskClient, world: World) -> None:
    with world.session() as s:
        actor = Actor(
            user_id=None, role=Role.ENTERPRISE_ADMIN, enterprise_id=world.demo["enterprise_ids"][0]
        )
        labels.void_range(s, actor, world.citrus_run, None, None, "整批作废")
        s.commit()
    _recall(world, world.demo["batch_id"])
    body = _api(client, world.code(1))
    assert body["verdict"] == "voided" and body["recall"] is not None


def test_too_many_scans_make_a_code_suspicious_for_good(client: FlaskClient, world: World) -> None:
    code = world.code(30)
    verdicts = [_api(client, code)["verdict"] for _ in range(5)]
    assert verdicts == ["genuine"] * 5  # suspicious_scan_count = 5 (tests/web/conftest.py)
    sixth = _api(client, code)
    assert sixth["verdict"] == "suspicious" and sixth["suspicious_reason"] == "count"
    assert sixth["scan"]["count"] == 6
    page = client.get("/q/" + code).get_data(as_text=True)
    assert 'data-verdict="suspicious"' in page and "已被查询 7 次" in page
    assert "12315" in page  # advice on what to do
    assert [s.verdict for s in world.scans()] == ["genuine"] * 5 + ["suspicious"] * 2
    state = world.state(world.citrus_run, world.scans()[0].serial or 0)
    assert state is not None and state.suspicious_reason == "count" and state.scan_count == 7
    # Other codes of the run are not affected.
    assert _api(client, world.code(31))["verdict"] == "genuine"


def test_kiosks_far_apart_in_minutes_flag_the_code(client: FlaskClient, world: World) -> None:
    huaning = world.demo["tokens"]["kiosk-huaning"]
    _, tonghai = world.device("kiosk", TONGHAI, "通海县 kiosk")
    _, hebei = world.device("kiosk", HEBEI, "石家庄 kiosk")
    near = world.code(40)
    assert _kiosk(client, huaning, near)["verdict"] == "genuine"
    assert _kiosk(client, tonghai, near)["verdict"] == "genuine"  # neighbours: plausible
    far = world.code(41)
    assert _kiosk(client, huaning, far)["verdict"] == "genuine"
    flagged = _kiosk(client, hebei, far)
    assert flagged["verdict"] == "suspicious" and flagged["suspicious_reason"] == "distance"
    assert _api(client, far)["verdict"] == "suspicious"  # and stays so
    state = world.state(world.citrus_run, world.scans()[-1].serial or 0)
    assert state is not None and state.suspicious_reason == "distance"
    assert state.first_region_code == HUANING and state.last_region_code == HEBEI


def test_distance_rule_allows_travel_time() -> None:
    t0 = datetime(2026, 11, 20, 8, tzinfo=UTC)
    assert scanlog.too_fast(RULES, HUANING, t0, HEBEI, t0 + timedelta(hours=1))
    assert not scanlog.too_fast(RULES, HUANING, t0, HEBEI, t0 + timedelta(days=2))
    assert not scanlog.too_fast(RULES, HUANING, t0, TONGHAI, t0 + timedelta(minutes=1))
    assert not scanlog.too_fast(RULES, HUANING, t0, HUANING, t0)
    km = scanlog.min_travel_km(HUANING, HEBEI)
    assert 1500 < km < 2100
    # Order of the two scans does not matter.
    assert scanlog.too_fast(RULES, HEBEI, t0 + timedelta(hours=1), HUANING, t0)


def test_phone_location_fills_the_county_and_applies_the_distance_rule(
    client: FlaskClient, world: World
) -> None:
    code = world.code(50)
    page = client.get("/q/" + code).get_data(as_text=True)
    token = page.split('data-t="', 1)[1].split('"', 1)[0]
    assert client.post(f"/q/{code}/location", json=[token, 24.19]).status_code == 400
    r = client.post(f"/q/{code}/location", json={"t": token, "lat": 24.19, "lon": 102.93})
    assert r.status_code == 200 and r.json["region_code"] == HUANING
    assert r.json["county"] == "云南省玉溪市华宁县" and r.json["suspicious"] is False
    scan = world.scans()[-1]
    assert scan.region_code == HUANING and scan.latitude == 24.19
    state = world.state(world.citrus_run, scan.serial or 0)
    assert state is not None and state.first_region_code == HUANING
    # Posting again cannot move the scan.
    again = client.post(f"/q/{code}/location", json={"t": token, "lat": 38.0, "lon": 114.5})
    assert again.json["region_code"] == HUANING

    # Second page view shows the first scan's county.
    second = client.get("/q/" + code).get_data(as_text=True)
    assert "已被查询 2 次" in second and "在华宁县" in second
    token2 = second.split('data-t="', 1)[1].split('"', 1)[0]
    far = client.post(f"/q/{code}/location", json={"t": token2, "lat": 38.05, "lon": 114.55})
    assert far.json["suspicious"] is True and far.json["warning"]
    assert world.scans()[-1].verdict == "suspicious"
    assert _api(client, code)["suspicious_reason"] == "distance"

    # A token of another code, a forged token and junk are refused.
    other = world.code(51)
    assert (
        client.post(f"/q/{other}/location", json={"t": token, "lat": 1, "lon": 1}).status_code
        == 400
    )
    assert (
        client.post(f"/q/{code}/location", json={"t": token + "x", "lat": 1, "lon": 1}).status_code
        == 400
    )
    assert client.post(f"/q/{code}/location", json={"t": token}).status_code == 400


def test_batch_level_codes_are_never_suspicious(client: FlaskClient, world: World) -> None:
    run = world.issue(world.demo["batch_id"], 500, level="batch")
    code = world.code(0, run)
    verdicts = {_api(client, code)["verdict"] for _ in range(8)}
    assert verdicts == {"genuine"}
    assert _api(client, code)["level"] == "batch"


def test_user_agent_classes() -> None:
    cases = {
        "Mozilla/5.0 (Linux; Android 13; V2148A) MicroMessenger/8.0.44": "wechat",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6) AlipayClient/10.5.36": "alipay",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Safari/604.1": "ios",
        "Mozilla/5.0 (Linux; Android 14; 23127PN0CC) Chrome/120.0 Mobile": "android",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0": "desktop",
        "curl/8.5.0": "other",
        "": "other",
    }
    assert {ua: scanlog.ua_class(ua) for ua in cases} == cases


def test_extract_code_from_scanner_input() -> None:
    assert resolve.extract_code("  HTTPS://T.EXAMPLE.CN/Q/ABC \n") == "ABC"
    assert resolve.extract_code("abc") == "abc"
    assert resolve.extract_code("https://t.example.cn/q/abc/") == "abc"
