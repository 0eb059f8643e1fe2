"""The scan log: one row per resolve, the per-code summary, and the "looks copied" rules.

Every resolve (phone page, resolve API, kiosk, printer check) writes one ``scan_events`` row
and, for codes that decode to a real label, upserts its ``code_states`` row. On PostgreSQL
the scan is queued in the worker's write-behind buffer (services.scanbuffer: batched
multi-row writes from a background thread, off the request path); with SQLite, or with
TRACE_SCAN_LOG_BUFFER=off, :func:`record` writes it in the request's own transaction -- two
small statements (one with two CTEs on PostgreSQL), no read-modify-write round trip:

* ``scan_events``: time, channel, device, county, verdict, user-agent class, a keyed hash
  of the client IP (``crypto.iphash``; the raw address is never stored). Counterfeit
  attempts are logged too, with ``run_id`` NULL, because regulators watch "counterfeit
  attempts by county".
* ``code_states``: count, first scan time and county, last scan, and the sticky
  ``suspicious_reason`` once a rule fired.

On PostgreSQL the scan transaction commits with ``synchronous_commit = off``
(``set_config`` with is_local: this transaction only). A crash can then lose the last few
hundred milliseconds of scans, never corrupt anything; in exchange a scan does not wait
for a WAL flush. Audit entries and records keep full durability because the setting never
leaves this transaction.

Writing the log must never cost the shopper the page: the entry point (or the buffer's
flush) catches a failed write, rolls back, and calls :func:`note_failure`, which counts the
lost scans (per process, see :func:`failure_count`) and logs it.

Printer checks (a printer station verifying fresh labels) are logged but do not touch the
code's state: otherwise the shopper's first scan would read "scanned before".
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import case, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from trace.crypto.iphash import IP_HASH_PURPOSE, client_ip_hash
from trace.crypto.keyring import Keyring
from trace.models import CodeState, ScanEvent
from trace.models.enums import ScanChannel, Verdict
from trace.regions import lookup as regions

log = logging.getLogger(__name__)

#: Phone locations are stored rounded to this many decimals (~1 km): enough for the county
#: and for regulators' maps, not enough to find a shopper's house.
LOCATION_DECIMALS = 2


# -- who is scanning -------------------------------------------------------------------------


def ua_class(user_agent: str | None) -> str:
    """wechat / alipay / ios / android / desktop / other, from a User-Agent header.

    The in-app browsers come first: WeChat's and Alipay's UAs also say iPhone or Android.
    """
    ua = (user_agent or "").lower()
    if not ua:
        return "other"
    if "micromessenger" in ua:
        return "wechat"
    if "alipayclient" in ua or "alipay" in ua:
        return "alipay"
    if "iphone" in ua or "ipad" in ua or "ipod" in ua:
        return "ios"
    if "android" in ua:
        return "android"
    if any(s in ua for s in ("windows nt", "macintosh", "x11", "cros", "linux x86_64")):
        return "desktop"
    return "other"


@lru_cache(maxsize=8)
def _ip_key(keyring: Keyring) -> bytes:
    # HKDF per request would be wasted work: the derived key only changes with the keyring.
    return keyring.derive(IP_HASH_PURPOSE)


def ip_hash(keyring: Keyring, remote_addr: str | None) -> str | None:
    return client_ip_hash(_ip_key(keyring), remote_addr) if remote_addr else None


@dataclass(frozen=True)
class ScanContext:
    """Where a resolve came from: everything the scan log records besides the verdict."""

    channel: str
    ua_class: str = "other"
    ip_hash: str | None = None
    device_id: int | None = None
    #: County (6 digits) when known now: a kiosk's or printer station's region.
    region_code: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    #: Showing an already logged scan again (e.g. the page in another language): nothing
    #: is counted or written.
    replay: bool = False

    @property
    def counts(self) -> bool:
        """Whether this scan is one of the code's scans (printer checks are not)."""
        return not self.replay and self.channel != ScanChannel.PRINTER_CHECK  # StrEnum


