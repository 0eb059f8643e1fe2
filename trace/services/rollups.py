"""Incremental rollups of the scan log, and the monthly partitions it lives in.

Dashboards never read scan_events: at ten million rows and beyond a GROUP BY over it takes
seconds. Instead `refresh()` folds scans into the small tables of trace/models/analytics.py,
by China-time day (UTC+8, no daylight saving) and then by month. It is incremental and
idempotent: a watermark remembers the highest scan id read; every refresh finds the days
that scans above the watermark fall on and recomputes those whole days (DELETE + INSERT ...
SELECT), so running it twice, or over a day already done, gives the same rows. It needs
nothing from the scan insert path.

Months: complete months are summed once more into monthly rows (the analytics read whole
past months there and only the partial months at either end of a range day by day); the
current month has no monthly rows, so the job never re-sums a month that is still growing.

Late commits: ids come from a sequence, so a transaction can commit a scan with an id below
the watermark after the watermark moved past it. The periodic job therefore also recomputes
the days of the last `JOB_LOOKBACK` (scans are stamped with the server's clock at insert, so
a late commit is minutes late at most). `--full` rebuilds everything from scratch.

Callers: `flask analytics rollup` (cron, every minute or so; also creates partitions ahead)
and each analytics request (`refresh_for_request`), which folds in what is pending only on a
quiet platform (a small backlog, days of at most REQUEST_MAX_DAY_SCANS genuine scans), so
that a scan shows on the dashboard at once in a demo or a small county; on a busy platform
requests never pay for the rollup and the figures are as fresh as the job's last run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Date,
    Table,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from trace.db import utcnow
from trace.models import CodeState, ScanEvent
from trace.models.analytics import (
    UNKNOWN_REGION,
    CodeFirstScanDaily,
    RollupWatermark,
    RunScanTotal,
    ScanProductDaily,
    ScanProductMonthly,
    ScanRegionDaily,
    ScanRegionMonthly,
)

#: China Standard Time: the day a regulator means when saying "on the 3rd".
CST = timezone(timedelta(hours=8))
WATERMARK = "scans"
#: Days of this recent past are recomputed by the job even without new ids (late commits).
JOB_LOOKBACK = timedelta(minutes=30)
#: A request folds in pending scans only on a quiet system: at most this many pending …
REQUEST_MAX_PENDING = 5_000
#: … and only while a day holds at most this many scans, since folding in re-reads the
#: whole of today. Busier platforms rely on the periodic job alone (see the module doc).
REQUEST_MAX_DAY_SCANS = 20_000
#: Serialises refreshers on PostgreSQL (any constant unique to this purpose).
_LOCK_KEY = 7_300_425
_IN_CHUNK = 500


# -- SQL for China-time days and months, per dialect --------------------------------------


class cst_day(FunctionElement[date]):
    """The China-time calendar day of a naive-UTC timestamp column."""

    type = Date()
    inherit_cache = True
    name = "cst_day"


@compiles(cst_day)
def _cst_day_sqlite(element: cst_day, compiler: SQLCompiler, **kw: Any) -> str:
    (arg,) = element.clauses
    return f"date({compiler.process(arg, **kw)}, '+8 hours')"


@compiles(cst_day, "postgresql")
def _cst_day_pg(element: cst_day, compiler: SQLCompiler, **kw: Any) -> str:
    (arg,) = element.clauses
    return f"CAST(({compiler.process(arg, **kw)} + INTERVAL '8 hours') AS DATE)"


class month_start(FunctionElement[date]):
    """First day of the month of a DATE column."""

    type = Date()
    inherit_cache = True
    name = "month_start"


@compiles(month_start)
def _month_start_sqlite(element: month_start, compiler: SQLCompiler, **kw: Any) -> str:
    (arg,) = element.clauses
    return f"date({compiler.process(arg, **kw)}, 'start of month')"


@compiles(month_start, "postgresql")
def _month_start_pg(element: month_start, compiler: SQLCompiler, **kw: Any) -> str:
    (arg,) = element.clauses
    return f"CAST(date_trunc('month', {compiler.process(arg, **kw)}) AS DATE)"


def today_cst(now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(CST).date()


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[first 00:00, last+1 00:00) China time, as aware UTC datetimes."""
    start = datetime.combine(first, time(), CST).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), CST).astimezone(UTC)
    return start, end


