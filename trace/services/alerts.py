"""Alerts: open problems a regulator should act on, found by `refresh()`.

Kinds (one dedupe key per problem, so a refresh never raises the same problem twice):
- phi_violation        a batch harvested inside a pesticide's pre-harvest interval
                       ("phi:batch:<id>"), filed under the enterprise's county;
- failed_inspection    an inspection record with verdict "fail" ("inspection:event:<id>");
- suspicious_cluster   at least SUSPICIOUS_CLUSTER_MIN suspicious scans in one county on
                       one day ("suspicious:<county>:<day>");
- counterfeit_burst    at least COUNTERFEIT_BURST_MIN counterfeit attempts in one county
                       on one day, and COUNTERFEIT_BURST_FACTOR times the county's daily
                       mean over the BASELINE_DAYS before ("counterfeit:<county>:<day>").
Scan-based kinds read the rollups, so they cost the same at any scan volume.

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
from trace.models.analytics import ScanRegionDaily
from trace.models.enums import AlertStatus, EventType, Verdict
from trace.services import audit
from trace.services import events as event_service
from trace.services.actors import Actor
from trace.services.rollups import CST, day_bounds, today_cst

KINDS = ("phi_violation", "failed_inspection", "suspicious_cluster", "counterfeit_burst")
SUSPICIOUS_CLUSTER_MIN = 5
COUNTERFEIT_BURST_MIN = 10
COUNTERFEIT_BURST_FACTOR = 3.0
BASELINE_DAYS = 28
#: Scan-based problems are looked for in the last this many days.
SCAN_WINDOW_DAYS = 7
MAX_NOTE = 2000


# -- detection ----------------------------------------------------------------------------


def _phi_candidates(session: Session) -> list[dict[str, Any]]:
    stmt = (
        select(Batch, Enterprise.region_code)
        .join(Enterprise, Enterprise.id == Batch.enterprise_id)
        .where(Batch.phi_violation.is_(True))
    )
    out = []
    for batch, region in session.execute(stmt):
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


def _scan_candidates(session: Session, today: date, window_days: int) -> list[dict[str, Any]]:
    first = today - timedelta(days=window_days - 1)
    out: list[dict[str, Any]] = []
    for (county, day), scans in sorted(
        _county_days(session, Verdict.SUSPICIOUS.value, first, today).items()
    ):
        if scans >= SUSPICIOUS_CLUSTER_MIN:
            out.append(
                {
                    "kind": "suspicious_cluster",
                    "dedupe_key": f"suspicious:{county}:{day.isoformat()}",
                    "region_code": county,
                    "summary": f"{day.isoformat()} 本县出现 {scans} 次可疑扫码",
                    "details": {
                        "day": day.isoformat(),
                        "scans": scans,
                        "batches": _top_batches(session, county, day, Verdict.SUSPICIOUS.value),
                    },
                }
            )
    history = _county_days(
        session, Verdict.COUNTERFEIT.value, first - timedelta(days=BASELINE_DAYS), today
    )
    per_county: dict[str, dict[date, int]] = defaultdict(dict)
    for (county, day), scans in history.items():
        per_county[county][day] = scans
    for county, days in sorted(per_county.items()):
        for day, scans in sorted(days.items()):
            if day < first or scans < COUNTERFEIT_BURST_MIN:
                continue
            baseline = (
                sum(days.get(day - timedelta(days=i), 0) for i in range(1, BASELINE_DAYS + 1))
                / BASELINE_DAYS
            )
            if scans < COUNTERFEIT_BURST_FACTOR * baseline:
                continue
            out.append(
                {
                    "kind": "counterfeit_burst",
                    "dedupe_key": f"counterfeit:{county}:{day.isoformat()}",
                    "region_code": county,
                    "summary": f"{day.isoformat()} 本县假冒码扫描激增：{scans} 次"
                    f"（此前日均 {baseline:.1f} 次）",
                    "details": {
                        "day": day.isoformat(),
                        "scans": scans,
                        "baseline_per_day": round(baseline, 2),
                    },
                }
            )
    return out


def _insert_new(session: Session, candidates: list[dict[str, Any]]) -> int:
    if not candidates:
        return 0
    keys = [c["dedupe_key"] for c in candidates]
    known: set[str] = set()
    for i in range(0, len(keys), 500):
        known |= set(
            session.scalars(select(Alert.dedupe_key).where(Alert.dedupe_key.in_(keys[i : i + 500])))
        )
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
    dialect = session.get_bind().dialect.name
    stmt: Any
    if dialect == "postgresql":
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
