"""Analytics API: figures that add up, drill-down, date ranges, Excel-ready CSV, and a
Huaning (530424) regulator who never sees anything of Songming (530127)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.conftest import bearer
from trace.models import Batch, CodeState, LabelRun, Product, ScanEvent, User
from trace.services import auth, demo, events, records
from trace.services.rollups import CST

# -- the world: demo data plus labels, scans and problems in both counties ------------------

NOW = datetime.now(UTC)
#: Strings that only Songming's data contains: its county, its names.
SONGMING_NEEDLES = ("530127", "嵩明", "嵩阳", "番茄")


def _days_ago(days: float, hour: int = 12) -> datetime:
    day = (NOW.astimezone(CST) - timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=CST).astimezone(UTC)


def _run(session: Session, batch: Batch, count: int, first_serial: int) -> LabelRun:
    run = LabelRun(
        enterprise_id=batch.enterprise_id,
        batch_id=batch.id,
        level="item",
        count=count,
        first_serial=first_serial,
        key_version=0,
        profile="zpl-203dpi-40x30",
        format="zpl",
        template={},
        status="issued",
        created_at=_days_ago(25),
    )
    session.add(run)
    session.flush()
    return run


class Scans:
    """Adds scan events and keeps the per-code state the scan path would keep."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.states: dict[tuple[int, int], CodeState] = {}

    def add(
        self,
        run: LabelRun | None,
        serial: int | None,
        region: str | None,
        verdict: str,
        when: datetime,
        channel: str = "phone",
        device_id: int | None = None,
        times: int = 1,
    ) -> None:
        batch = self.session.get(Batch, run.batch_id) if run else None
        for i in range(times):
            at = when + timedelta(minutes=i)
            self.session.add(
                ScanEvent(
                    scanned_at=at,
                    run_id=run.id if run else None,
                    serial=serial,
                    enterprise_id=run.enterprise_id if run else None,
                    batch_id=run.batch_id if run else None,
                    product_id=batch.product_id if batch else None,
                    channel=channel,
                    device_id=device_id,
                    region_code=region,
                    verdict=verdict,
                    ua_class="wechat",
                )
            )
            if run is None or serial is None:
                continue
            state = self.states.get((run.id, serial))
            if state is None:
                state = CodeState(run_id=run.id, serial=serial, scan_count=0, updated_at=at)
                self.states[(run.id, serial)] = state
                self.session.add(state)
            state.scan_count += 1
            if state.first_scan_at is None or at < state.first_scan_at:
                state.first_scan_at, state.first_region_code = at, region
            if state.last_scan_at is None or at > state.last_scan_at:
                state.last_scan_at, state.last_region_code = at, region


def _actor(session: Session, username: str) -> Any:
    user = session.scalars(select(User).where(User.username == username)).one()
    return auth.actor_for(user)


def _bad_batch(session: Session, username: str, batch_no: str, lab: str) -> Batch:
    """A batch with a pesticide applied inside its interval and a failed inspection."""
    actor = _actor(session, username)
    product = session.scalars(
        select(Product).where(Product.enterprise_id == actor.enterprise_id)
    ).first()
    assert product is not None
    harvest = _days_ago(10).astimezone(CST).date()
    batch = records.create_batch(
        session,
        actor,
        {
            "product_id": product.id,
            "batch_no": batch_no,
            "harvest_date": harvest,
            "quantity": Decimal("800"),
            "unit": "kg",
        },
    )
    for kind, when, details in (
        (
            "pesticide",
            _days_ago(15, 7),
            {
                "product_name": "40%毒死蜱乳油",
                "registration_no": "PD20096811",
                "active_ingredient": "毒死蜱",
                "dose": "50",
                "dose_unit": "mL/亩",
                "dilution": "1500倍",
                "target": "蚜虫",
                "phi_days": 21,
            },
        ),
        ("harvest", _days_ago(10, 7), {"quantity": "800", "unit": "kg"}),
        (
            "inspection",
            _days_ago(9, 10),
            {
                "method": "农药残留定量检测",
                "items": [
                    {"name": "毒死蜱", "result": "0.35 mg/kg", "limit": "0.1", "passed": False}
                ],
                "verdict": "fail",
                "lab": lab,
                "report_no": f"{batch_no}-R1",
            },
        ),
    ):
        events.record_event(
            session, actor, batch.id, {"type": kind, "occurred_at": when, "details": details}
        )
    return batch


