"""Regulator and enterprise analytics: every answer is a Table (columns + rows), which the
API dumps as JSON or CSV and the dashboard draws.

Who sees what (DESIGN.md §3 and issue 5):
- scan data (volumes, regions, products, counterfeits) is scoped by where the scan
  happened: a regulator sees scans in counties under its jurisdiction prefix, whoever made
  the product; an enterprise sees scans of its own codes, wherever they happened;
- production data (label runs, batches, farming records, inspections) is scoped by the
  enterprise: a regulator sees enterprises registered under its prefix, an enterprise
  itself; the platform administrator sees everything.

Scan figures come from the rollups (services.rollups), never from scan_events: whole
months of a date range are read from the monthly rollup and the partial months at either
end from the daily one, so a query costs a few hundred rows whatever the log's size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    func,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy import (
    Table as SqlTable,
)
from sqlalchemy.orm import Session, aliased

from trace.errors import Forbidden, ValidationFailed
from trace.models import Batch, Enterprise, LabelRun, Product, TraceEvent
from trace.models.analytics import (
    UNKNOWN_REGION,
    RunScanTotal,
    ScanProductDaily,
    ScanProductMonthly,
    ScanRegionDaily,
    ScanRegionMonthly,
)
from trace.models.enums import EventType, LabelLevel, RunStatus, Verdict
from trace.regions import lookup as regions
from trace.services import events as event_service
from trace.services.actors import Actor
from trace.services.rollups import (
    CST,
    cst_day,
    day_bounds,
    first_of_month,
    month_start,
    next_month,
    today_cst,
)

#: Verdict columns, in the order tables show them.
VERDICTS = (
    Verdict.GENUINE.value,
    Verdict.SUSPICIOUS.value,
    Verdict.COUNTERFEIT.value,
    Verdict.RECALLED.value,
    Verdict.VOIDED.value,
)
GRANULARITIES = ("day", "week", "month")
LEVELS = {"province": 2, "city": 4, "county": 6}
FARMING_TYPES = (
    EventType.SOWING.value,
    EventType.FERTILIZING.value,
    EventType.PESTICIDE.value,
    EventType.IRRIGATION.value,
    EventType.CARE.value,
    EventType.HARVEST.value,
)
#: Longest date range a query may span.
MAX_RANGE_DAYS = 366 * 5
DEFAULT_MONTHS = 12
#: Dates a query may name. Near year 1 or 9999 the China-time day bounds and the default
#: start (months before 'to') fall outside what `date` holds.
EARLIEST_DAY, LATEST_DAY = date(1900, 1, 1), date(2199, 12, 31)
MAX_LIST_ROWS = 10_000

#: (zh, en) names of event types, for tables and charts.
EVENT_TYPE_NAMES: dict[str, tuple[str, str]] = {
    "sowing": ("播种", "Sowing"),
    "fertilizing": ("施肥", "Fertilizing"),
    "pesticide": ("施药", "Pesticide"),
    "irrigation": ("灌溉", "Irrigation"),
    "care": ("田间管理", "Field care"),
    "harvest": ("采收", "Harvest"),
    "inspection": ("检测", "Inspection"),
    "certification": ("认证", "Certification"),
    "processing": ("加工", "Processing"),
    "packing": ("包装", "Packing"),
    "shipping": ("发货", "Shipping"),
    "receiving": ("收货", "Receiving"),
    "retail": ("零售", "Retail"),
}


# -- tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    zh: str
    en: str
    #: "text", "int", "float", "pct", "date", "datetime": how CSV and HTML format it.
    kind: str = "text"

    def label(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


@dataclass
class Table:
    name: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def keys(self) -> list[str]:
        return [c.key for c in self.columns]


C = Column  # short alias for the column lists below

_VERDICT_COLUMNS = [
    C("genuine", "正常", "Genuine", "int"),
    C("suspicious", "可疑", "Suspicious", "int"),
    C("counterfeit", "假冒", "Counterfeit", "int"),
    C("recalled", "已召回", "Recalled", "int"),
    C("voided", "已作废", "Voided", "int"),
]


# -- scope and date range -----------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    actor: Actor
    #: Region prefix the scan figures are limited to ("" = everywhere).
    region: str
    #: Set for enterprise accounts: only their own codes and records.
    enterprise_id: int | None = None

    @property
    def by_enterprise(self) -> bool:
        return self.enterprise_id is not None


def _check_prefix(region: str) -> str:
    if not ((region.isascii() and region.isdigit()) or region == "") or len(region) not in (
        0,
        2,
        4,
        6,
    ):
        raise ValidationFailed(
            "Invalid region.",
            fields={"region": ["A region prefix of 2, 4 or 6 digits (province, city, county)."]},
        )
    return region


def scope_for(actor: Actor, region: str | None = None) -> Scope:
    """The actor's analytics scope, optionally narrowed to `region` (a drill-down)."""
    wanted = _check_prefix(region) if region is not None else None
    if actor.is_platform_admin:
        return Scope(actor, wanted or "")
    if actor.is_regulator:
        home = actor.region_prefix
        if not home:
            raise Forbidden("This regulator account has no jurisdiction.")
        if wanted is None:
            return Scope(actor, home)
        if not wanted.startswith(home):
            raise Forbidden(f"Region {wanted or '(all)'} is outside your jurisdiction {home}.")
        return Scope(actor, wanted)
    if actor.is_enterprise and actor.enterprise_id is not None:
        return Scope(actor, wanted or "", actor.enterprise_id)
    raise Forbidden("Analytics are for regulators and enterprises.")