def first_of_month(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def last_of_month(day: date) -> date:
    return next_month(day) - timedelta(days=1)


def contiguous(days: Iterable[date]) -> list[tuple[date, date]]:
    """Sorted days folded into inclusive (first, last) runs of consecutive days."""
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _lit(value: int | str) -> ColumnElement[Any]:
    """An inline literal: PostgreSQL must see the very same expression in SELECT and GROUP
    BY, which distinct bind parameters would spoil."""
    return literal_column(repr(value) if isinstance(value, str) else str(value))


def _prefix(column: ColumnElement[str], length: int) -> ColumnElement[str]:
    return func.substr(column, _lit(1), _lit(length)) if length else _lit("")


# -- the refresh -------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshResult:
    #: "done", "idle" (nothing new), "busy" (another refresh holds the lock) or
    #: "deferred" (too much pending for a request; the job will do it).
    status: str
    days: int = 0
    runs: int = 0
    last_scan_id: int = 0


def _try_lock(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite serialises writers by itself
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}))


def _watermark(session: Session) -> RollupWatermark:
    mark = session.get(RollupWatermark, WATERMARK)
    if mark is None:
        mark = RollupWatermark(name=WATERMARK, last_scan_id=0, refreshed_at=utcnow())
        session.add(mark)
        session.flush()
    return mark


def pending_scans(session: Session, cap: int) -> int:
    """Scans above the watermark, counted up to cap + 1 (cheap however many there are)."""
    mark = session.get(RollupWatermark, WATERMARK)
    last = mark.last_scan_id if mark else 0
    ids = select(ScanEvent.id).where(ScanEvent.id > last).limit(cap + 1).subquery()
    return int(session.scalar(select(func.count()).select_from(ids)) or 0)


def refresh(
    session: Session,
    *,
    full: bool = False,
    lookback: timedelta | None = JOB_LOOKBACK,
    max_pending: int | None = None,
    now: datetime | None = None,
) -> RefreshResult:
    """Bring the rollups up to date with the scan log. Flushes; the caller commits."""
    now = now or utcnow()
    if not _try_lock(session):
        return RefreshResult("busy")
    mark = _watermark(session)
    top = int(session.scalar(select(func.max(ScanEvent.id))) or 0)
    if full:
        _set_work_mem(session)
        days = _all_days(session)
        _clear_all(session)
    else:
        if max_pending is not None and pending_scans(session, max_pending) > max_pending:
            return RefreshResult("deferred", last_scan_id=mark.last_scan_id)
        days = set(
            session.scalars(
                select(cst_day(ScanEvent.scanned_at))
                .distinct()
                .where(ScanEvent.id > mark.last_scan_id)
            )
        )
        if lookback is not None:
            first, last = today_cst(now - lookback), today_cst(now)
            days |= {first + timedelta(days=i) for i in range((last - first).days + 1)}
        if not days:
            mark.refreshed_at = now
            return RefreshResult("idle", last_scan_id=mark.last_scan_id)
    runs: set[int] = set()
    for first, last in contiguous(days):
        runs |= _recompute_days(session, first, last)
    # Monthly rows exist for complete months only: queries read the current month from the
    # daily rows, so the job never re-sums a month that is still growing.
    current = first_of_month(today_cst(now))
    months = {first_of_month(d) for d in days if first_of_month(d) < current}
    months |= _unsealed_months(session, current)
    for first, last in contiguous_months(months):
        _recompute_months(session, first, last)
    _recompute_run_totals(session, runs, full=full)
    mark.last_scan_id = max(mark.last_scan_id, top)
    mark.refreshed_at = now
    session.flush()
    return RefreshResult("done", days=len(days), runs=len(runs), last_scan_id=mark.last_scan_id)


def status(session: Session) -> dict[str, Any]:
    """Where the rollups stand: the last scan id folded in and when."""
    mark = session.get(RollupWatermark, WATERMARK)
    return {
        "last_scan_id": mark.last_scan_id if mark else 0,
        "refreshed_at": mark.refreshed_at.isoformat(timespec="seconds") if mark else None,
    }


def refresh_for_request(session: Session, now: datetime | None = None) -> RefreshResult:
    """What an analytics request does first: fold in a small backlog on a quiet platform;
    never a big one, and never on a busy platform (there the job keeps up)."""
    today = today_cst(now)
    busiest = session.scalar(
        select(func.coalesce(func.max(ScanRegionDaily.scans), 0)).where(
            ScanRegionDaily.region == "",
            ScanRegionDaily.day >= today - timedelta(days=1),
            ScanRegionDaily.verdict == "genuine",
        )
    )
    if int(busiest or 0) > REQUEST_MAX_DAY_SCANS:
        return RefreshResult("deferred")
    return refresh(session, lookback=None, max_pending=REQUEST_MAX_PENDING, now=now)