def build_world(app: Flask) -> dict[str, Any]:
    """Demo world + label runs, scans (some in Kunming, some counterfeit, some suspicious),
    a PHI violation and a failed inspection in each county. Committed."""
    factory = app.extensions["trace.sessions"]
    with factory() as s:
        ids = demo.load(s, app.config["SECRET_KEY"])
        hn_batch = s.get(Batch, ids["batch_id"])
        sm_batch = s.get(Batch, ids["tomato_batch_id"])
        assert hn_batch is not None and sm_batch is not None
        hn_run = _run(s, hn_batch, 100, 1)
        sm_run = _run(s, sm_batch, 50, 1)
        scans = Scans(s)
        # Huaning citrus: 6 genuine scans of 4 codes at home (2 by the kiosk), 1 in Kunming.
        scans.add(hn_run, 1, "530424", "genuine", _days_ago(3), "kiosk", ids["kiosk_id"], 2)
        scans.add(hn_run, 2, "530424", "genuine", _days_ago(4))
        scans.add(hn_run, 3, "530424", "genuine", _days_ago(5), times=2)
        scans.add(hn_run, 4, "530424", "genuine", _days_ago(40))
        scans.add(hn_run, 5, "530111", "genuine", _days_ago(6))
        scans.add(hn_run, 1, "530424", "suspicious", _days_ago(2), times=2)
        scans.add(None, None, "530424", "counterfeit", _days_ago(2), times=2)
        # Outside the default range (more than a year ago).
        scans.add(hn_run, 6, "530424", "genuine", _days_ago(420))
        # Songming tomato: 4 genuine at home, 3 counterfeit, 1 suspicious.
        scans.add(sm_run, 1, "530127", "genuine", _days_ago(3), times=3)
        scans.add(sm_run, 2, "530127", "genuine", _days_ago(8))
        scans.add(None, None, "530127", "counterfeit", _days_ago(2), times=3)
        scans.add(sm_run, 1, "530127", "suspicious", _days_ago(1))
        _bad_batch(s, "huaning-coop", "HN-GJ-2026-11-009", "华宁县农产品质量安全检测站")
        _bad_batch(s, "songming-farm", "SY-FQ-2026-11-021", "嵩明县农产品检测站")
        s.commit()
        ids.update(hn_run_id=hn_run.id, sm_run_id=sm_run.id)
    return ids


@pytest.fixture
def world(app: Flask) -> dict[str, Any]:
    return build_world(app)


def _get(client: FlaskClient, token: str, path: str, **params: Any) -> Any:
    r = client.get(f"/api/v1/analytics/{path}", query_string=params, headers=bearer(token))
    assert r.status_code == 200, r.get_data(as_text=True)
    return r


def _rows(client: FlaskClient, token: str, path: str, **params: Any) -> list[dict[str, Any]]:
    return list(_get(client, token, path, **params).json["rows"])


# -- scan figures -------------------------------------------------------------------------


def test_series_sums_by_verdict_and_granularity(client: FlaskClient, world: dict[str, Any]) -> None:
    token = world["tokens"]["huaning-regulator"]
    days = _rows(client, token, "scans/series")
    total = {k: sum(r[k] for r in days) for k in ("scans", "genuine", "suspicious", "counterfeit")}
    # Huaning county only: 6 genuine at home in range (Kunming is another county), 2
    # suspicious, 2 counterfeit; the scan from 420 days ago is outside the default range.
    assert total == {"scans": 10, "genuine": 6, "suspicious": 2, "counterfeit": 2}
    assert len(days) == len({r["period"] for r in days}) > 300  # every day, zeros included
    for granularity in ("week", "month"):
        rows = _rows(client, token, "scans/series", granularity=granularity)
        assert sum(r["scans"] for r in rows) == 10
    months = _rows(client, token, "scans/series", granularity="month")
    assert all(len(r["period"]) == 7 for r in months) and len(months) == 12
    wide = _rows(client, token, "scans/series", granularity="month", **{"from": "2025-01-01"})
    assert sum(r["scans"] for r in wide) == 11


