"""Demo data that tells a true story: a Huaning citrus co-operative's season, an organic
tomato grower in Songming, and a regulator for each county."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from trace.models import Batch, Device, Enterprise, User
from trace.models.enums import DeviceKind, Role
from trace.services import accounts, auth, events, records
from trace.services.actors import Actor
from trace.validation import uscc_check_char

CST = timezone(timedelta(hours=8))
DEMO_PASSWORD = "demo-pass-2026"
SYSTEM = Actor(user_id=None, role=Role.PLATFORM_ADMIN)


def demo_secret(secret_key: str, name: str) -> str:
    """Demo tokens are derived from the instance's secret key, so `make run` can print them
    again without storing them anywhere (only their hashes are in the database)."""
    digest = hmac.new(secret_key.encode(), f"demo:{name}".encode(), hashlib.sha256).hexdigest()
    prefix = auth.DEVICE_TOKEN_PREFIX if name.startswith("kiosk") else auth.TOKEN_PREFIX
    return f"{prefix}demo_{digest[:32]}"


def _uscc(body17: str) -> str:
    return body17 + uscc_check_char(body17)


def _at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=CST).astimezone(UTC)


def is_loaded(session: Session) -> bool:
    return bool(session.scalar(select(func.count()).select_from(Enterprise)))


def _user(
    session: Session,
    username: str,
    role: Role,
    display: str,
    *,
    enterprise_id: int | None = None,
    region_prefix: str | None = None,
) -> User:
    return accounts.create_user(
        session,
        SYSTEM,
        {
            "username": username,
            "password": DEMO_PASSWORD,
            "display_name": display,
            "role": role.value,
            "enterprise_id": enterprise_id,
            "region_prefix": region_prefix,
        },
    )


def _ev(
    session: Session,
    actor: Actor,
    batch_id: int,
    kind: str,
    when: datetime,
    details: dict[str, Any],
    place: str = "",
    who: str = "",
    note: str = "",
) -> int:
    event = events.record_event(
        session,
        actor,
        batch_id,
        {
            "type": kind,
            "occurred_at": when,
            "place": place,
            "actor": who,
            "note": note,
            "details": details,
        },
    )
    return event.id


def load(session: Session, secret_key: str) -> dict[str, Any]:
    """Create the demo world. Returns ids worth showing. Caller commits."""
    admin = _user(session, "admin", Role.PLATFORM_ADMIN, "平台管理员")
    huaning = accounts.create_enterprise(
        session,
        SYSTEM,
        {
            "uscc": _uscc("93530424MA6K2LQ8X"),
            "name": "华宁县盘溪柑桔专业合作社",
            "region_code": "530424",
            "address": "云南省玉溪市华宁县盘溪镇华溪村",
            "contact_name": "李国华",
            "contact_phone": "0877-5011234",
            "wechat_account": "华宁柑桔合作社",
        },
    )
    songming = accounts.create_enterprise(
        session,
        SYSTEM,
        {
            "uscc": _uscc("91530127MA6N3B7T2"),
            "name": "嵩明嵩阳生态农业有限公司",
            "region_code": "530127",
            "address": "云南省昆明市嵩明县嵩阳街道",
            "contact_name": "张丽",
            "contact_phone": "0871-67912345",
            "wechat_account": "嵩阳有机农场",
        },
    )
    hn_admin = _user(
        session, "huaning-coop", Role.ENTERPRISE_ADMIN, "李国华", enterprise_id=huaning.id
    )
    sm_admin = _user(
        session, "songming-farm", Role.ENTERPRISE_ADMIN, "张丽", enterprise_id=songming.id
    )
    hn_reg = _user(
        session, "huaning-regulator", Role.REGULATOR, "华宁县市场监督管理局", region_prefix="530424"
    )
    sm_reg = _user(
        session, "songming-regulator", Role.REGULATOR, "嵩明县农业农村局", region_prefix="530127"
    )
    tokens = {}
    for user in (admin, hn_admin, sm_admin, hn_reg, sm_reg):
        issued = auth.issue_token(session, user, "demo", demo_secret(secret_key, user.username))
        tokens[user.username] = issued.secret

    hn = auth.actor_for(hn_admin)
    product = records.create_product(
        session,
        hn,
        {
            "name": "华宁柑桔",
            "category": "水果/柑橘",
            "specification": "5kg/箱 一级果 果径75-85mm",
            "brand": "华宁柑桔",
            "gtin": "06901234567892",
        },
    )
    site = records.create_site(
        session,
        hn,
        {
            "name": "盘溪镇华溪村柑桔基地",
            "region_code": "530424",
            "township": "盘溪镇",
            "village": "华溪村",
            "latitude": 24.1921,
            "longitude": 102.9318,
            "area_mu": Decimal("320.00"),
        },
    )
    batch = records.create_batch(
        session,
        hn,
        {
            "product_id": product.id,
            "site_id": site.id,
            "batch_no": "HN-GJ-2026-11-001",
            "harvest_date": date(2026, 11, 2),
            "pack_date": date(2026, 11, 4),
            "quantity": Decimal("12000"),
            "unit": "kg",
            "grade": "一级",
        },
    )
    place = "盘溪镇华溪村柑桔基地"
    _ev(
        session,
        hn,
        batch.id,
        "fertilizing",
        _at(date(2026, 3, 10)),
        {
            "name": "腐熟羊粪有机肥",
            "amount": "1500",
            "amount_unit": "kg/亩",
            "kind": "有机肥",
            "area_mu": "320",
        },
        place,
        "李国华",
        "春梢萌发前施基肥",
    )
    _ev(
        session,
        hn,
        batch.id,
        "care",
        _at(date(2026, 4, 15)),
        {"operation": "疏花疏果", "description": "每枝保留2-3个幼果"},
        place,
        "合作社社员",
    )
    _ev(
        session,
        hn,
        batch.id,
        "pesticide",
        _at(date(2026, 5, 20), 8),
        {
            "product_name": "1.8%阿维菌素乳油",
            "registration_no": "PD20080123",
            "active_ingredient": "阿维菌素",
            "dose": "30",
            "dose_unit": "mL/亩",
            "dilution": "3000倍",
            "target": "柑橘红蜘蛛",
            "phi_days": 14,
            "area_mu": "320",
        },
        place,
        "王植保员",
        "统防统治",
    )
    _ev(
        session,
        hn,
        batch.id,
        "fertilizing",
        _at(date(2026, 6, 18)),
        {
            "name": "硫酸钾型复合肥(15-15-15)",
            "amount": "50",
            "amount_unit": "kg/亩",
            "kind": "复合肥",
            "area_mu": "320",
        },
        place,
        "李国华",
        "壮果肥",
    )
    _ev(
        session,
        hn,
        batch.id,
        "pesticide",
        _at(date(2026, 8, 25), 8),
        {
            "product_name": "10%吡虫啉可湿性粉剂",
            "registration_no": "PD20110856",
            "active_ingredient": "吡虫啉",
            "dose": "20",
            "dose_unit": "g/亩",
            "dilution": "2000倍",
            "target": "柑橘蚜虫",
            "phi_days": 21,
            "area_mu": "320",
        },
        place,
        "王植保员",
    )
    _ev(
        session,
        hn,
        batch.id,
        "irrigation",
        _at(date(2026, 9, 20)),
        {"method": "滴灌", "water_m3": "960"},
        place,
        "合作社社员",
    )
    _ev(
        session,
        hn,
        batch.id,
        "inspection",
        _at(date(2026, 10, 28), 10),
        {
            "method": "农药残留快速检测（酶抑制率法，GB/T 5009.199）",
            "items": [
                {
                    "name": "有机磷和氨基甲酸酯类农药",
                    "result": "抑制率 12%",
                    "limit": "< 50%",
                    "passed": True,
                },
            ],
            "verdict": "pass",
            "inspector": "赵检测员",
            "lab": "华宁县农产品质量安全检测站",
            "report_no": "HNJC-2026-1028-07",
        },
        "华宁县农产品质量安全检测站",
    )
    _ev(
        session,
        hn,
        batch.id,
        "certification",
        _at(date(2026, 10, 30)),
        {
            "cert_type": "承诺达标合格证",
            "number": "HN530424-2026-001387",
            "issuer": "华宁县盘溪柑桔专业合作社",
            "valid_from": "2026-10-30",
            "valid_until": "2027-01-31",
        },
        place,
    )
    _ev(
        session,
        hn,
        batch.id,
        "harvest",
        _at(date(2026, 11, 2), 7),
        {"quantity": "12000", "unit": "kg"},
        place,
        "合作社社员",
    )
    _ev(
        session,
        hn,
        batch.id,
        "processing",
        _at(date(2026, 11, 3)),
        {
            "process": "清洗、分级",
            "grade": "一级果（果径75-85mm）",
            "quantity": "10000",
            "unit": "kg",
        },
        "合作社分选车间",
    )
    _ev(
        session,
        hn,
        batch.id,
        "packing",
        _at(date(2026, 11, 4)),
        {"package": "5kg瓦楞纸箱", "units": 2000},
        "合作社分选车间",
    )
    _ev(
        session,
        hn,
        batch.id,
        "shipping",
        _at(date(2026, 11, 5), 6),
        {
            "destination": "昆明金马正昌农产品批发市场",
            "destination_region": "530111",
            "carrier": "华宁县顺达物流",
            "vehicle": "云F·3A127",
            "quantity": "10000",
            "unit": "kg",
        },
        "华宁县盘溪镇",
        "华宁县顺达物流",
    )

    sm = auth.actor_for(sm_admin)
    tomato = records.create_product(
        session,
        sm,
        {
            "name": "嵩阳有机番茄",
            "category": "蔬菜/茄果类",
            "specification": "2.5kg/盒",
            "brand": "嵩阳",
        },
    )
    greenhouse = records.create_site(
        session,
        sm,
        {
            "name": "嵩阳街道有机蔬菜大棚基地",
            "region_code": "530127",
            "township": "嵩阳街道",
            "village": "白邑村",
            "latitude": 25.3389,
            "longitude": 103.0364,
            "area_mu": Decimal("85.00"),
        },
    )
    tomato_batch = records.create_batch(
        session,
        sm,
        {
            "product_id": tomato.id,
            "site_id": greenhouse.id,
            "batch_no": "SY-FQ-2026-11-015",
            "harvest_date": date(2026, 11, 12),
            "pack_date": date(2026, 11, 12),
            "quantity": Decimal("3000"),
            "unit": "kg",
            "grade": "特级",
        },
    )
    gh = "嵩阳街道有机蔬菜大棚基地"
    _ev(
        session,
        sm,
        tomato_batch.id,
        "certification",
        _at(date(2026, 1, 8)),
        {
            "cert_type": "有机",
            "number": "1240P2600123",
            "issuer": "中绿华夏有机产品认证中心",
            "valid_from": "2026-01-08",
            "valid_until": "2027-01-07",
        },
        gh,
    )
    _ev(
        session,
        sm,
        tomato_batch.id,
        "sowing",
        _at(date(2026, 7, 1)),
        {"variety": "粉果番茄 ‘金棚一号’", "seed_source": "有机认证种苗", "area_mu": "20"},
        gh,
    )
    _ev(
        session,
        sm,
        tomato_batch.id,
        "fertilizing",
        _at(date(2026, 7, 25)),
        {"name": "发酵牛粪有机肥", "amount": "2000", "amount_unit": "kg/亩", "kind": "有机肥"},
        gh,
    )
    _ev(
        session,
        sm,
        tomato_batch.id,
        "care",
        _at(date(2026, 8, 20)),
        {"operation": "释放丽蚜小蜂防治白粉虱", "description": "生物防治，不使用化学农药"},
        gh,
    )
    _ev(
        session,
        sm,
        tomato_batch.id,
        "inspection",
        _at(date(2026, 11, 10)),
        {
            "method": "农药残留定量检测（GB 23200.113）",
            "items": [{"name": "208种农药残留", "result": "未检出", "passed": True}],
            "verdict": "pass",
            "lab": "云南省农产品质量安全检测中心",
        },
        "昆明",
    )
    _ev(
        session,
        sm,
        tomato_batch.id,
        "harvest",
        _at(date(2026, 11, 12), 7),
        {"quantity": "3000", "unit": "kg"},
        gh,
    )

    kiosk = Device(
        kind=DeviceKind.KIOSK.value,
        name="华宁县电商服务中心溯源一体机",
        region_code="530424",
        token_hash="pending",
    )
    session.add(kiosk)
    session.flush()
    tokens["kiosk-huaning"] = auth.issue_device_token(
        session, kiosk, demo_secret(secret_key, "kiosk-huaning")
    )
    return {
        "tokens": tokens,
        "batch_id": batch.id,
        "tomato_batch_id": tomato_batch.id,
        "enterprise_ids": (huaning.id, songming.id),
        "kiosk_id": kiosk.id,
    }


def demo_tokens(secret_key: str) -> dict[str, str]:
    names = (
        "admin",
        "huaning-coop",
        "songming-farm",
        "huaning-regulator",
        "songming-regulator",
        "kiosk-huaning",
    )
    return {name: demo_secret(secret_key, name) for name in names}


def load_label_runs(session: Session, keyring: Any, batch_ids: tuple[int, ...]) -> list[int]:
    """Issue a small item-level run per demo batch, so there are real codes to scan."""
    from trace.services import labels

    run_ids = []
    for batch_id, count in zip(batch_ids, (1000, 200), strict=False):
        batch = session.get(Batch, batch_id)
        assert batch is not None
        actor = Actor(user_id=None, role=Role.ENTERPRISE_ADMIN, enterprise_id=batch.enterprise_id)
        run = labels.issue_run(
            session,
            actor,
            keyring,
            labels.RunRequest(
                batch_id=batch_id, count=count, profile="tspl-203dpi-40x30", format="tspl"
            ),
            max_count=count,
        )
        run_ids.append(run.id)
    return run_ids


def first_demo_code(session: Session, keyring: Any) -> str | None:
    """The first code of the first issued run, for the banner's scan URL."""
    from trace.models import LabelRun
    from trace.services import labels

    run = session.scalars(
        select(LabelRun).where(LabelRun.status == "issued").order_by(LabelRun.id).limit(1)
    ).first()
    return labels.code_of(keyring, run, run.first_serial) if run else None
