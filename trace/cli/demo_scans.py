"""`flask demo scans --count N`: fill the database with N scan events for demos and load
tests, spread over label runs, counties and (by default) two years.

Each invocation adds its own synthetic batches and label runs (serials taken from the
enterprises' counters, so they never collide with real runs), the per-code states the scan
path would have kept, farming and inspection records, kiosks, a few recalls, and then the
scans. Scans are generated with numpy and, on PostgreSQL, streamed with COPY (10 million
rows take minutes, not hours); SQLite gets executemany. The rollups are rebuilt at the end
(`--no-rollup` to skip). It writes no audit entries: this is synthetic data.

Where the scans happen follows how county produce is sold: mostly in the producing county
and the rest of its city, then the provincial capital, the big consumer cities, and a
little everywhere; a few per cent have no known county (phones without location).
Counterfeit attempts cluster in a few hot spots, and the last week holds a counterfeit
burst and a suspicious cluster in Huaning for the dashboard's alerts.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import click
import numpy as np
import numpy.typing as npt
from flask import current_app
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from trace.cli.demo import group
from trace.db import utcnow
from trace.extensions import config, db
from trace.models import (
    Batch,
    CodeState,
    Device,
    Enterprise,
    LabelRun,
    LabelVoid,
    Product,
    Recall,
    ScanEvent,
    Site,
    TraceEvent,
)
from trace.regions import lookup as regions
from trace.services import alerts, demo, rollups
from trace.services.keys import load_keyring
from trace.validation import uscc_check_char

__all__ = ["generate", "group"]

#: Counties given to synthetic enterprises first (the demo's two counties lead).
HOME_COUNTIES = (
    "530424", "530424", "530127", "530424", "530127", "530423", "530402", "530102",
    "532901", "532924", "532504", "532524", "530326", "530322", "530181", "530125",
    "530111", "532923", "130123", "130102",
)  # fmt: skip
#: Where county produce is bought and scanned, besides home: the provincial capital …
CAPITAL_DISTRICTS = ("530102", "530103", "530111", "530112", "530114")
#: … and the big consumer cities.
BIG_CITIES = ("110105", "310115", "440106", "440305", "510107", "330106", "500103", "420106")
HOTSPOTS = ("530111", "440106", "530424")
PRODUCTS = (
    ("柑桔", "水果/柑橘", "kg"), ("蓝莓", "水果/浆果", "kg"), ("核桃", "坚果", "kg"),
    ("小粒咖啡", "饮料作物", "kg"), ("普洱茶", "茶叶", "饼"), ("三七", "中药材", "kg"),
    ("鲜花饼", "加工食品", "盒"), ("石榴", "水果", "kg"), ("芒果", "水果", "kg"),
    ("野生菌", "食用菌", "kg"), ("苹果", "水果", "kg"), ("玫瑰花", "花卉", "kg"),
    ("红米", "粮食", "kg"), ("魔芋", "蔬菜", "kg"), ("蜂蜜", "蜂产品", "瓶"),
)  # fmt: skip
FIRST_NAMES = ("云岭", "高原", "滇南", "彩云", "润土", "金谷", "清源", "绿野", "丰禾", "山泉")
KINDS = ("专业合作社", "农业有限公司", "生态农场", "种植基地")
VERDICT_CODES = np.array(["genuine", "suspicious", "counterfeit", "recalled", "voided"])
CHANNELS = np.array(["phone", "kiosk", "printer_check", "api"])
UA_CLASSES = np.array(["wechat", "android", "ios", "other"])
COPY_CHUNK = 250_000


@dataclass
class World:
    """What the scans point at: label runs and their context, as numpy-friendly arrays."""

    run_ids: list[int] = field(default_factory=list)
    run_first: list[int] = field(default_factory=list)
    run_count: list[int] = field(default_factory=list)
    run_created: list[float] = field(default_factory=list)  # epoch seconds
    run_enterprise: list[int] = field(default_factory=list)
    run_batch: list[int] = field(default_factory=list)
    run_product: list[int] = field(default_factory=list)
    run_market: list[int] = field(default_factory=list)  # index into markets
    run_void_upto: list[int] = field(default_factory=list)  # serials below are voided
    run_recalled_at: list[float] = field(default_factory=list)  # inf when never
    markets: list[list[str]] = field(default_factory=list)
    kiosks: dict[str, int] = field(default_factory=dict)  # county -> device id


def _uscc(region: str, rng: np.random.Generator) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    body = "93" + region + "".join(alphabet[i] for i in rng.integers(0, 31, 9))
    return body + uscc_check_char(body)


def _market(home: str, rng: np.random.Generator) -> list[str]:
    """Counties where this producer's goods get scanned, most likely first."""
    city = regions.city_code(home)
    siblings = [r.code for r in regions.children(city) if r.code != home] or [home]
    picks = list(rng.choice(siblings, size=min(3, len(siblings)), replace=False))
    return [home, *picks, *CAPITAL_DISTRICTS, *BIG_CITIES]