def test_date_range_edges_mix_daily_and_monthly_rollups(
    client: FlaskClient, world: dict[str, Any]
) -> None:
    token = world["tokens"]["huaning-regulator"]
    three = _days_ago(3).astimezone(CST).date()
    only = _rows(client, token, "scans/regions", **{"from": three, "to": three})
    assert [r["scans"] for r in only] == [2]
    # A range with partial months at both ends and whole months between adds up the same
    # as the daily series over it.
    first = three - timedelta(days=70)
    rng = {"from": first, "to": three}
    regions = _rows(client, token, "scans/regions", **rng)
    series = _rows(client, token, "scans/series", **rng)
    assert regions[0]["scans"] == sum(r["scans"] for r in series) == 6


def test_regions_drill_down_province_city_county(
    client: FlaskClient, world: dict[str, Any]
) -> None:
    admin = world["tokens"]["admin"]
    provinces = _rows(client, admin, "scans/regions")
    yunnan = next(r for r in provinces if r["region_code"] == "53")
    assert yunnan["region_name"] == "云南省" and yunnan["scans"] == 19 and yunnan["drillable"]
    cities = {r["region_code"]: r for r in _rows(client, admin, "scans/regions", region="53")}
    assert set(cities) == {"5301", "5304"}
    assert cities["5304"]["region_name"] == "玉溪市" and cities["5304"]["scans"] == 10
    assert cities["5301"]["scans"] == 9  # Songming 8 + Kunming's Guandu district 1
    counties = _rows(client, admin, "scans/regions", region="5301")
    assert {r["region_code"]: r["scans"] for r in counties} == {"530127": 8, "530111": 1}
    assert all(r["drillable"] for r in counties)
    at_county = _rows(client, admin, "scans/regions", region="53", level="county")
    assert len(at_county) == 3 and sum(r["share"] for r in at_county) == pytest.approx(100)
    # A county regulator: its own county is the comparison.
    hn = _rows(client, world["tokens"]["huaning-regulator"], "scans/regions")
    assert [(r["region_code"], r["region_name"], r["drillable"]) for r in hn] == [
        ("530424", "华宁县", False)
    ]


def test_regulator_cannot_widen_its_jurisdiction(
    client: FlaskClient, world: dict[str, Any]
) -> None:
    token = world["tokens"]["huaning-regulator"]
    for region in ("5304", "53", "530127", ""):
        r = client.get(
            "/api/v1/analytics/scans/series", query_string={"region": region}, headers=bearer(token)
        )
        assert r.status_code == 403, region
        assert r.mimetype == "application/problem+json"
    bad = client.get(
        "/api/v1/analytics/scans/series", query_string={"region": "5304x"}, headers=bearer(token)
    )
    assert bad.status_code == 422
    backwards = client.get(
        "/api/v1/analytics/scans/series",
        query_string={"from": "2026-05-02", "to": "2026-05-01"},
        headers=bearer(token),
    )
    assert backwards.status_code == 422
    assert client.get("/api/v1/analytics/scans/series").status_code == 401


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"to": "0001-11-01"}, "to"),  # the default start, 11 months earlier, is before year 1
        ({"to": "9999-12-31"}, "to"),  # the day after, as a bound, is past year 9999
        ({"from": "0001-01-01", "to": "0001-01-05"}, "from"),
        ({"from": "9999-12-30", "to": "9999-12-31"}, "from"),
    ],
)
def test_dates_out_of_range_are_named_not_500(
    client: FlaskClient, world: dict[str, Any], query: dict[str, str], field: str
) -> None:
    for user in ("huaning-regulator", "huaning-coop"):
        token = world["tokens"][user]
        for path in ("scans/series", "scans/rate", "farming", "summary"):
            r = client.get(
                f"/api/v1/analytics/{path}",
                query_string={**query, "format": "csv"},
                headers=bearer(token),
            )
            assert r.status_code == 422, (path, query, r.get_data(as_text=True)[:300])
            assert r.mimetype == "application/problem+json"
            assert field in [e["field"] for e in r.json["errors"]]


