"""Alerts: open problems a regulator should act on, found by `refresh()`.

Kinds (one dedupe key per problem, so a refresh never raises the same problem twice):
- phi_violation        a batch harvested inside a pesticide's pre-harvest interval
                       ("phi:batch:<id>"), filed under the enterprise's county;
- failed_inspection    an inspection record with verdict "fail" ("inspection:event:<id>");
- suspicious_cluster   at least SUSPICIOUS_CLUSTER_MIN suspicious scans in one county on
                       one day ("suspicious:<county>:<day>"),
- counterfeit_burst    at least COUNTERFEIT_BURST_MIN counterfeit attempts in one county
                       on one day ("counterfeit:<county>:<day>"),
  both only when the day's count is also BURST_FACTOR times the county's daily mean over
  the BASELINE_DAYS before: a busy county with a steady trickle is not news, a jump is.
Scan-based kinds read the rollups, so they cost the same at any scan volume; details that
need more (the batches behind a cluster) are only worked out for problems not seen before,
so a refresh that finds nothing new is a handful of small queries.

The regulator whose prefix covers an alert's county sees it, acknowledges it (optional
note) and closes it (note required); who and when are kept on the row and in the audit
trail. Enterprises see their own alerts, read-only.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from trace.db import utcnow
from trace.errors import Conflict, Forbidden, NotFound, ValidationFailed
from trace.models import Alert, Batch, Enterprise, ScanEvent, TraceEvent
from trace.models.analytics import RollupWatermark, ScanRegionDaily
from trace.models.enums import AlertStatus, EventType, Verdict
from trace.services import audit
from trace.services import events as event_service
from trace.services.actors import Actor
from trace.services.rollups import CST, day_bounds, today_cst
from trace.services.scope import is_storable_id

KINDS = ("phi_violation", "failed_inspection", "suspicious_cluster", "counterfeit_burst")
SUSPICIOUS_CLUSTER_MIN = 5
COUNTERFEIT_BURST_MIN = 10
BURST_FACTOR = 3.0
BASELINE_DAYS = 28
#: Scan-based problems are looked for in the last this many days.
SCAN_WINDOW_DAYS = 7
MAX_NOTE = 2000
#: Pages and listings look for new problems at most this often.
REQUEST_INTERVAL = timedelta(seconds=60)
#: rollup_watermarks row that remembers when alerts were last looked for.
WATERMARK = "alerts"


# -- detection ----------------------------------------------------------------------------


def _known(session: Session, keys: list[str]) -> set[str]:
    known: set[str] = set()
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        known |= set(session.scalars(select(Alert.dedupe_key).where(Alert.dedupe_key.in_(chunk))))
    return known


def _phi_candidates(session: Session) -> list[dict[str, Any]]:
    flagged = session.execute(
        select(Batch.id, Enterprise.region_code)
        .join(Enterprise, Enterprise.id == Batch.enterprise_id)
        .where(Batch.phi_violation.is_(True))
    ).all()
    known = _known(session, [f"phi:batch:{b}" for b, _ in flagged])
    out = []
    for batch_id, region in flagged:
        if f"phi:batch:{batch_id}" in known:
            continue
        batch = session.get(Batch, batch_id)
        assert batch is not None
        findings = event_service.phi_findings(
            event_service.events_of(session, batch.id), batch.harvest_date
        )
        worst = max(findings, key=lambda f: f["days_short"], default={})
        out.append(
            {
                "kind": "phi_violation",
                "dedupe_key": f"phi:batch:{batch.id}",
                "region_code": region,
                "enterprise_id": batch.enterprise_id,
                "batch_id": batch.id,
                "summary": f"批次 {batch.batch_no} 采收早于农药安全间隔期"
                + (
                    f"（{worst.get('product_name')}，提前 {worst.get('days_short')} 天）"
                    if worst
                    else ""
                ),
                "details": {
                    "batch_no": batch.batch_no,
                    "pesticide": worst.get("product_name"),
                    "phi_days": worst.get("phi_days"),
                    "days_short": worst.get("days_short"),
                },
            }
        )
    return out


def _inspection_candidates(session: Session) -> list[dict[str, Any]]:
    correction = aliased(TraceEvent)
    stmt = (
        select(TraceEvent, Batch.batch_no, Enterprise.region_code)
        .join(Batch, Batch.id == TraceEvent.batch_id)
        .join(Enterprise, Enterprise.id == TraceEvent.enterprise_id)
        .where(
            TraceEvent.type == EventType.INSPECTION.value,
            TraceEvent.details["verdict"].as_string() == "fail",
            ~exists().where(correction.corrects_id == TraceEvent.id),
        )
    )
    out = []
    for event, batch_no, region in session.execute(stmt):
        details = event.details or {}
        out.append(
            {
                "kind": "failed_inspection",
                "dedupe_key": f"inspection:event:{event.id}",
                "region_code": region,
                "enterprise_id": event.enterprise_id,
                "batch_id": event.batch_id,
                "summary": f"批次 {batch_no} 检测不合格"
                + (f"（{details.get('lab')}）" if details.get("lab") else ""),
                "details": {
                    "event_id": event.id,
                    "batch_no": batch_no,
                    "inspected_at": event.occurred_at.astimezone(CST).isoformat(),
                    "lab": details.get("lab"),
                    "report_no": details.get("report_no"),
                },
            }
        )
    return out


def _county_days(
    session: Session, verdict: str, first: date, last: date
) -> dict[tuple[str, date], int]:
    stmt = (
        select(ScanRegionDaily.region, ScanRegionDaily.day, func.sum(ScanRegionDaily.scans))
        .where(
            ScanRegionDaily.day.between(first, last),
            ScanRegionDaily.verdict == verdict,
            func.length(ScanRegionDaily.region) == 6,
            ~ScanRegionDaily.region.startswith("00"),
        )
        .group_by(ScanRegionDaily.region, ScanRegionDaily.day)
    )
    return {(region, day): int(scans) for region, day, scans in session.execute(stmt)}


def _top_batches(session: Session, county: str, day: date, verdict: str) -> list[dict[str, Any]]:
    start, end = day_bounds(day, day)
    stmt = (
        select(ScanEvent.batch_id, func.count())
        .where(
            ScanEvent.region_code == county,
            ScanEvent.scanned_at >= start,
            ScanEvent.scanned_at < end,
            ScanEvent.verdict == verdict,
            ScanEvent.batch_id.is_not(None),
        )
        .group_by(ScanEvent.batch_id)
        .order_by(func.count().desc())
        .limit(5)
    )
    return [{"batch_id": b, "scans": int(n)} for b, n in session.execute(stmt)]


def _jumps(
    session: Session, verdict: str, minimum: int, today: date, window_days: int
) -> list[tuple[str, date, int, float]]:
    """(county, day, scans, baseline per day) for days of the window with at least
    `minimum` scans of `verdict` and BURST_FACTOR times the county's mean before."""
    first = today - timedelta(days=window_days - 1)
    history = _county_days(session, verdict, first - timedelta(days=BASELINE_DAYS), today)
    per_county: dict[str, dict[date, int]] = defaultdict(dict)
    for (county, day), scans in history.items():
        per_county[county][day] = scans
    out = []
    for county, days in sorted(per_county.items()):
        for day, scans in sorted(days.items()):
            if day < first or scans < minimum:
                continue
            before = (day - timedelta(days=i) for i in range(1, BASELINE_DAYS + 1))
            baseline = sum(days.get(d, 0) for d in before) / BASELINE_DAYS
            if scans >= BURST_FACTOR * baseline:
                out.append((county, day, scans, baseline))
    return out