# -- the "looks copied" rules ----------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    #: More scans than this and a genuine code is suspicious.
    max_scans: int
    #: Two counties farther apart than this speed allows for the time between the scans.
    max_speed_kmh: float


COUNT = "count"
DISTANCE = "distance"


def min_travel_km(region_a: str, region_b: str) -> float:
    """A lower bound of the distance between two scans made somewhere in these counties.

    Centroid distance minus both counties' reach (centroid to farthest boundary point): the
    two scans may have been made at the near edges. Neighbouring counties therefore never
    look "too far apart", however quick the second scan was.
    """
    if region_a == region_b:
        return 0.0
    a, b = regions.get(region_a), regions.get(region_b)
    if a is None or b is None or a.lat is None or a.lon is None or b.lat is None or b.lon is None:
        return 0.0
    d = regions.distance_km((a.lat, a.lon), (b.lat, b.lon))
    return max(0.0, d - (a.radius_km or 0.0) - (b.radius_km or 0.0))


def too_fast(rules: Rules, region_a: str, at_a: datetime, region_b: str, at_b: datetime) -> bool:
    """True when nobody could have carried the label from one county to the other in time."""
    km = min_travel_km(region_a, region_b)
    if km <= 0.0:
        return False
    hours = abs((at_b - at_a).total_seconds()) / 3600.0
    return km > rules.max_speed_kmh * hours


def previous_located_scan(
    session: Session, run_id: int, serial: int, before: datetime, exclude_id: int | None = None
) -> tuple[str, datetime] | None:
    """The latest scan of this code up to `before` whose county is known (index run_id,
    serial; a code has few scans)."""
    stmt = (
        select(ScanEvent.region_code, ScanEvent.scanned_at)
        .where(
            ScanEvent.run_id == run_id,
            ScanEvent.serial == serial,
            ScanEvent.region_code.is_not(None),
            ScanEvent.scanned_at <= before,
        )
        .order_by(ScanEvent.scanned_at.desc(), ScanEvent.id.desc())
        .limit(1)
    )
    if exclude_id is not None:
        stmt = stmt.where(ScanEvent.id != exclude_id)
    row = session.execute(stmt).first()
    return None if row is None else (str(row[0]), row[1])


# -- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanRecord:
    """The written scan, for a later opt-in location update."""

    id: int
    scanned_at: datetime


@dataclass(frozen=True)
class ScanFacts:
    """What the resolver decided, in the shape the log stores."""

    verdict: str
    run_id: int | None = None
    serial: int | None = None
    enterprise_id: int | None = None
    batch_id: int | None = None
    product_id: int | None = None
    #: A rule that fired on this scan, to be remembered on the code.
    new_suspicion: str | None = None


_INSERT_SCAN = insert(ScanEvent).returning(ScanEvent.id)


def scan_params(facts: ScanFacts, ctx: ScanContext, now: datetime) -> dict[str, Any]:
    """The scan_events row of one scan (without its id), plus the rule that fired."""
    return {
        "scanned_at": now,
        "run_id": facts.run_id,
        "serial": facts.serial,
        "enterprise_id": facts.enterprise_id,
        "batch_id": facts.batch_id,
        "product_id": facts.product_id,
        "channel": ctx.channel,
        "device_id": ctx.device_id,
        "region_code": ctx.region_code,
        "verdict": facts.verdict,
        "ua_class": ctx.ua_class,
        "ip_hash": ctx.ip_hash,
        "latitude": ctx.latitude,
        "longitude": ctx.longitude,
        "new_suspicion": facts.new_suspicion,
    }