def test_enterprise_sees_its_codes_wherever_scanned(
    client: FlaskClient, world: dict[str, Any]
) -> None:
    token = world["tokens"]["huaning-coop"]
    series = _rows(client, token, "scans/series")
    assert sum(r["scans"] for r in series) == 9  # 7 genuine (Kunming too) + 2 suspicious
    assert all(r["counterfeit"] is None for r in series)
    regions = _rows(client, token, "scans/regions")
    assert [r["region_code"] for r in regions] == ["53"]
    counties = _rows(client, token, "scans/regions", level="county")
    assert {r["region_code"]: r["scans"] for r in counties} == {"530424": 8, "530111": 1}
    products = _rows(client, token, "scans/products")
    assert [(p["product_name"], p["scans"]) for p in products] == [("华宁柑桔", 9)]


def test_enterprises_products_and_counterfeit_tables(
    client: FlaskClient, world: dict[str, Any]
) -> None:
    admin = world["tokens"]["admin"]
    ents = _rows(client, admin, "scans/enterprises")
    assert [(e["enterprise_name"], e["scans"]) for e in ents] == [
        ("华宁县盘溪柑桔专业合作社", 9),
        ("嵩明嵩阳生态农业有限公司", 5),
    ]
    fakes = {r["region_code"]: r for r in _rows(client, admin, "scans/counterfeit")}
    assert fakes["530127"]["counterfeit"] == 3 and fakes["530127"]["suspicious"] == 1
    assert fakes["530424"]["counterfeit"] == 2 and fakes["530424"]["suspicious"] == 2
    assert fakes["530424"]["full_name"] == "云南省玉溪市华宁县"
    hn = _rows(client, world["tokens"]["huaning-regulator"], "scans/products", limit=1)
    assert [(p["product_name"], p["scans"]) for p in hn] == [("华宁柑桔", 8)]


def test_scan_rate_counts_distinct_codes(client: FlaskClient, world: dict[str, Any]) -> None:
    r = _get(client, world["tokens"]["huaning-coop"], "scans/rate").json
    # Codes of runs issued in the range that were ever scanned: 1..6 (6 was 420 days ago).
    assert r["meta"]["codes_issued"] == 100 and r["meta"]["codes_scanned"] == 6
    assert r["rows"][0]["scan_rate"] == 6.0
    summary = client.get(
        "/api/v1/analytics/summary", headers=bearer(world["tokens"]["huaning-regulator"])
    ).json
    assert summary["scan_rate"] == 6.0 and summary["scans"]["scans"] == 10


def test_production_tables(client: FlaskClient, world: dict[str, Any]) -> None:
    token = world["tokens"]["huaning-regulator"]
    farming = _rows(client, token, "farming")
    kinds = {r["type"] for r in farming}
    assert {"pesticide", "fertilizing", "harvest", "care", "irrigation"} <= kinds
    assert "inspection" not in kinds
    pesticide = sum(r["events"] for r in farming if r["type"] == "pesticide")
    assert pesticide == 3  # two in the demo season, one in the bad batch
    supply = _rows(client, token, "supply")
    citrus = [r for r in supply if r["product_name"] == "华宁柑桔"]
    assert sum(r["labels_issued"] for r in citrus) == 100
    assert sum(r["quantity"] for r in citrus) == 12000 + 800
    phi = _rows(client, token, "phi-violations")
    assert [(p["batch_no"], p["phi_days"], p["days_short"]) for p in phi] == [
        ("HN-GJ-2026-11-009", 21, 16)
    ]
    failed = _rows(client, token, "failed-inspections")
    assert [(f["batch_no"], f["failed_items"]) for f in failed] == [
        ("HN-GJ-2026-11-009", "毒死蜱 0.35 mg/kg")
    ]


def test_new_scans_show_up_at_once(
    client: FlaskClient, world: dict[str, Any], session: Session
) -> None:
    token = world["tokens"]["huaning-regulator"]
    before = sum(r["scans"] for r in _rows(client, token, "scans/series"))
    session.add(
        ScanEvent(
            scanned_at=datetime.now(UTC),
            channel="phone",
            region_code="530424",
            verdict="counterfeit",
            ua_class="other",
        )
    )
    session.commit()
    after = _rows(client, token, "scans/series")
    assert sum(r["scans"] for r in after) == before + 1
    assert after[-1]["period"] == datetime.now(CST).date().isoformat()