def _set_work_mem(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # A full rebuild groups millions of rows; let the hash aggregates stay in memory.
        session.execute(text("SET LOCAL work_mem = '256MB'"))


def contiguous_months(months: Iterable[date]) -> list[tuple[date, date]]:
    """First days of months folded into inclusive runs of consecutive months."""
    runs: list[tuple[date, date]] = []
    for month in sorted(set(months)):
        if runs and next_month(runs[-1][1]) == month:
            runs[-1] = (runs[-1][0], month)
        else:
            runs.append((month, month))
    return runs


#: Complete months checked by every refresh for missing monthly rows (a month ends while
#: the job is down): longer outages need `flask analytics rollup --full`.
SEAL_MONTHS = 3


def _unsealed_months(session: Session, current: date) -> set[date]:
    """Recent complete months that have daily rows but no monthly rows yet."""
    out: set[date] = set()
    month = current
    for _ in range(SEAL_MONTHS):
        month = first_of_month(month - timedelta(days=1))
        last = last_of_month(month)
        daily = session.scalar(
            select(ScanRegionDaily.day).where(ScanRegionDaily.day.between(month, last)).limit(1)
        )
        monthly = session.scalar(
            select(ScanRegionMonthly.month).where(ScanRegionMonthly.month == month).limit(1)
        )
        if daily is not None and monthly is None:
            out.add(month)
    return out


def _all_days(session: Session) -> set[date]:
    lo, hi = session.execute(
        select(func.min(ScanEvent.scanned_at), func.max(ScanEvent.scanned_at))
    ).one()
    if lo is None:
        return set()
    first, last = lo.astimezone(CST).date(), hi.astimezone(CST).date()
    return {first + timedelta(days=i) for i in range((last - first).days + 1)}


def _clear_all(session: Session) -> None:
    for model in (
        ScanRegionDaily,
        ScanRegionMonthly,
        ScanProductDaily,
        ScanProductMonthly,
        CodeFirstScanDaily,
        RunScanTotal,
    ):
        session.execute(delete(model))


def _levels(session: Session, model: Any, first: date, last: date, dims: Sequence[str]) -> None:
    """Derive the city, province and national rows from the county rows just written.
    `dims` are the key columns besides the region; the first is the day."""
    table = cast(Table, model.__table__)
    region = table.c.region
    period = table.c[dims[0]]
    for length, child_length in ((4, 6), (2, 4), (0, 2)):
        prefix = _prefix(region, length)
        keys = [table.c[d] for d in dims]
        grouped = (
            select(
                prefix.label("region"),
                *keys,
                func.sum(table.c.scans).label("scans"),
            )
            .where(period.between(first, last), func.length(region) == child_length)
            # The national row groups by nothing but the keys (a constant is no GROUP BY term).
            .group_by(*([prefix] if length else []), *keys)
            .subquery()
        )
        parent = _prefix(grouped.c.region, length - 2) if length else literal_column("NULL")
        session.execute(
            insert(table).from_select(
                ["region", *dims, "parent", "scans"],
                select(grouped.c.region, *(grouped.c[d] for d in dims), parent, grouped.c.scans),
            )
        )


def _recompute_days(session: Session, first: date, last: date) -> set[int]:
    """Rebuild every daily rollup row of days first..last; returns the runs touched."""
    start, end = day_bounds(first, last)
    in_range = (ScanEvent.scanned_at >= start, ScanEvent.scanned_at < end)
    day = cst_day(ScanEvent.scanned_at)
    county = func.coalesce(ScanEvent.region_code, _lit(UNKNOWN_REGION))

    session.execute(delete(ScanRegionDaily).where(ScanRegionDaily.day.between(first, last)))
    grouped = (
        select(
            county.label("region"),
            day.label("day"),
            ScanEvent.verdict,
            func.count().label("scans"),
        )
        .where(*in_range)
        .group_by(county, day, ScanEvent.verdict)
        .subquery()
    )
    g = grouped.c
    session.execute(
        insert(ScanRegionDaily).from_select(
            ["region", "day", "verdict", "parent", "scans"],
            select(g.region, g.day, g.verdict, _prefix(g.region, 4), g.scans),
        )
    )
    _levels(session, ScanRegionDaily, first, last, ("day", "verdict"))

    session.execute(delete(ScanProductDaily).where(ScanProductDaily.day.between(first, last)))
    grouped = (
        select(
            county.label("region"),
            day.label("day"),
            ScanEvent.enterprise_id,
            ScanEvent.product_id,
            ScanEvent.verdict,
            func.count().label("scans"),
        )
        .where(*in_range, ScanEvent.product_id.is_not(None), ScanEvent.enterprise_id.is_not(None))
        .group_by(county, day, ScanEvent.enterprise_id, ScanEvent.product_id, ScanEvent.verdict)
        .subquery()
    )
    g = grouped.c
    session.execute(
        insert(ScanProductDaily).from_select(
            ["region", "day", "enterprise_id", "product_id", "verdict", "parent", "scans"],
            select(
                g.region,
                g.day,
                g.enterprise_id,
                g.product_id,
                g.verdict,
                _prefix(g.region, 4),
                g.scans,
            ),
        )
    )
    _levels(
        session, ScanProductDaily, first, last, ("day", "enterprise_id", "product_id", "verdict")
    )

    # Codes scanned for the first time, from the per-code state the scan path keeps.
    touched = set(
        session.scalars(
            select(CodeFirstScanDaily.run_id)
            .distinct()
            .where(CodeFirstScanDaily.day.between(first, last))
        )
    )
    session.execute(delete(CodeFirstScanDaily).where(CodeFirstScanDaily.day.between(first, last)))
    first_day = cst_day(CodeState.first_scan_at)
    session.execute(
        insert(CodeFirstScanDaily).from_select(
            ["run_id", "day", "codes"],
            select(CodeState.run_id, first_day, func.count())
            .where(CodeState.first_scan_at >= start, CodeState.first_scan_at < end)
            .group_by(CodeState.run_id, first_day),
        )
    )
    touched |= set(
        session.scalars(
            select(CodeFirstScanDaily.run_id)
            .distinct()
            .where(CodeFirstScanDaily.day.between(first, last))
        )
    )
    return touched


def _recompute_months(session: Session, first: date, last: date) -> None:
    """Rebuild the monthly rows of months first..last (first days) from the daily rows."""
    until = last_of_month(last)
    for daily, monthly, dims in (
        (ScanRegionDaily, ScanRegionMonthly, ("verdict",)),
        (ScanProductDaily, ScanProductMonthly, ("enterprise_id", "product_id", "verdict")),
    ):
        session.execute(delete(monthly).where(monthly.month.between(first, until)))
        src = daily.__table__.c
        month = month_start(src.day)
        keys = [src[d] for d in dims]
        session.execute(
            insert(monthly).from_select(
                ["region", "month", *dims, "parent", "scans"],
                select(src.region, month, *keys, src.parent, func.sum(src.scans))
                .where(src.day.between(first, until))
                .group_by(src.region, month, *keys, src.parent),
            )
        )


def _recompute_run_totals(session: Session, runs: set[int], *, full: bool) -> None:
    if full:
        session.execute(
            insert(RunScanTotal).from_select(
                ["run_id", "codes_scanned"],
                select(CodeFirstScanDaily.run_id, func.sum(CodeFirstScanDaily.codes)).group_by(
                    CodeFirstScanDaily.run_id
                ),
            )
        )
        return
    ordered = sorted(runs)
    for i in range(0, len(ordered), _IN_CHUNK):
        chunk = ordered[i : i + _IN_CHUNK]
        session.execute(delete(RunScanTotal).where(RunScanTotal.run_id.in_(chunk)))
        session.execute(
            insert(RunScanTotal).from_select(
                ["run_id", "codes_scanned"],
                select(CodeFirstScanDaily.run_id, func.sum(CodeFirstScanDaily.codes))
                .where(CodeFirstScanDaily.run_id.in_(chunk))
                .group_by(CodeFirstScanDaily.run_id),
            )
        )


# -- PostgreSQL: monthly partitions of scan_events ---------------------------------------


def _partition_name(month: date) -> str:
    return f"scan_events_y{month.year:04d}m{month.month:02d}"


def is_partitioned(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return False
    kind = session.scalar(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass('scan_events')")
    )
    return kind == "p"


def ensure_partitions(session: Session, first: date, last: date) -> list[str]:
    """Monthly partitions of scan_events covering first..last (UTC months), created where
    missing. Rows already sitting in the DEFAULT partition for such a month are moved into
    the new partition in the same transaction. No-op on SQLite. Returns created names."""
    if not is_partitioned(session):
        return []
    created: list[str] = []
    month = first_of_month(first)
    while month <= last:
        name = _partition_name(month)
        exists = session.scalar(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name})
        if not exists:
            _create_partition(session, name, month, next_month(month))
            created.append(name)
        month = next_month(month)
    return created


def _create_partition(session: Session, name: str, lo: date, hi: date) -> None:
    bounds = {"lo": lo, "hi": hi}
    strays = session.scalar(
        text(
            "SELECT count(*) FROM scan_events_default WHERE scanned_at >= :lo AND scanned_at < :hi"
        ),
        bounds,
    )
    span = f"FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
    if not strays:
        session.execute(text(f"CREATE TABLE {name} PARTITION OF scan_events FOR VALUES {span}"))
        return
    # The default partition holds rows of this month: a new partition would overlap them.
    # Build the month's table beside the parent, move the rows, then attach it.
    session.execute(text(f"CREATE TABLE {name} (LIKE scan_events INCLUDING DEFAULTS)"))
    session.execute(
        text(
            f"WITH moved AS (DELETE FROM scan_events_default "
            f"WHERE scanned_at >= :lo AND scanned_at < :hi RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved"
        ),
        bounds,
    )
    session.execute(text(f"ALTER TABLE scan_events ATTACH PARTITION {name} FOR VALUES {span}"))