def _market_weights(size: int) -> npt.NDArray[np.float64]:
    # home 45 %, three neighbours 15 %, capital 20 %, big cities 17 % (the rest: anywhere).
    w = np.concatenate(
        [
            [0.45],
            np.full(size - 1 - len(CAPITAL_DISTRICTS) - len(BIG_CITIES), 0.05),
            np.full(len(CAPITAL_DISTRICTS), 0.04),
            np.full(len(BIG_CITIES), 0.17 / len(BIG_CITIES)),
        ]
    )
    return w / w.sum()


def _enterprises(session: Session, wanted: int, rng: np.random.Generator) -> list[Enterprise]:
    existing = list(session.scalars(select(Enterprise).order_by(Enterprise.id)))
    out = list(existing[:wanted])
    i = len(existing)
    while len(out) < wanted:
        home = HOME_COUNTIES[i % len(HOME_COUNTIES)]
        county = regions.get(home)
        name = (
            f"{county.name if county else ''}{FIRST_NAMES[i % len(FIRST_NAMES)]}"
            f"{KINDS[i % len(KINDS)]}{i:02d}"
        )
        ent = Enterprise(
            uscc=_uscc(home, rng),
            name=name,
            region_code=home,
            address=regions.full_name(home),
            contact_name="联系人",
            contact_phone="0871-60000000",
            status="admitted",
            next_serial=1,
        )
        session.add(ent)
        out.append(ent)
        i += 1
    session.flush()
    return out


def _products(session: Session, ent: Enterprise, rng: np.random.Generator) -> list[Product]:
    products = list(session.scalars(select(Product).where(Product.enterprise_id == ent.id)))
    missing = max(0, int(rng.integers(2, 4)) - len(products))
    for pick in rng.choice(len(PRODUCTS), size=missing, replace=False):
        name, category, _unit = PRODUCTS[int(pick)]
        county = regions.get(ent.region_code)
        full = f"{county.name[:2] if county else ''}{name}"
        if any(p.name == full for p in products):
            continue
        product = Product(
            enterprise_id=ent.id,
            name=full,
            category=category,
            specification="",
            brand="",
        )
        session.add(product)
        products.append(product)
    session.flush()
    return products


def _site(session: Session, ent: Enterprise) -> Site:
    site = session.scalars(select(Site).where(Site.enterprise_id == ent.id)).first()
    if site is None:
        county = regions.get(ent.region_code)
        site = Site(
            enterprise_id=ent.id,
            name=f"{ent.name}基地",
            region_code=ent.region_code,
            latitude=county.lat if county else None,
            longitude=county.lon if county else None,
        )
        session.add(site)
        session.flush()
    return site