def record(session: Session, facts: ScanFacts, ctx: ScanContext, now: datetime) -> ScanRecord:
    """Insert the scan and update the code's state. Flushes only; the caller commits.

    The synchronous path (SQLite, or TRACE_SCAN_LOG_BUFFER=off); PostgreSQL deployments
    queue scans in services.scanbuffer instead."""
    # Core statements on the session's connection (same transaction): the ORM-enabled
    # execute path costs more than the statements themselves.
    conn = session.connection()
    counts = facts.run_id is not None and facts.serial is not None and ctx.counts
    params = scan_params(facts, ctx, now)
    if conn.dialect.name == "postgresql":
        # One round trip: relaxed commit, the scan and the code's state in one statement.
        params["scanned_at"] = now.astimezone(UTC).replace(tzinfo=None)
        scan_id = conn.execute(_PG_WITH_STATE if counts else _PG_SCAN_ONLY, params).scalar_one()
        return ScanRecord(id=int(scan_id), scanned_at=now)
    scan_id = conn.execute(
        _INSERT_SCAN, {k: v for k, v in params.items() if k != "new_suspicion"}
    ).scalar_one()
    if counts:
        conn.execute(
            _upsert_state(conn.dialect.name),
            {
                "run_id": facts.run_id,
                "serial": facts.serial,
                "scan_count": 1,
                "first_scan_at": now,
                "first_region_code": ctx.region_code,
                "last_scan_at": now,
                "last_region_code": ctx.region_code,
                "suspicious_reason": facts.new_suspicion,
                "updated_at": now,
            },
        )
    return ScanRecord(id=int(scan_id), scanned_at=now)


_SCAN_COLUMNS = (
    "scanned_at, run_id, serial, enterprise_id, batch_id, product_id, channel, device_id, "
    "region_code, verdict, ua_class, ip_hash, latitude, longitude"
)
_SCAN_VALUES = ", ".join(":" + c.strip() for c in _SCAN_COLUMNS.split(","))
#: PostgreSQL: set_config(.., true) is SET LOCAL as a function, so it fits in the statement;
#: the data-modifying CTEs always run. Same effect as record()'s SQLite path, fewer trips.
_PG_SCAN_ONLY = text(
    "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true) AS v), "
    f"scan AS (INSERT INTO scan_events ({_SCAN_COLUMNS}) VALUES ({_SCAN_VALUES}) RETURNING id) "
    "SELECT scan.id FROM scan, relaxed"
)
_PG_WITH_STATE = text(
    "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true) AS v), "
    f"scan AS (INSERT INTO scan_events ({_SCAN_COLUMNS}) VALUES ({_SCAN_VALUES}) RETURNING id), "
    "state AS (INSERT INTO code_states (run_id, serial, scan_count, first_scan_at, "
    "first_region_code, last_scan_at, last_region_code, suspicious_reason, updated_at) "
    "VALUES (:run_id, :serial, 1, :scanned_at, :region_code, :scanned_at, :region_code, "
    ":new_suspicion, :scanned_at) "
    "ON CONFLICT (run_id, serial) DO UPDATE SET "
    "scan_count = code_states.scan_count + 1, "
    "first_scan_at = coalesce(code_states.first_scan_at, excluded.first_scan_at), "
    "first_region_code = CASE WHEN code_states.first_scan_at IS NULL "
    "THEN excluded.first_region_code ELSE code_states.first_region_code END, "
    "last_scan_at = excluded.last_scan_at, "
    "last_region_code = coalesce(excluded.last_region_code, code_states.last_region_code), "
    "suspicious_reason = coalesce(code_states.suspicious_reason, excluded.suspicious_reason), "
    "updated_at = excluded.updated_at RETURNING 1) "
    "SELECT scan.id FROM scan, relaxed"
)