@dataclass(frozen=True)
class DateRange:
    first: date
    last: date

    def bounds(self) -> tuple[datetime, datetime]:
        return day_bounds(self.first, self.last)

    def days(self) -> int:
        return (self.last - self.first).days + 1


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def date_range(first: date | None = None, last: date | None = None) -> DateRange:
    """Inclusive China-time dates; by default the current month and the eleven before."""
    problems: dict[str, list[str]] = {}
    for name, day in (("from", first), ("to", last)):
        if day is not None and not EARLIEST_DAY <= day <= LATEST_DAY:
            problems[name] = [f"Must be between {EARLIEST_DAY} and {LATEST_DAY}."]
    if problems:
        raise ValidationFailed("Invalid date range.", fields=problems)
    last = last or today_cst()
    first = first or add_months(first_of_month(last), 1 - DEFAULT_MONTHS)
    if first > last:
        problems["from"] = ["Must not be after 'to'."]
    elif (last - first).days >= MAX_RANGE_DAYS:
        problems["from"] = [f"A range spans at most {MAX_RANGE_DAYS} days."]
    if problems:
        raise ValidationFailed("Invalid date range.", fields=problems)
    return DateRange(first, last)


def split_range(
    rng: DateRange, today: date | None = None
) -> tuple[list[tuple[date, date]], tuple[date, date] | None]:
    """Partial months at the ends as day ranges, and the whole months in between as an
    inclusive (first month, last month) pair, or None when there is no whole month. The
    current month is never whole: the rollup job keeps monthly rows for past months only."""
    first_full = rng.first if rng.first.day == 1 else next_month(rng.first)
    after_full = min(  # the first month not read whole
        first_of_month(rng.last + timedelta(days=1)), first_of_month(today or today_cst())
    )
    if first_full >= after_full:
        return [(rng.first, rng.last)], None
    edges = []
    if rng.first < first_full:
        edges.append((rng.first, first_full - timedelta(days=1)))
    if after_full <= rng.last:
        edges.append((after_full, rng.last))
    return edges, (first_full, add_months(after_full, -1))