def _scan_candidates(session: Session, today: date, window_days: int) -> list[dict[str, Any]]:
    found = [
        ("suspicious_cluster", "suspicious", county, day, scans, baseline)
        for county, day, scans, baseline in _jumps(
            session, Verdict.SUSPICIOUS.value, SUSPICIOUS_CLUSTER_MIN, today, window_days
        )
    ] + [
        ("counterfeit_burst", "counterfeit", county, day, scans, baseline)
        for county, day, scans, baseline in _jumps(
            session, Verdict.COUNTERFEIT.value, COUNTERFEIT_BURST_MIN, today, window_days
        )
    ]
    known = _known(session, [f"{p}:{c}:{d.isoformat()}" for _, p, c, d, _, _ in found])
    out: list[dict[str, Any]] = []
    for kind, prefix, county, day, scans, baseline in found:
        key = f"{prefix}:{county}:{day.isoformat()}"
        if key in known:
            continue
        details: dict[str, Any] = {
            "day": day.isoformat(),
            "scans": scans,
            "baseline_per_day": round(baseline, 2),
        }
        if kind == "suspicious_cluster":
            summary = f"{day.isoformat()} 本县出现 {scans} 次可疑扫码（此前日均 {baseline:.1f} 次）"
            details["batches"] = _top_batches(session, county, day, Verdict.SUSPICIOUS.value)
        else:
            summary = (
                f"{day.isoformat()} 本县假冒码扫描激增：{scans} 次（此前日均 {baseline:.1f} 次）"
            )
        out.append(
            {
                "kind": kind,
                "dedupe_key": key,
                "region_code": county,
                "summary": summary,
                "details": details,
            }
        )
    return out