# -- CSV for Excel ------------------------------------------------------------------------


def _csv(response: Any) -> list[list[str]]:
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM so that Excel reads UTF-8"
    text = raw.decode("utf-8")
    # Records end with CRLF (a line break inside a quoted field stays as it was).
    assert text.endswith("\r\n") and "\r\n" in text.split("\n", 1)[0] + "\n"
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))


def test_csv_exports_round_trip_chinese_text(client: FlaskClient, world: dict[str, Any]) -> None:
    token = world["tokens"]["admin"]
    r = _get(client, token, "scans/enterprises", format="csv")
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in r.headers["Content-Disposition"]
    rows = _csv(r)
    assert rows[0][:3] == ["企业编号", "企业", "企业所在地"]
    as_json = _rows(client, token, "scans/enterprises")
    assert [row[1] for row in rows[1:]] == [e["enterprise_name"] for e in as_json]
    assert rows[1][2] == "云南省玉溪市华宁县"
    english = _csv(_get(client, token, "scans/enterprises", format="csv", lang="en"))
    assert english[0][:2] == ["Enterprise id", "Enterprise"]
    assert english[1][1] == "华宁县盘溪柑桔专业合作社"


def test_csv_quotes_awkward_text_and_defuses_formulas(
    client: FlaskClient, world: dict[str, Any], session: Session
) -> None:
    product = session.scalars(select(Product).where(Product.name == "华宁柑桔")).one()
    product.name = '=HYPERLINK("x"),柑桔 "特级"\n礼盒'
    session.commit()
    rows = _csv(_get(client, world["tokens"]["huaning-coop"], "scans/products", format="csv"))
    assert rows[1][1] == "'" + '=HYPERLINK("x"),柑桔 "特级"\n礼盒'
    assert len(rows) == 2 and len(rows[1]) == len(rows[0])


# -- isolation: 530424 never sees 530127 --------------------------------------------------

ANALYTICS_ENDPOINTS = (
    "scans/series",
    "scans/regions",
    "scans/enterprises",
    "scans/products",
    "scans/rate",
    "scans/counterfeit",
    "farming",
    "supply",
    "phi-violations",
    "failed-inspections",
    "summary",
)


def _bodies(client: FlaskClient, token: str) -> dict[str, str]:
    out = {}
    variants: list[dict[str, Any]] = [
        {},
        {"format": "csv"},
        {"format": "csv", "lang": "en"},
        {"level": "county"},
        {"granularity": "month"},
        {"from": "2024-01-01"},
    ]
    for path in ANALYTICS_ENDPOINTS:
        for params in variants:
            if "level" in params and path != "scans/regions":
                continue
            if "granularity" in params and path != "scans/series":
                continue
            r = _get(client, token, path, **params)
            out[f"{path} {params}"] = r.get_data(as_text=True)
    return out


def test_huaning_regulator_never_sees_songming(client: FlaskClient, world: dict[str, Any]) -> None:
    seen = _bodies(client, world["tokens"]["huaning-regulator"])
    for name, body in seen.items():
        for needle in SONGMING_NEEDLES:
            assert needle not in body, f"{needle} in {name}"
    # The check can fail: the Songming regulator's answers do carry these strings.
    theirs = _bodies(client, world["tokens"]["songming-regulator"])
    assert any("嵩" in body for body in theirs.values())
    assert any("530127" in body for body in theirs.values())
    # And Huaning's own data is there (not an empty answer passing by accident).
    assert any("华宁" in body for body in seen.values())


def test_isolation_holds_for_enterprises_too(client: FlaskClient, world: dict[str, Any]) -> None:
    seen = _bodies(client, world["tokens"]["huaning-coop"])
    for name, body in seen.items():
        for needle in ("嵩明", "嵩阳", "番茄"):
            assert needle not in body, f"{needle} in {name}"