def _kiosks(session: Session, counties: set[str]) -> dict[str, int]:
    found = {
        d.region_code: d.id
        for d in session.scalars(select(Device).where(Device.kind == "kiosk").order_by(Device.id))
    }
    for county in sorted(counties - set(found)):
        region = regions.get(county)
        device = Device(
            kind="kiosk",
            name=f"{region.name if region else county}电商服务站溯源一体机",
            region_code=county,
            # Nobody holds this device's token: only its hash could ever be stored anyway.
            token_hash=secrets.token_hex(32),
        )
        session.add(device)
        session.flush()
        found[county] = device.id
    return found


def _events(
    batch: Batch,
    harvest: datetime,
    place: str,
    rng: np.random.Generator,
    phi_bad: bool,
    failed: bool,
) -> list[dict[str, Any]]:
    """A plausible season of records ending at harvest (UTC datetimes)."""
    day = timedelta(days=1)
    spray = harvest - (int(rng.integers(3, 10)) if phi_bad else int(rng.integers(25, 60))) * day
    inspection = {
        "method": "农药残留快速检测",
        "verdict": "fail" if failed else "pass",
        "lab": "县农产品质量安全检测站",
        "items": [
            {
                "name": "有机磷和氨基甲酸酯类",
                "passed": not failed,
                "result": "抑制率 62%" if failed else "抑制率 11%",
            }
        ],
    }
    rows: list[tuple[str, datetime, dict[str, Any]]] = [
        ("sowing", harvest - 150 * day, {"variety": "本地品种", "area_mu": "20"}),
        ("fertilizing", harvest - 120 * day, {"name": "腐熟农家肥", "amount": "1500",
                                              "amount_unit": "kg/亩", "kind": "有机肥"}),
        ("irrigation", harvest - 90 * day, {"method": "滴灌", "water_m3": "300"}),
        ("fertilizing", harvest - 70 * day, {"name": "复合肥(15-15-15)", "amount": "40",
                                             "amount_unit": "kg/亩", "kind": "复合肥"}),
        ("care", harvest - 60 * day, {"operation": "修剪", "description": "疏枝"}),
        ("pesticide", spray, {"product_name": "1.8%阿维菌素乳油", "registration_no": "PD20080123",
                              "active_ingredient": "阿维菌素", "dose": "30", "dose_unit": "mL/亩",
                              "dilution": "3000倍", "target": "红蜘蛛", "phi_days": 14}),
        ("harvest", harvest, {"quantity": str(batch.quantity), "unit": batch.unit}),
        ("inspection", harvest + day, inspection),
        ("shipping", harvest + 3 * day, {"destination": "昆明金马正昌农产品批发市场",
                                         "destination_region": "530111", "carrier": "县物流公司"}),
    ]  # fmt: skip
    return [
        {
            "enterprise_id": batch.enterprise_id,
            "batch_id": batch.id,
            "type": kind,
            "occurred_at": when,
            "place": place,
            "actor": "",
            "note": "",
            "details": details,
            "created_at": when,
        }
        for kind, when, details in rows
    ]