def _insert_new(session: Session, candidates: list[dict[str, Any]]) -> int:
    if not candidates:
        return 0
    known = _known(session, [c["dedupe_key"] for c in candidates])
    now = utcnow()
    fresh = [
        {
            "enterprise_id": None,
            "batch_id": None,
            "status": AlertStatus.OPEN.value,
            "created_at": now,
            **c,
            "summary": c["summary"][:300],
        }
        for c in candidates
        if c["dedupe_key"] not in known
    ]
    if not fresh:
        return 0
    # Two refreshes racing on the same new problem: the unique key keeps one, silently.
    stmt: Any
    if session.get_bind().dialect.name == "postgresql":
        stmt = postgresql.insert(Alert).on_conflict_do_nothing(index_elements=["dedupe_key"])
    else:
        stmt = sqlite.insert(Alert).on_conflict_do_nothing(index_elements=["dedupe_key"])
    session.execute(stmt, fresh)
    return len(fresh)


def refresh(
    session: Session, *, now: datetime | None = None, window_days: int = SCAN_WINDOW_DAYS
) -> int:
    """Detect problems and insert the ones not raised before. Returns how many are new.
    Reads the scan rollups as they stand: refresh those first (services.rollups)."""
    today = today_cst(now)
    candidates = [
        *_phi_candidates(session),
        *_inspection_candidates(session),
        *_scan_candidates(session, today, window_days),
    ]
    return _insert_new(session, candidates)


def refresh_if_due(session: Session, *, now: datetime | None = None) -> int | None:
    """What a page or a listing does: refresh at most once per REQUEST_INTERVAL (the job
    and POST /alerts/refresh refresh at once). None when it was not due."""
    now = now or utcnow()
    mark = session.get(RollupWatermark, WATERMARK)
    if mark is not None and now - mark.refreshed_at < REQUEST_INTERVAL:
        return None
    if mark is None:
        session.add(RollupWatermark(name=WATERMARK, last_scan_id=0, refreshed_at=now))
    else:
        mark.refreshed_at = now
    return refresh(session, now=now)


# -- reading and acting -------------------------------------------------------------------


def _visible(actor: Actor) -> Any:
    if actor.is_platform_admin:
        return None
    if actor.is_regulator:
        if not actor.region_prefix:
            raise Forbidden("This regulator account has no jurisdiction.")
        return Alert.region_code.startswith(actor.region_prefix)
    if actor.is_enterprise and actor.enterprise_id is not None:
        return Alert.enterprise_id == actor.enterprise_id
    raise Forbidden("Alerts are for regulators and enterprises.")