def test_rollup_matches_raw_scan_log(
    app: Flask, client: FlaskClient, world: dict[str, Any], session: Session
) -> None:
    """Every level of the region rollup sums to the raw log, after a full rebuild too."""
    from sqlalchemy import func

    from trace.models.analytics import ScanRegionDaily, ScanRegionMonthly
    from trace.services import rollups

    client.get("/api/v1/analytics/summary", headers=bearer(world["tokens"]["admin"]))
    session.expire_all()
    raw = session.scalar(select(func.count()).select_from(ScanEvent))
    for full in (False, True):
        if full:
            rollups.refresh(session, full=True)
            session.commit()
        for length in (0, 2, 4, 6):
            summed = session.scalar(
                select(func.sum(ScanRegionDaily.scans)).where(
                    func.length(ScanRegionDaily.region) == length
                )
            )
            assert summed == raw, (full, length)
        # Monthly rows: complete months only, each the sum of its days.
        this_month = datetime.now(CST).date().replace(day=1)
        past = session.scalar(
            select(func.sum(ScanRegionDaily.scans)).where(
                ScanRegionDaily.day < this_month, ScanRegionDaily.region == ""
            )
        )
        monthly = session.scalar(
            select(func.sum(ScanRegionMonthly.scans)).where(ScanRegionMonthly.region == "")
        )
        assert monthly == past and past is not None and past > 0
        assert not session.scalar(select(func.count()).where(ScanRegionMonthly.month >= this_month))


def test_split_range_reads_whole_past_months_only() -> None:
    from trace.services.analytics import DateRange, split_range

    today = date(2026, 11, 22)
    edges, months = split_range(DateRange(date(2026, 1, 15), date(2026, 11, 22)), today)
    assert edges == [
        (date(2026, 1, 15), date(2026, 1, 31)),
        (date(2026, 11, 1), date(2026, 11, 22)),
    ]
    assert months == (date(2026, 2, 1), date(2026, 10, 1))
    # A range ending in the future still reads the current month day by day.
    edges, months = split_range(DateRange(date(2026, 10, 1), date(2026, 12, 31)), today)
    assert edges == [(date(2026, 11, 1), date(2026, 12, 31))] and months == (
        date(2026, 10, 1),
        date(2026, 10, 1),
    )
    assert split_range(DateRange(date(2026, 3, 2), date(2026, 3, 30)), today) == (
        [(date(2026, 3, 2), date(2026, 3, 30))],
        None,
    )


def test_demo_scans_generator_and_rollup_job(app: Flask, session: Session) -> None:
    """`flask demo scans` writes N scans with their runs and code states; the rollups it
    rebuilds agree with the log; `flask analytics rollup` then has nothing to redo."""
    from sqlalchemy import func

    from trace.cli import analytics as analytics_cli
    from trace.models.analytics import RunScanTotal, ScanRegionDaily

    runner = app.test_cli_runner()
    result = runner.invoke(args=["demo", "scans", "--count", "3000", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "3,000 scans" in result.output
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(ScanEvent)) == 3000
    fakes = session.scalar(
        select(func.count()).where(ScanEvent.verdict == "counterfeit", ScanEvent.run_id.is_(None))
    )
    assert (
        fakes
        and session.scalar(
            select(func.count()).where(
                ScanEvent.verdict == "counterfeit", ScanEvent.run_id.is_not(None)
            )
        )
        == 0
    )
    first, last = session.execute(
        select(func.min(ScanEvent.scanned_at), func.max(ScanEvent.scanned_at))
    ).one()
    assert (last - first).days > 300  # spread over (nearly) two years
    distinct_codes = session.scalar(
        select(func.count()).select_from(
            select(ScanEvent.run_id, ScanEvent.serial)
            .where(ScanEvent.run_id.is_not(None))
            .distinct()
            .subquery()
        )
    )
    assert session.scalar(select(func.count()).select_from(CodeState)) == distinct_codes
    assert session.scalar(select(func.sum(RunScanTotal.codes_scanned))) == distinct_codes
    national = session.scalar(
        select(func.sum(ScanRegionDaily.scans)).where(ScanRegionDaily.region == "")
    )
    assert national == 3000
    job = runner.invoke(analytics_cli.group, ["rollup", "--months-ahead", "1"])
    assert job.exit_code == 0, job.output
    assert "rollup done" in job.output
    session.expire_all()
    assert (
        session.scalar(select(func.sum(ScanRegionDaily.scans)).where(ScanRegionDaily.region == ""))
        == 3000
    )