def plan_per_query(session: Session) -> None:
    """PostgreSQL: plan each analytics statement for its own parameters, in this transaction.

    psycopg prepares a statement after a few executions and PostgreSQL may then switch to a
    generic plan. The same statement serves a county (a few hundred rollup rows) and the
    whole country (a hundred thousand): a generic plan chosen on county calls made the
    province dashboard four times slower in the 10-million-scan benchmark.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


# -- region names -------------------------------------------------------------------------


def region_name(prefix: str) -> str:
    """Name of a region prefix at its own level: "53" 云南省, "5304" 玉溪市, "530424" 华宁县."""
    if prefix == "":
        return "全国"
    if prefix.startswith("00"):
        return "未知地区"
    region = regions.get(prefix.ljust(6, "0"))
    if region is not None:
        return region.name
    if len(prefix) == 4:
        return "省直辖县级行政区划"  # e.g. 4190: counties directly under Henan province
    return prefix


def region_full_name(prefix: str) -> str:
    if prefix == "" or prefix.startswith("00"):
        return region_name(prefix)
    return regions.full_name(prefix.ljust(6, "0")) or region_name(prefix)


def region_path(prefix: str) -> list[tuple[str, str]]:
    """Breadcrumb of a prefix: [("", 全国), ("53", 云南省), ("5304", 玉溪市), ...]."""
    steps = [("", region_name(""))]
    for length in (2, 4, 6):
        if len(prefix) >= length:
            steps.append((prefix[:length], region_name(prefix[:length])))
    return steps


def _level_range(table: SqlTable, prefix: str, length: int) -> list[ColumnElement[bool]]:
    """Rows of regions at `length` digits under `prefix`. The child level uses the parent
    index; deeper levels a range on the key (digit strings sort alike in every collation)."""
    c = table.c
    if length == len(prefix):
        return [c.region == prefix]
    if length == len(prefix) + 2:
        return [c.parent == prefix]
    return [
        c.region >= prefix,
        c.region <= prefix + "9" * (6 - len(prefix)),
        func.length(c.region) == length,
    ]


# -- reading the rollups ------------------------------------------------------------------


Conditions = Callable[[SqlTable], list[ColumnElement[bool]]]


def _rollup(
    session: Session,
    daily: Any,
    monthly: Any,
    rng: DateRange,
    conditions: Conditions,
    keys: Sequence[str],
) -> list[tuple[Any, ...]]:
    """sum(scans) grouped by `keys` over the date range: whole months from the monthly
    table, the rest from the daily one. Rows are (*keys, scans)."""
    edges, months = split_range(rng)
    parts: list[Select[Any]] = []
    for table, period, span in [
        *((cast(SqlTable, daily.__table__), "day", edge) for edge in edges),
        *([(cast(SqlTable, monthly.__table__), "month", months)] if months else []),
    ]:
        cols = [table.c[k] for k in keys]
        parts.append(
            select(*cols, func.sum(table.c.scans).label("scans"))
            .where(table.c[period].between(*span), *conditions(table))
            .group_by(*cols)
        )
    if len(parts) == 1:
        return [tuple(r) for r in session.execute(parts[0])]
    merged = union_all(*parts).subquery()
    outer = [merged.c[k] for k in keys]
    stmt = select(*outer, func.sum(merged.c.scans)).group_by(*outer)
    return [tuple(r) for r in session.execute(stmt)]


def _scan_source(scope: Scope) -> tuple[Any, Any]:
    if scope.by_enterprise:
        return ScanProductDaily, ScanProductMonthly
    return ScanRegionDaily, ScanRegionMonthly


def _scan_conditions(scope: Scope, length: int | None = None) -> Conditions:
    """Rows of the scope's own region (length None) or of its regions at `length` digits."""

    def conditions(table: SqlTable) -> list[ColumnElement[bool]]:
        out = _level_range(table, scope.region, len(scope.region) if length is None else length)
        if scope.enterprise_id is not None:
            out.append(table.c.enterprise_id == scope.enterprise_id)
        return out

    return conditions


def _verdict_counts(rows: Iterable[tuple[Any, ...]]) -> dict[Any, dict[str, int]]:
    """(key, verdict, scans) rows -> {key: {verdict: scans}}."""
    out: dict[Any, dict[str, int]] = defaultdict(lambda: dict.fromkeys(VERDICTS, 0))
    for key, verdict, scans in rows:
        out[key][verdict] = out[key].get(verdict, 0) + int(scans)
    return out


def _with_verdicts(row: dict[str, Any], counts: dict[str, int], scope: Scope) -> dict[str, Any]:
    row["scans"] = sum(counts.values())
    for verdict in VERDICTS:
        row[verdict] = counts.get(verdict, 0)
    if scope.by_enterprise:
        # Counterfeit codes decode to no enterprise: an enterprise cannot be shown them.
        row[Verdict.COUNTERFEIT.value] = None
    return row


def table_meta(scope: Scope, rng: DateRange, **more: Any) -> dict[str, Any]:
    return {
        "from": rng.first.isoformat(),
        "to": rng.last.isoformat(),
        "region": scope.region,
        "region_name": region_full_name(scope.region),
        "enterprise_id": scope.enterprise_id,
        **more,
    }


# -- scan figures -------------------------------------------------------------------------


def _period_of(day: date, granularity: str) -> date:
    if granularity == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if granularity == "month":
        return first_of_month(day)
    return day


def _periods(rng: DateRange, granularity: str) -> list[date]:
    out: list[date] = []
    current = _period_of(rng.first, granularity)
    while current <= rng.last:
        out.append(current)
        if granularity == "day":
            current += timedelta(days=1)
        elif granularity == "week":
            current += timedelta(days=7)
        else:
            current = next_month(current)
    return out