def list_alerts(
    session: Session,
    actor: Actor,
    *,
    status: str | None = None,
    kind: str | None = None,
    region: str | None = None,
    limit: int = 200,
) -> list[Alert]:
    """Newest first. status None means the unfinished ones (open and acknowledged)."""
    stmt = select(Alert).order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)
    visible = _visible(actor)
    if visible is not None:
        stmt = stmt.where(visible)
    if status == "all":
        pass
    elif status is None:
        stmt = stmt.where(Alert.status != AlertStatus.CLOSED.value)
    else:
        stmt = stmt.where(Alert.status == status)
    if kind is not None:
        stmt = stmt.where(Alert.kind == kind)
    if region:
        stmt = stmt.where(Alert.region_code.startswith(region))
    return list(session.scalars(stmt))


def count_open(session: Session, actor: Actor, region: str | None = None) -> int:
    stmt = select(func.count()).select_from(Alert).where(Alert.status != AlertStatus.CLOSED.value)
    visible = _visible(actor)
    if visible is not None:
        stmt = stmt.where(visible)
    if region:
        stmt = stmt.where(Alert.region_code.startswith(region))
    return int(session.scalar(stmt) or 0)


def get_alert(session: Session, actor: Actor, alert_id: int) -> Alert:
    if not is_storable_id(alert_id):  # from a URL: binding it would overflow the driver
        raise NotFound(f"Alert {alert_id} not found.")
    stmt = select(Alert).where(Alert.id == alert_id)
    visible = _visible(actor)
    if visible is not None:
        stmt = stmt.where(visible)
    alert = session.scalars(stmt).one_or_none()
    if alert is None:
        raise NotFound(f"Alert {alert_id} not found.")
    return alert


def _actionable(session: Session, actor: Actor, alert_id: int) -> Alert:
    alert = get_alert(session, actor, alert_id)
    if not actor.is_regulator:
        raise Forbidden("Only the regulator of the alert's region acknowledges or closes it.")
    return alert


def _note(note: str | None, required: bool) -> str | None:
    text = (note or "").strip()
    if required and not text:
        raise ValidationFailed("A note is required.", fields={"note": ["Say what was done."]})
    if len(text) > MAX_NOTE:
        raise ValidationFailed("Note too long.", fields={"note": [f"At most {MAX_NOTE}."]})
    return text or None


def acknowledge(session: Session, actor: Actor, alert_id: int, note: str | None = None) -> Alert:
    alert = _actionable(session, actor, alert_id)
    if alert.status != AlertStatus.OPEN.value:
        raise Conflict(f"The alert is {alert.status}; only an open alert is acknowledged.")
    alert.status = AlertStatus.ACKNOWLEDGED.value
    alert.acknowledged_by = actor.user_id
    alert.acknowledged_at = utcnow()
    alert.acknowledge_note = _note(note, required=False)
    session.flush()
    audit.record(
        session,
        actor,
        "acknowledge",
        "alert",
        alert.id,
        {"kind": alert.kind, "note": alert.acknowledge_note},
        alert.enterprise_id,
    )
    return alert


def close(session: Session, actor: Actor, alert_id: int, note: str) -> Alert:
    alert = _actionable(session, actor, alert_id)
    if alert.status == AlertStatus.CLOSED.value:
        raise Conflict("The alert is closed already.")
    alert.status = AlertStatus.CLOSED.value
    alert.closed_by = actor.user_id
    alert.closed_at = utcnow()
    alert.close_note = _note(note, required=True)
    session.flush()
    audit.record(
        session,
        actor,
        "close",
        "alert",
        alert.id,
        {"kind": alert.kind, "note": alert.close_note},
        alert.enterprise_id,
    )
    return alert