@lru_cache(maxsize=4)
def _upsert_state(dialect: str) -> Any:
    """INSERT .. ON CONFLICT DO UPDATE, built once per dialect: one statement, atomic under
    concurrent scans of one code."""
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(CodeState)
    t = CodeState.__table__.c
    ex = ins.excluded
    return ins.on_conflict_do_update(
        index_elements=[t.run_id, t.serial],
        set_={
            "scan_count": t.scan_count + 1,
            # A state row may exist before its first scan (created lazily by others).
            "first_scan_at": func.coalesce(t.first_scan_at, ex.first_scan_at),
            "first_region_code": case(
                (t.first_scan_at.is_(None), ex.first_region_code), else_=t.first_region_code
            ),
            "last_scan_at": ex.last_scan_at,
            "last_region_code": func.coalesce(ex.last_region_code, t.last_region_code),
            "suspicious_reason": func.coalesce(t.suspicious_reason, ex.suspicious_reason),
            "updated_at": ex.updated_at,
        },
    )


# -- opt-in location, posted back by the phone page -------------------------------------------


@dataclass(frozen=True)
class Located:
    region_code: str | None
    #: The location made the code suspicious (or it already was).
    suspicious: bool


#: A location arriving later than this after its scan is ignored (a stale page left open).
LOCATE_WINDOW = timedelta(minutes=30)


def locate(
    session: Session,
    scan: ScanRecord,
    latitude: float,
    longitude: float,
    rules: Rules,
    now: datetime,
) -> Located:
    """Give a phone scan the county of the shopper's opt-in location, once.

    Maps the point to the nearest county centroid (``regions.nearest_county``), stores it on
    the scan (coordinates rounded, see ``LOCATION_DECIMALS``), fills the code's first-scan
    county if this was its first scan, and applies the distance rule against the code's
    previous located scan. Flushes only.
    """
    event = session.scalars(
        select(ScanEvent).where(ScanEvent.id == scan.id, ScanEvent.scanned_at == scan.scanned_at)
    ).one_or_none()
    if event is None or now - event.scanned_at > LOCATE_WINDOW:
        return Located(None, False)
    if event.region_code is not None:  # located already: a page cannot move its scan
        return Located(event.region_code, event.verdict == Verdict.SUSPICIOUS.value)
    county = regions.nearest_county(latitude, longitude)
    if county is None:
        return Located(None, event.verdict == Verdict.SUSPICIOUS.value)
    event.region_code = county.code
    event.latitude = round(latitude, LOCATION_DECIMALS)
    event.longitude = round(longitude, LOCATION_DECIMALS)
    suspicious = event.verdict == Verdict.SUSPICIOUS.value
    if event.run_id is not None and event.serial is not None and event.channel != "printer_check":
        state = session.get(CodeState, (event.run_id, event.serial))
        if state is not None:
            if state.first_scan_at == event.scanned_at and state.first_region_code is None:
                state.first_region_code = county.code
            if state.last_scan_at == event.scanned_at or state.last_region_code is None:
                state.last_region_code = county.code
            prev = previous_located_scan(
                session, event.run_id, event.serial, event.scanned_at, exclude_id=event.id
            )
            if prev is not None and too_fast(
                rules, prev[0], prev[1], county.code, event.scanned_at
            ):
                if state.suspicious_reason is None:
                    state.suspicious_reason = DISTANCE
                if event.verdict == Verdict.GENUINE.value:
                    event.verdict = Verdict.SUSPICIOUS.value
                suspicious = True
            state.updated_at = now
    session.flush()
    return Located(county.code, suspicious)


# -- failures --------------------------------------------------------------------------------

_failures = 0
_failures_lock = threading.Lock()


def note_failure(exc: BaseException, channel: str, count: int = 1) -> int:
    """Count and log a scan-log write that failed (`count` scans lost: a failed flush of
    the write-behind buffer loses all it carried); returns the process's count so far."""
    total = count_failures(count)
    log.error(
        "scan log write failed (channel %s, %d scans lost, %d in this process): %s",
        channel,
        count,
        total,
        exc.__class__.__name__,
        exc_info=exc,
    )
    return total


def count_failures(count: int) -> int:
    """Count lost scans without logging (the caller logs, e.g. once per thousand)."""
    global _failures
    with _failures_lock:
        _failures += count
        return _failures


def failure_count() -> int:
    """Scans the log lost in this process since it started (failed writes, dropped)."""
    return _failures