def scan_series(session: Session, scope: Scope, rng: DateRange, granularity: str = "day") -> Table:
    """Scan volume per day, ISO week (Monday) or month, split by verdict; every period of
    the range has a row, zeros included, so that charts need no gap filling."""
    if granularity not in GRANULARITIES:
        raise ValidationFailed(
            "Invalid granularity.", fields={"granularity": [", ".join(GRANULARITIES)]}
        )
    daily, _monthly = _scan_source(scope)
    table = cast(SqlTable, daily.__table__)
    conditions = _scan_conditions(scope)(table)
    stmt = (
        select(table.c.day, table.c.verdict, func.sum(table.c.scans))
        .where(table.c.day.between(rng.first, rng.last), *conditions)
        .group_by(table.c.day, table.c.verdict)
    )
    buckets: dict[date, dict[str, int]] = {
        p: dict.fromkeys(VERDICTS, 0) for p in _periods(rng, granularity)
    }
    for day, verdict, scans in session.execute(stmt):
        bucket = buckets.setdefault(_period_of(day, granularity), dict.fromkeys(VERDICTS, 0))
        bucket[verdict] = bucket.get(verdict, 0) + int(scans)
    rows = [
        _with_verdicts({"period": period.isoformat()}, counts, scope)
        for period, counts in sorted(buckets.items())
    ]
    columns = [
        C(
            "period",
            {"day": "日期", "week": "周（起始日）", "month": "月份"}[granularity],
            {"day": "Day", "week": "Week (Monday)", "month": "Month"}[granularity],
            "date",
        ),
        C("scans", "扫码量", "Scans", "int"),
        *_VERDICT_COLUMNS,
    ]
    if granularity == "month":
        for row in rows:
            row["period"] = row["period"][:7]
        columns[0] = C("period", "月份", "Month")
    return Table("scan_series", columns, rows, table_meta(scope, rng, granularity=granularity))


def scan_regions(session: Session, scope: Scope, rng: DateRange, level: str | None = None) -> Table:
    """Regional comparison: the regions one level below the scope (or at `level`), with
    scans by verdict and their share; a county scope compares nothing but itself."""
    length = min(len(scope.region) + 2, 6) if level is None else LEVELS.get(level, -1)
    if length < len(scope.region):
        raise ValidationFailed(
            "Invalid level.",
            fields={"level": [f"province, city or county, not above the region {scope.region}."]},
        )
    daily, monthly = _scan_source(scope)
    rows_raw = _rollup(
        session, daily, monthly, rng, _scan_conditions(scope, length), ("region", "verdict")
    )
    counts = _verdict_counts(rows_raw)
    total = sum(sum(c.values()) for c in counts.values()) or 1
    rows = []
    for code, verdicts in counts.items():
        row = _with_verdicts(
            {
                "region_code": code,
                "region_name": region_name(code),
                "full_name": region_full_name(code),
            },
            verdicts,
            scope,
        )
        row["share"] = round(100.0 * row["scans"] / total, 2)
        # Any region below the scope can be opened (a county too: its own view); the
        # scope itself and the pseudo-region of unknown locations cannot.
        row["drillable"] = code != scope.region and not code.startswith("00")
        rows.append(row)
    rows.sort(key=lambda r: (-r["scans"], r["region_code"]))
    columns = [
        C("region_code", "区划代码", "Region code"),
        C("region_name", "地区", "Region"),
        C("full_name", "全称", "Full name"),
        C("scans", "扫码量", "Scans", "int"),
        *_VERDICT_COLUMNS,
        C("share", "占比(%)", "Share (%)", "pct"),
    ]
    return Table("scan_regions", columns, rows, table_meta(scope, rng, level_digits=length))


def _names(session: Session, model: Any, ids: Iterable[int]) -> dict[int, Any]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    return {obj.id: obj for obj in session.scalars(select(model).where(model.id.in_(wanted)))}