def build_world(
    session: Session,
    *,
    count: int,
    years: float,
    now: datetime,
    rng: np.random.Generator,
    key_version: int,
    tag: str,
) -> World:
    """Enterprises, products, batches, label runs (with some voids and recalls), farming
    records and kiosks for `count` scans. Flushed, not committed."""
    span = years * 365 * 86400.0
    start = now.timestamp() - span
    n_ent = max(6, min(40, 6 + count // 250_000))
    enterprises = _enterprises(session, n_ent, rng)
    world = World()
    codes_wanted = max(2_000, int(count * 2.5))
    plan: list[tuple[Enterprise, Product, float]] = []
    for ent in enterprises:
        for product in _products(session, ent, rng):
            for _ in range(int(rng.integers(5, 9))):
                # More recent batches than old ones: the platform grows.
                plan.append((ent, product, start + span * 0.97 * float(np.sqrt(rng.random()))))
    sizes = rng.lognormal(0.0, 0.6, len(plan))
    sizes = np.maximum(20, sizes / sizes.sum() * codes_wanted).astype(np.int64)
    events: list[dict[str, Any]] = []
    markets: dict[int, int] = {}
    for i, ((ent, product, created), size) in enumerate(zip(plan, sizes, strict=True)):
        created_at = datetime.fromtimestamp(created, UTC)
        harvest = created_at - timedelta(days=2)
        site = _site(session, ent)
        phi_bad = rng.random() < 0.03
        failed = rng.random() < 0.03
        batch = Batch(
            enterprise_id=ent.id,
            product_id=product.id,
            site_id=site.id,
            batch_no=f"GEN-{tag}-{i:05d}",
            harvest_date=harvest.date(),
            pack_date=(harvest + timedelta(days=1)).date(),
            quantity=Decimal(int(size) // 4 + 100),
            unit="kg",
            grade="一级",
            status="sealed",
            phi_violation=phi_bad,
            labelled_at=created_at,
            created_at=harvest - timedelta(days=1),
        )
        session.add(batch)
        session.flush()
        events.extend(_events(batch, harvest, site.name, rng, phi_bad, failed))
        run = LabelRun(
            enterprise_id=ent.id,
            batch_id=batch.id,
            level="item",
            count=int(size),
            first_serial=ent.next_serial,
            key_version=key_version,
            profile="zpl-203dpi-40x30",
            format="zpl",
            template={},
            status="issued",
            created_at=created_at,
        )
        ent.next_serial += int(size)
        session.add(run)
        session.flush()
        void_upto = run.first_serial
        if rng.random() < 0.05:
            void_upto = run.first_serial + max(1, int(size) // 200)
            session.add(
                LabelVoid(
                    run_id=run.id,
                    first_serial=run.first_serial,
                    last_serial=void_upto - 1,
                    reason="打印损坏",
                    created_at=created_at,
                )
            )
        recalled_at = float("inf")
        recall_time = created + float(rng.uniform(20, 60)) * 86400
        if rng.random() < 0.01 and recall_time < now.timestamp():
            recalled_at = recall_time
            batch.status = "recalled"
            opened = datetime.fromtimestamp(recall_time, UTC)
            closed = opened + timedelta(days=30)
            session.add(
                Recall(
                    batch_id=batch.id,
                    enterprise_id=ent.id,
                    level=str(rng.choice(["一级", "二级", "三级"])),
                    reason="抽检农药残留超标",
                    public_notice="该批次产品正在召回，请停止食用并联系购买点退货。",
                    status="closed" if closed < now else "open",
                    opened_at=opened,
                    closed_at=closed if closed < now else None,
                    close_note="已完成召回" if closed < now else None,
                )
            )
        if ent.id not in markets:
            markets[ent.id] = len(world.markets)
            world.markets.append(_market(ent.region_code, rng))
        world.run_ids.append(run.id)
        world.run_first.append(run.first_serial)
        world.run_count.append(int(size))
        world.run_created.append(created)
        world.run_enterprise.append(ent.id)
        world.run_batch.append(batch.id)
        world.run_product.append(product.id)
        world.run_market.append(markets[ent.id])
        world.run_void_upto.append(void_upto)
        world.run_recalled_at.append(recalled_at)
    if events:
        session.execute(insert(TraceEvent), events)
    counties = {m[0] for m in world.markets} | set(CAPITAL_DISTRICTS)
    world.kiosks = _kiosks(session, counties)
    session.flush()
    return world


@dataclass
class ScanArrays:
    at: npt.NDArray[np.int64]  # epoch microseconds, UTC
    run: npt.NDArray[np.int64]  # index into world runs, -1 = counterfeit
    serial: npt.NDArray[np.int64]
    region: npt.NDArray[np.object_]  # county code or None
    verdict: npt.NDArray[np.int8]  # index into VERDICT_CODES
    channel: npt.NDArray[np.int8]
    device: npt.NDArray[np.int64]  # -1 = none
    ua: npt.NDArray[np.int8]


def make_scans(world: World, count: int, now: datetime, rng: np.random.Generator) -> ScanArrays:
    """The scans, sorted by time. Pure numpy; no database."""
    now_s = now.timestamp()
    n_runs = len(world.run_ids)
    counts = np.array(world.run_count, dtype=np.float64)
    created = np.array(world.run_created)
    fake = rng.random(count) < 0.03
    run = rng.choice(n_runs, size=count, p=counts / counts.sum())
    # Most scans come within weeks of labelling, some months later.
    delay = rng.exponential(45 * 86400.0, count) + rng.uniform(3600, 86400 * 2, count)
    at_s = created[run] + delay
    late = at_s >= now_s - 60
    at_s[late] = rng.uniform(created[run[late]], now_s - 60)
    # Counterfeits: any time in the span, more lately.
    lo = float(created.min())
    at_s[fake] = lo + (now_s - 60 - lo) * np.sqrt(rng.random(int(fake.sum())))
    # Shift to daytime in China (08:00-22:00) keeping the date: scans happen when shops are open.
    local = at_s + 8 * 3600
    day0 = np.floor(local / 86400) * 86400
    at_s = day0 + rng.uniform(8 * 3600, 22 * 3600, count) - 8 * 3600
    at_s = np.minimum(at_s, now_s - 60)

    first = np.array(world.run_first, dtype=np.int64)
    share = rng.uniform(0.25, 0.7, n_runs)  # part of each run's labels that ever get scanned
    serial = first[run] + np.floor(counts[run] * share[run] * rng.random(count) ** 1.3).astype(
        np.int64
    )

    region = np.empty(count, dtype=object)
    market_of_run = np.array(world.run_market)
    for m, counties in enumerate(world.markets):
        rows = np.flatnonzero(market_of_run[run] == m)
        region[rows] = rng.choice(np.array(counties, dtype=object), size=len(rows),
                                  p=_market_weights(len(counties)))  # fmt: skip
    anywhere = rng.random(count) < 0.03
    leaves = _all_counties()
    region[anywhere] = rng.choice(np.array(leaves, dtype=object), size=int(anywhere.sum()))
    hot = fake & (rng.random(count) < 0.5)
    region[hot] = rng.choice(np.array(HOTSPOTS, dtype=object), size=int(hot.sum()))
    unknown = rng.random(count) < 0.02
    region[unknown] = None

    verdict = np.zeros(count, dtype=np.int8)
    verdict[rng.random(count) < 0.015] = 1
    recalled_at = np.array(world.run_recalled_at)
    verdict[at_s >= recalled_at[run]] = 3
    void_upto = np.array(world.run_void_upto, dtype=np.int64)
    verdict[serial < void_upto[run]] = 4
    verdict[fake] = 2
    run[fake] = -1
    serial[fake] = 0

    channel = rng.choice(4, size=count, p=[0.80, 0.15, 0.02, 0.03]).astype(np.int8)
    device = np.full(count, -1, dtype=np.int64)
    kiosk_rows = np.flatnonzero(channel == 1)
    kiosk_ids = np.array([world.kiosks.get(r, -1) if r else -1 for r in region[kiosk_rows]])
    device[kiosk_rows] = kiosk_ids
    channel[kiosk_rows[kiosk_ids < 0]] = 0  # no kiosk in that county: it was a phone
    ua = rng.choice(4, size=count, p=[0.55, 0.2, 0.2, 0.05]).astype(np.int8)
    ua[channel == 1] = 3

    order = np.argsort(at_s, kind="stable")
    return ScanArrays(
        at=(at_s[order] * 1_000_000).astype(np.int64),
        run=run[order],
        serial=serial[order],
        region=region[order],
        verdict=verdict[order],
        channel=channel[order],
        device=device[order],
        ua=ua[order],
    )


@cache
def _all_counties() -> list[str]:
    out: list[str] = []
    stack = [p.code for p in regions.provinces()]
    while stack:
        code = stack.pop()
        kids = regions.children(code)
        if kids:
            stack.extend(k.code for k in kids)
        elif code[2:] != "0000":
            out.append(code)
    return sorted(out)


def add_recent_trouble(
    scans: ScanArrays, world: World, now: datetime, rng: np.random.Generator
) -> ScanArrays:
    """A counterfeit burst three days ago and a suspicious cluster yesterday in Huaning."""
    huaning = [i for i, m in enumerate(world.run_market) if world.markets[m][0] == "530424"]
    if not huaning:
        return scans
    extra = 60 + 12
    at = np.concatenate(
        [
            np.full(60, (now - timedelta(days=3)).timestamp()),
            np.full(12, (now - timedelta(days=1)).timestamp()),
        ]
    ) + rng.uniform(0, 3600, extra)
    runs = np.concatenate([np.full(60, -1), rng.choice(huaning, 12)])
    first = np.array(world.run_first)
    merged = ScanArrays(
        at=np.concatenate([scans.at, (at * 1_000_000).astype(np.int64)]),
        run=np.concatenate([scans.run, runs]),
        serial=np.concatenate([scans.serial, np.where(runs >= 0, first[runs], 0)]),
        region=np.concatenate([scans.region, np.full(extra, "530424", dtype=object)]),
        verdict=np.concatenate([scans.verdict, np.array([2] * 60 + [1] * 12, dtype=np.int8)]),
        channel=np.concatenate([scans.channel, np.zeros(extra, dtype=np.int8)]),
        device=np.concatenate([scans.device, np.full(extra, -1)]),
        ua=np.concatenate([scans.ua, np.zeros(extra, dtype=np.int8)]),
    )
    order = np.argsort(merged.at, kind="stable")
    return ScanArrays(*(getattr(merged, f)[order] for f in ScanArrays.__dataclass_fields__))


# -- writing ------------------------------------------------------------------------------

SCAN_COLUMNS = (
    "scanned_at",
    "run_id",
    "serial",
    "enterprise_id",
    "batch_id",
    "product_id",
    "channel",
    "device_id",
    "region_code",
    "verdict",
    "ua_class",
    "ip_hash",
)
STATE_COLUMNS = (
    "run_id",
    "serial",
    "scan_count",
    "first_scan_at",
    "first_region_code",
    "last_scan_at",
    "last_region_code",
    "suspicious_reason",
    "updated_at",
)


def _ts_text(micros: npt.NDArray[np.int64]) -> list[str]:
    out = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us")
    return [s.replace("T", " ") for s in out.tolist()]


def _opt_ids(
    values: npt.NDArray[np.int64], table: npt.NDArray[np.int64] | None = None
) -> list[str]:
    mapped = values if table is None else np.where(values >= 0, table[np.maximum(values, 0)], -1)
    text_values = mapped.astype(str)
    out: list[str] = np.where(mapped >= 0, text_values, "\\N").tolist()
    return out


def _scan_rows_text(s: ScanArrays, world: World, lo: int, hi: int) -> bytes:
    runs = s.run[lo:hi]
    ids = np.array(world.run_ids, dtype=np.int64)
    ent = np.array(world.run_enterprise, dtype=np.int64)
    batch = np.array(world.run_batch, dtype=np.int64)
    product = np.array(world.run_product, dtype=np.int64)
    serial = np.where(runs >= 0, s.serial[lo:hi], -1)
    n = hi - lo
    ip = np.where(s.channel[lo:hi] == 1, "\\N", [secrets.token_hex(16) for _ in range(n)])
    columns = [
        _ts_text(s.at[lo:hi]),
        _opt_ids(runs, ids),
        _opt_ids(serial),
        _opt_ids(runs, ent),
        _opt_ids(runs, batch),
        _opt_ids(runs, product),
        CHANNELS[s.channel[lo:hi]].tolist(),
        _opt_ids(s.device[lo:hi]),
        ["\\N" if r is None else r for r in s.region[lo:hi].tolist()],
        VERDICT_CODES[s.verdict[lo:hi]].tolist(),
        UA_CLASSES[s.ua[lo:hi]].tolist(),
        ip.tolist(),
    ]
    return ("\n".join(map("\t".join, zip(*columns, strict=True))) + "\n").encode()


def code_states(s: ScanArrays) -> dict[str, Any]:
    """Per-code summaries of the generated scans (counterfeits excluded), as arrays."""
    real = np.flatnonzero(s.run >= 0)
    order = real[np.lexsort((s.at[real], s.serial[real], s.run[real]))]
    run, serial = s.run[order], s.serial[order]
    change = np.ones(len(order), dtype=bool)
    change[1:] = (run[1:] != run[:-1]) | (serial[1:] != serial[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(order)) - 1
    suspicious = (
        np.maximum.reduceat((s.verdict[order] == 1).astype(np.int8), starts)
        if len(starts)
        else np.array([], dtype=np.int8)
    )
    return {
        "run": run[starts],
        "serial": serial[starts],
        "count": (ends - starts + 1),
        "first_at": s.at[order][starts],
        "first_region": s.region[order][starts],
        "last_at": s.at[order][ends],
        "last_region": s.region[order][ends],
        "suspicious": suspicious.astype(bool),
    }


def _state_rows_text(st: dict[str, Any], world: World, lo: int, hi: int, now_text: str) -> bytes:
    ids = np.array(world.run_ids, dtype=np.int64)
    columns = [
        ids[st["run"][lo:hi]].astype(str).tolist(),
        st["serial"][lo:hi].astype(str).tolist(),
        st["count"][lo:hi].astype(str).tolist(),
        _ts_text(st["first_at"][lo:hi]),
        ["\\N" if r is None else r for r in st["first_region"][lo:hi].tolist()],
        _ts_text(st["last_at"][lo:hi]),
        ["\\N" if r is None else r for r in st["last_region"][lo:hi].tolist()],
        np.where(st["suspicious"][lo:hi], "count", "\\N").tolist(),
        [now_text] * (hi - lo),
    ]
    return ("\n".join(map("\t".join, zip(*columns, strict=True))) + "\n").encode()


def _copy(session: Session, table: str, columns: tuple[str, ...], chunks: Any) -> None:
    raw: Any = session.connection().connection.dbapi_connection  # a psycopg Connection
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for chunk in chunks:
            copy.write(chunk)


def _skip_fk_checks_if_allowed(session: Session) -> None:
    """Foreign keys are checked row by row at the end of a COPY: for 10 million scans that
    is 50 million lookups, longer than the COPY itself. Every generated row points at rows
    this run just created, so when the role may (a superuser: the local bench and demo
    databases), this transaction skips the checks; otherwise they run as usual."""
    superuser = session.scalar(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
    if superuser:
        session.execute(text("SET LOCAL session_replication_role = replica"))


def _as_rows(payload: bytes, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """COPY text back into dicts for executemany (SQLite; small counts only)."""
    rows = []
    for line in payload.decode().splitlines():
        row: dict[str, Any] = {}
        for name, value in zip(columns, line.split("\t"), strict=True):
            if value == "\\N":
                row[name] = None
            elif name.endswith("_at"):
                row[name] = datetime.fromisoformat(value).replace(tzinfo=UTC)
            elif name in ("run_id", "serial", "enterprise_id", "batch_id", "product_id",
                          "device_id", "scan_count"):  # fmt: skip
                row[name] = int(value)
            else:
                row[name] = value
        rows.append(row)
    return rows


def write(session: Session, scans: ScanArrays, world: World, echo: Any = None) -> int:
    """Insert the scans and code states: COPY on PostgreSQL, executemany on SQLite."""
    n = len(scans.at)
    states = code_states(scans)
    n_states = len(states["run"])
    now_text = utcnow().replace(tzinfo=None).isoformat(sep=" ")
    if n:
        first = datetime.fromtimestamp(int(scans.at[0]) / 1e6, UTC).date()
        last = datetime.fromtimestamp(int(scans.at[-1]) / 1e6, UTC).date()
        rollups.ensure_partitions(session, first, max(last, utcnow().date()))
    scan_chunks = (
        _scan_rows_text(scans, world, lo, min(n, lo + COPY_CHUNK)) for lo in range(0, n, COPY_CHUNK)
    )
    state_chunks = (
        _state_rows_text(states, world, lo, min(n_states, lo + COPY_CHUNK), now_text)
        for lo in range(0, n_states, COPY_CHUNK)
    )
    if session.get_bind().dialect.name == "postgresql":
        _skip_fk_checks_if_allowed(session)
        _copy(session, "scan_events", SCAN_COLUMNS, scan_chunks)
        if echo:
            echo(f"  {n:,} scan events copied")
        _copy(session, "code_states", STATE_COLUMNS, state_chunks)
    else:
        for chunk in scan_chunks:
            session.execute(insert(ScanEvent), _as_rows(chunk, SCAN_COLUMNS))
        for chunk in state_chunks:
            session.execute(insert(CodeState), _as_rows(chunk, STATE_COLUMNS))
    if echo:
        echo(f"  {n_states:,} code states written")
    return n


def generate(
    session: Session,
    *,
    count: int,
    years: float = 2.0,
    seed: int = 2026,
    now: datetime | None = None,
    key_version: int = 0,
    echo: Any = None,
) -> dict[str, Any]:
    """Add `count` scan events with their world. Flushes; the caller commits."""
    now = now or utcnow()
    rng = np.random.default_rng(seed)
    tag = f"{now:%y%m%d%H%M%S}{seed % 100:02d}"
    t0 = time.perf_counter()
    world = build_world(
        session, count=count, years=years, now=now, rng=rng, key_version=key_version, tag=tag
    )
    t1 = time.perf_counter()
    scans = make_scans(world, count, now, rng) if count else None
    if scans is not None and count >= 10_000:
        scans = add_recent_trouble(scans, world, now, rng)
    t2 = time.perf_counter()
    written = write(session, scans, world, echo) if scans is not None else 0
    t3 = time.perf_counter()
    return {
        "scans": written,
        "runs": len(world.run_ids),
        "world_s": round(t1 - t0, 2),
        "generate_s": round(t2 - t1, 2),
        "write_s": round(t3 - t2, 2),
    }


@group.command("scans")
@click.option("--count", type=click.IntRange(min=0), default=100_000, show_default=True)
@click.option("--years", type=click.FloatRange(min=0.1, max=10), default=2.0, show_default=True)
@click.option("--seed", type=int, default=2026, show_default=True)
@click.option("--rollup/--no-rollup", default=True, help="Rebuild the analytics rollups after.")
def scans_command(count: int, years: float, seed: int, rollup: bool) -> None:
    """Add COUNT scan events (and the label runs, code states and records they need)."""
    session = db()
    if not demo.is_loaded(session):
        demo.load(session, current_app.config["SECRET_KEY"])
        click.echo("demo data loaded first")
    keyring = load_keyring(config())
    stats = generate(
        session,
        count=count,
        years=years,
        seed=seed,
        key_version=keyring.current_version,
        echo=click.echo,
    )
    session.commit()
    click.echo(
        f"{stats['scans']:,} scans over {stats['runs']} label runs "
        f"(world {stats['world_s']} s, generate {stats['generate_s']} s, "
        f"write {stats['write_s']} s)"
    )
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE scan_events"))
        session.execute(text("ANALYZE code_states"))
        session.commit()
    if rollup:
        t0 = time.perf_counter()
        result = rollups.refresh(session, full=True)
        new = alerts.refresh(session)
        session.commit()
        click.echo(
            f"rollups rebuilt over {result.days} days in {time.perf_counter() - t0:.1f} s; "
            f"{new} new alerts"
        )
    total = session.scalar(select(func.count()).select_from(ScanEvent))
    session.commit()  # end the read transaction: it would hold locks until exit
    click.echo(f"scan_events now holds {total:,} rows")