def _product_rollup(
    session: Session, scope: Scope, rng: DateRange, keys: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Per-product scan rows of the scope's own region (all levels are pre-summed)."""

    def conditions(table: SqlTable) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = [table.c.region == scope.region]
        if scope.enterprise_id is not None:
            out.append(table.c.enterprise_id == scope.enterprise_id)
        return out

    return _rollup(session, ScanProductDaily, ScanProductMonthly, rng, conditions, keys)


def scan_enterprises(session: Session, scope: Scope, rng: DateRange, limit: int = 100) -> Table:
    """Enterprises whose codes were scanned in the scope, most scanned first."""
    counts = _verdict_counts(_product_rollup(session, scope, rng, ("enterprise_id", "verdict")))
    names = _names(session, Enterprise, counts)
    rows = []
    for enterprise_id, verdicts in counts.items():
        ent = names.get(enterprise_id)
        row = _with_verdicts(
            {
                "enterprise_id": enterprise_id,
                "enterprise_name": ent.name if ent else "",
                "enterprise_region": region_full_name(ent.region_code) if ent else "",
            },
            verdicts,
            scope,
        )
        rows.append(row)
    rows.sort(key=lambda r: (-r["scans"], r["enterprise_id"]))
    columns = [
        C("enterprise_id", "企业编号", "Enterprise id", "int"),
        C("enterprise_name", "企业", "Enterprise"),
        C("enterprise_region", "企业所在地", "Enterprise region"),
        C("scans", "扫码量", "Scans", "int"),
        C("genuine", "正常", "Genuine", "int"),
        C("suspicious", "可疑", "Suspicious", "int"),
        C("recalled", "已召回", "Recalled", "int"),
    ]
    return Table(
        "scan_enterprises", columns, rows[:limit], table_meta(scope, rng, total_rows=len(rows))
    )


def scan_products(session: Session, scope: Scope, rng: DateRange, limit: int = 100) -> Table:
    """Products scanned in the scope, most scanned first."""
    rows_raw = _product_rollup(session, scope, rng, ("product_id", "verdict"))
    counts = _verdict_counts(rows_raw)
    products = _names(session, Product, counts)
    enterprises = _names(session, Enterprise, (p.enterprise_id for p in products.values()))
    rows = []
    for product_id, verdicts in counts.items():
        product = products.get(product_id)
        ent = enterprises.get(product.enterprise_id) if product else None
        rows.append(
            _with_verdicts(
                {
                    "product_id": product_id,
                    "product_name": product.name if product else "",
                    "enterprise_name": ent.name if ent else "",
                },
                verdicts,
                scope,
            )
        )
    rows.sort(key=lambda r: (-r["scans"], r["product_id"]))
    columns = [
        C("product_id", "产品编号", "Product id", "int"),
        C("product_name", "产品", "Product"),
        C("enterprise_name", "企业", "Enterprise"),
        C("scans", "扫码量", "Scans", "int"),
        C("genuine", "正常", "Genuine", "int"),
        C("suspicious", "可疑", "Suspicious", "int"),
        C("recalled", "已召回", "Recalled", "int"),
    ]
    return Table(
        "scan_products", columns, rows[:limit], table_meta(scope, rng, total_rows=len(rows))
    )


def counterfeit_by_county(session: Session, scope: Scope, rng: DateRange) -> Table:
    """Counterfeit attempts and suspicious scans per county of the scope."""
    watched = (Verdict.COUNTERFEIT.value, Verdict.SUSPICIOUS.value)
    base = _scan_conditions(scope, 6)

    def conditions(table: SqlTable) -> list[ColumnElement[bool]]:
        return [*base(table), table.c.verdict.in_(watched)]

    daily, monthly = _scan_source(scope)
    counts = _verdict_counts(
        _rollup(session, daily, monthly, rng, conditions, ("region", "verdict"))
    )
    rows = []
    for code, verdicts in counts.items():
        rows.append(
            {
                "region_code": code,
                "region_name": region_name(code),
                "full_name": region_full_name(code),
                "counterfeit": None if scope.by_enterprise else verdicts["counterfeit"],
                "suspicious": verdicts["suspicious"],
            }
        )
    rows.sort(key=lambda r: (-((r["counterfeit"] or 0) + r["suspicious"]), r["region_code"]))
    columns = [
        C("region_code", "区划代码", "County code"),
        C("region_name", "县（区）", "County"),
        C("full_name", "全称", "Full name"),
        C("counterfeit", "假冒码扫描", "Counterfeit attempts", "int"),
        C("suspicious", "可疑扫码", "Suspicious scans", "int"),
    ]
    return Table("counterfeit_by_county", columns, rows, table_meta(scope, rng))


def scan_totals(session: Session, scope: Scope, rng: DateRange) -> dict[str, int]:
    """Headline numbers of the scope and range: scans and each verdict."""
    daily, monthly = _scan_source(scope)
    counts = dict.fromkeys(VERDICTS, 0)
    for verdict, scans in _rollup(
        session, daily, monthly, rng, _scan_conditions(scope), ("verdict",)
    ):
        counts[verdict] = counts.get(verdict, 0) + int(scans)
    return {"scans": sum(counts.values()), **counts}


# -- production figures -------------------------------------------------------------------


def production_filter(scope: Scope, enterprise_id_column: Any) -> ColumnElement[bool]:
    """Records of the enterprises the scope covers (by the enterprise's registered region)."""
    if scope.enterprise_id is not None:
        return cast(ColumnElement[bool], enterprise_id_column == scope.enterprise_id)
    if scope.region == "":
        return true()
    in_region = select(Enterprise.id).where(Enterprise.region_code.startswith(scope.region))
    return cast(ColumnElement[bool], enterprise_id_column.in_(in_region.scalar_subquery()))


def scan_rate(session: Session, scope: Scope, rng: DateRange) -> Table:
    """Codes issued in the range (label runs created then) and how many of them have been
    scanned at least once so far, per enterprise and product."""
    start, end = rng.bounds()
    codes = case((LabelRun.level == LabelLevel.BATCH.value, 1), else_=LabelRun.count)
    stmt = (
        select(
            LabelRun.enterprise_id,
            Batch.product_id,
            func.count(LabelRun.id),
            func.sum(codes),
            func.sum(func.coalesce(RunScanTotal.codes_scanned, 0)),
        )
        .join(Batch, Batch.id == LabelRun.batch_id)
        .outerjoin(RunScanTotal, RunScanTotal.run_id == LabelRun.id)
        .where(
            LabelRun.status == RunStatus.ISSUED.value,
            LabelRun.created_at >= start,
            LabelRun.created_at < end,
            production_filter(scope, LabelRun.enterprise_id),
        )
        .group_by(LabelRun.enterprise_id, Batch.product_id)
    )
    raw = session.execute(stmt).all()
    enterprises = _names(session, Enterprise, (r[0] for r in raw))
    products = _names(session, Product, (r[1] for r in raw))
    rows: list[dict[str, Any]] = []
    issued_total = scanned_total = 0
    for enterprise_id, product_id, runs, issued, scanned in raw:
        issued, scanned = int(issued or 0), int(scanned or 0)
        issued_total += issued
        scanned_total += scanned
        ent, product = enterprises.get(enterprise_id), products.get(product_id)
        rows.append(
            {
                "enterprise_name": ent.name if ent else "",
                "product_name": product.name if product else "",
                "label_runs": int(runs),
                "codes_issued": issued,
                "codes_scanned": scanned,
                "scan_rate": round(100.0 * scanned / issued, 2) if issued else None,
            }
        )
    rows.sort(key=lambda r: (-r["codes_issued"], r["enterprise_name"], r["product_name"]))
    columns = [
        C("enterprise_name", "企业", "Enterprise"),
        C("product_name", "产品", "Product"),
        C("label_runs", "赋码批次", "Label runs", "int"),
        C("codes_issued", "发码量", "Codes issued", "int"),
        C("codes_scanned", "已扫码数", "Codes scanned", "int"),
        C("scan_rate", "扫码率(%)", "Scan rate (%)", "pct"),
    ]
    rate = round(100.0 * scanned_total / issued_total, 2) if issued_total else None
    meta = table_meta(
        scope, rng, codes_issued=issued_total, codes_scanned=scanned_total, scan_rate=rate
    )
    return Table("scan_rate", columns, rows, meta)


def _month_key(value: Any) -> str:
    """A date or ISO date string -> 'YYYY-MM'."""
    if isinstance(value, date):
        return value.strftime("%Y-%m")
    return str(value)[:7]


def farming_operations(session: Session, scope: Scope, rng: DateRange) -> Table:
    """Farming records per month and type (corrected records count once, as corrected)."""
    start, end = rng.bounds()
    correction = aliased(TraceEvent)
    superseded = exists().where(correction.corrects_id == TraceEvent.id)
    month = month_start(cst_day(TraceEvent.occurred_at))
    stmt = (
        select(month, TraceEvent.type, func.count())
        .where(
            TraceEvent.type.in_(FARMING_TYPES),
            TraceEvent.occurred_at >= start,
            TraceEvent.occurred_at < end,
            ~superseded,
            production_filter(scope, TraceEvent.enterprise_id),
        )
        .group_by(month, TraceEvent.type)
    )
    rows: list[dict[str, Any]] = [
        {
            "month": _month_key(m),
            "type": kind,
            "type_name": EVENT_TYPE_NAMES[kind][0],
            "type_name_en": EVENT_TYPE_NAMES[kind][1],
            "events": int(n),
        }
        for m, kind, n in session.execute(stmt)
    ]
    order = {t: i for i, t in enumerate(FARMING_TYPES)}
    rows.sort(key=lambda r: (r["month"], order[r["type"]]))
    columns = [
        C("month", "月份", "Month"),
        C("type", "类型代码", "Type"),
        C("type_name", "农事类型", "Operation"),
        C("events", "记录数", "Records", "int"),
    ]
    return Table(
        "farming_operations", columns, rows, table_meta(scope, rng, types=list(FARMING_TYPES))
    )


def monthly_supply(session: Session, scope: Scope, rng: DateRange) -> Table:
    """Per month and product: labels issued (codes of runs created that month) and batch
    quantities (by harvest date, else pack date, else the day the batch was recorded)."""
    start, end = rng.bounds()
    codes = case((LabelRun.level == LabelLevel.BATCH.value, 1), else_=LabelRun.count)
    run_month = month_start(cst_day(LabelRun.created_at))
    labels = (
        select(run_month, Batch.product_id, Batch.unit, func.count(LabelRun.id), func.sum(codes))
        .join(Batch, Batch.id == LabelRun.batch_id)
        .where(
            LabelRun.status == RunStatus.ISSUED.value,
            LabelRun.created_at >= start,
            LabelRun.created_at < end,
            production_filter(scope, LabelRun.enterprise_id),
        )
        .group_by(run_month, Batch.product_id, Batch.unit)
    )
    batch_day = func.coalesce(Batch.harvest_date, Batch.pack_date)
    batch_month = month_start(batch_day)
    created_month = month_start(cst_day(Batch.created_at))
    dated = (
        select(batch_month, Batch.product_id, Batch.unit, func.count(), func.sum(Batch.quantity))
        .where(
            batch_day.is_not(None),
            batch_day.between(rng.first, rng.last),
            production_filter(scope, Batch.enterprise_id),
        )
        .group_by(batch_month, Batch.product_id, Batch.unit)
    )
    undated = (
        select(created_month, Batch.product_id, Batch.unit, func.count(), func.sum(Batch.quantity))
        .where(
            batch_day.is_(None),
            Batch.created_at >= start,
            Batch.created_at < end,
            production_filter(scope, Batch.enterprise_id),
        )
        .group_by(created_month, Batch.product_id, Batch.unit)
    )
    merged: dict[tuple[str, int, str], dict[str, Any]] = {}

    def slot(month: Any, product_id: int, unit: str) -> dict[str, Any]:
        key = (_month_key(month), product_id, unit)
        return merged.setdefault(
            key,
            {"label_runs": 0, "labels_issued": 0, "batches": 0, "quantity": Decimal(0)},
        )

    for month, product_id, unit, runs, issued in session.execute(labels):
        s = slot(month, product_id, unit)
        s["label_runs"] += int(runs)
        s["labels_issued"] += int(issued or 0)
    for stmt in (dated, undated):
        for month, product_id, unit, batches, quantity in session.execute(stmt):
            s = slot(month, product_id, unit)
            s["batches"] += int(batches)
            s["quantity"] += Decimal(quantity or 0)
    products = _names(session, Product, (k[1] for k in merged))
    enterprises = _names(session, Enterprise, (p.enterprise_id for p in products.values()))
    rows = []
    for (month, product_id, unit), s in sorted(merged.items()):
        product = products.get(product_id)
        ent = enterprises.get(product.enterprise_id) if product else None
        rows.append(
            {
                "month": month,
                "product_name": product.name if product else "",
                "enterprise_name": ent.name if ent else "",
                "batches": s["batches"],
                "quantity": float(s["quantity"]),
                "unit": unit,
                "label_runs": s["label_runs"],
                "labels_issued": s["labels_issued"],
            }
        )
    columns = [
        C("month", "月份", "Month"),
        C("product_name", "产品", "Product"),
        C("enterprise_name", "企业", "Enterprise"),
        C("batches", "批次数", "Batches", "int"),
        C("quantity", "数量", "Quantity", "float"),
        C("unit", "单位", "Unit"),
        C("label_runs", "赋码批次", "Label runs", "int"),
        C("labels_issued", "发码量", "Labels issued", "int"),
    ]
    return Table("monthly_supply", columns, rows, table_meta(scope, rng))


def phi_violations(session: Session, scope: Scope, rng: DateRange, limit: int = 500) -> Table:
    """Batches harvested before a pesticide's pre-harvest interval (安全间隔期) had passed."""
    start, end = rng.bounds()
    stmt = (
        select(Batch)
        .where(
            Batch.phi_violation.is_(True),
            production_filter(scope, Batch.enterprise_id),
            or_(
                Batch.harvest_date.between(rng.first, rng.last),
                and_(
                    Batch.harvest_date.is_(None),
                    Batch.created_at >= start,
                    Batch.created_at < end,
                ),
            ),
        )
        .order_by(Batch.harvest_date.desc(), Batch.id.desc())
        .limit(limit)
    )
    batches = list(session.scalars(stmt))
    history: dict[int, list[TraceEvent]] = defaultdict(list)
    if batches:  # one query for every batch's records, not one per batch
        for event in session.scalars(
            select(TraceEvent)
            .where(TraceEvent.batch_id.in_([b.id for b in batches]))
            .order_by(TraceEvent.occurred_at, TraceEvent.id)
        ):
            history[event.batch_id].append(event)
    rows = []
    for batch in batches:
        findings = event_service.phi_findings(history[batch.id], batch.harvest_date)
        worst = max(findings, key=lambda f: f["days_short"], default=None)
        rows.append(
            {
                "batch_id": batch.id,
                "batch_no": batch.batch_no,
                "enterprise_name": batch.enterprise.name,
                "region_name": region_full_name(batch.enterprise.region_code),
                "product_name": batch.product.name,
                "harvest_date": batch.harvest_date.isoformat() if batch.harvest_date else None,
                "pesticide": worst["product_name"] if worst else None,
                "phi_days": worst["phi_days"] if worst else None,
                "days_short": worst["days_short"] if worst else None,
                "status": batch.status,
            }
        )
    columns = [
        C("batch_id", "批次编号", "Batch id", "int"),
        C("batch_no", "批次号", "Batch no."),
        C("enterprise_name", "企业", "Enterprise"),
        C("region_name", "所在地", "Region"),
        C("product_name", "产品", "Product"),
        C("harvest_date", "采收日期", "Harvest date", "date"),
        C("pesticide", "农药", "Pesticide"),
        C("phi_days", "安全间隔期(天)", "PHI (days)", "int"),
        C("days_short", "提前天数", "Days short", "int"),
        C("status", "批次状态", "Batch status"),
    ]
    return Table("phi_violations", columns, rows, table_meta(scope, rng))


def _failed_items(details: dict[str, Any]) -> str:
    items = details.get("items") or []
    failed = [i for i in items if isinstance(i, dict) and i.get("passed") is False]
    return "；".join(f"{i.get('name', '')} {i.get('result', '')}".strip() for i in failed)


def failed_inspections(session: Session, scope: Scope, rng: DateRange, limit: int = 500) -> Table:
    """Inspection records whose verdict is "fail" (as last corrected)."""
    start, end = rng.bounds()
    correction = aliased(TraceEvent)
    superseded = exists().where(correction.corrects_id == TraceEvent.id)
    stmt = (
        select(TraceEvent, Batch)
        .join(Batch, Batch.id == TraceEvent.batch_id)
        .where(
            TraceEvent.type == EventType.INSPECTION.value,
            TraceEvent.details["verdict"].as_string() == "fail",
            TraceEvent.occurred_at >= start,
            TraceEvent.occurred_at < end,
            ~superseded,
            production_filter(scope, TraceEvent.enterprise_id),
        )
        .order_by(TraceEvent.occurred_at.desc(), TraceEvent.id.desc())
        .limit(limit)
    )
    rows = []
    for event, batch in session.execute(stmt):
        details = event.details or {}
        rows.append(
            {
                "event_id": event.id,
                "occurred_at": event.occurred_at.astimezone(CST).strftime("%Y-%m-%d %H:%M"),
                "enterprise_name": batch.enterprise.name,
                "region_name": region_full_name(batch.enterprise.region_code),
                "batch_id": batch.id,
                "batch_no": batch.batch_no,
                "product_name": batch.product.name,
                "lab": details.get("lab", ""),
                "report_no": details.get("report_no", ""),
                "failed_items": _failed_items(details),
            }
        )
    columns = [
        C("event_id", "记录编号", "Record id", "int"),
        C("occurred_at", "检测时间", "Inspected at", "datetime"),
        C("enterprise_name", "企业", "Enterprise"),
        C("region_name", "所在地", "Region"),
        C("batch_id", "批次编号", "Batch id", "int"),
        C("batch_no", "批次号", "Batch no."),
        C("product_name", "产品", "Product"),
        C("lab", "检测机构", "Laboratory"),
        C("report_no", "报告编号", "Report no."),
        C("failed_items", "不合格项目", "Failed items"),
    ]
    return Table("failed_inspections", columns, rows, table_meta(scope, rng))


#: name -> (function, help) of every table the API and the dashboard offer.
TABLES: dict[str, Callable[..., Table]] = {
    "scan_series": scan_series,
    "scan_regions": scan_regions,
    "scan_enterprises": scan_enterprises,
    "scan_products": scan_products,
    "scan_rate": scan_rate,
    "counterfeit_by_county": counterfeit_by_county,
    "farming_operations": farming_operations,
    "monthly_supply": monthly_supply,
    "phi_violations": phi_violations,
    "failed_inspections": failed_inspections,
}

__all__ = [
    "TABLES",
    "UNKNOWN_REGION",
    "Column",
    "DateRange",
    "Scope",
    "Table",
    "date_range",
    "region_name",
    "scope_for",
]
