"""Recalls (产品可召回): open on a batch, trace it forward, close with a note.

Opening a recall sets the batch's status to "recalled" in the same transaction as the
Recall row and its audit entry, so the next resolve of any of the batch's codes (consumer
page, resolve API, kiosk) answers "recalled" with the public notice. The label service
refuses new labels for a recalled batch.

Closing a recall records that the recall action is finished (goods withdrawn, notice
served); the batch stays "recalled" for good. Printed codes of a withdrawn batch must
never read "genuine" again: if a recall proves unfounded, the producer records a new batch.

Who may act: the regulator whose jurisdiction covers the batch's enterprise, or that
enterprise's administrator. A regulator closes any recall in its jurisdiction; an
enterprise closes only recalls its own people opened (a regulator's order stays the
regulator's to close).

The trace-forward report is scoped by the batch, not by the reader's region: a recall is
about where the batch's goods went, so the regulator of the producing county sees every
county and kiosk the batch's codes were scanned in.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from trace.db import utcnow
from trace.errors import Conflict, Forbidden, NotFound, ValidationFailed
from trace.models import (
    Batch,
    CodeState,
    Device,
    Enterprise,
    LabelRun,
    Recall,
    ScanEvent,
    User,
)
from trace.models.enums import BatchStatus, EventType, LabelLevel, RecallStatus, Role
from trace.services import audit
from trace.services import events as event_service
from trace.services.actors import Actor
from trace.services.analytics import region_full_name
from trace.services.rollups import CST
from trace.services.scope import get_visible, scoped

#: 一级 is the most severe (serious health hazard), as in SAMR's food recall rules.
LEVELS = ("一级", "二级", "三级")
LEVEL_ALIASES = {"1": "一级", "2": "二级", "3": "三级", "I": "一级", "II": "二级", "III": "三级"}
LEVEL_NAMES_EN = {"一级": "Level I", "二级": "Level II", "三级": "Level III"}
MOVEMENT_TYPES = (EventType.SHIPPING.value, EventType.RECEIVING.value, EventType.RETAIL.value)


def normalise_level(value: str) -> str:
    level = LEVEL_ALIASES.get(value.strip().upper(), value.strip())
    if level not in LEVELS:
        raise ValidationFailed(
            "Invalid recall level.", fields={"level": ["一级, 二级 or 三级 (1, 2, 3)."]}
        )
    return level


def _may_act_on(actor: Actor, enterprise_id: int) -> None:
    if actor.is_regulator:
        return  # visibility (get_visible) already limited it to the jurisdiction
    if actor.role is Role.ENTERPRISE_ADMIN and actor.enterprise_id == enterprise_id:
        return
    raise Forbidden("Only the regulator of the region or the enterprise's administrator can.")


def open_recall(
    session: Session,
    actor: Actor,
    batch_id: int,
    *,
    reason: str,
    level: str,
    public_notice: str,
) -> Recall:
    batch = get_visible(session, Batch, batch_id, actor)
    _may_act_on(actor, batch.enterprise_id)
    problems: dict[str, list[str]] = {}
    if not reason.strip():
        problems["reason"] = ["Required."]
    if not public_notice.strip():
        problems["public_notice"] = ["Required: consumers read it when they scan."]
    if problems:
        raise ValidationFailed("A recall needs a reason and a public notice.", fields=problems)
    level = normalise_level(level)
    already = session.scalars(
        select(Recall).where(Recall.batch_id == batch.id, Recall.status == RecallStatus.OPEN.value)
    ).first()
    if already is not None:
        raise Conflict(f"Batch {batch.id} has an open recall already (recall {already.id}).")
    recall = Recall(
        batch_id=batch.id,
        enterprise_id=batch.enterprise_id,
        level=level,
        reason=reason.strip(),
        public_notice=public_notice.strip(),
        status=RecallStatus.OPEN.value,
        opened_by=actor.user_id,
        opened_at=utcnow(),
    )
    session.add(recall)
    previous_status = batch.status
    batch.status = BatchStatus.RECALLED.value
    session.flush()
    audit.record(
        session,
        actor,
        "open",
        "recall",
        recall.id,
        {
            "batch_id": batch.id,
            "level": level,
            "reason": recall.reason,
            "batch_status_before": previous_status,
        },
        batch.enterprise_id,
    )
    return recall


def get_recall(session: Session, actor: Actor, recall_id: int) -> Recall:
    return get_visible(session, Recall, recall_id, actor)


def list_recalls(
    session: Session, actor: Actor, *, status: str | None = None, batch_id: int | None = None
) -> list[Recall]:
    stmt = scoped(
        select(Recall).order_by(Recall.opened_at.desc(), Recall.id.desc()),
        actor,
        Recall.enterprise_id,
    )
    if status is not None:
        stmt = stmt.where(Recall.status == status)
    if batch_id is not None:
        stmt = stmt.where(Recall.batch_id == batch_id)
    return list(session.scalars(stmt))


def close_recall(session: Session, actor: Actor, recall_id: int, note: str) -> Recall:
    recall = get_recall(session, actor, recall_id)
    _may_act_on(actor, recall.enterprise_id)
    if actor.is_enterprise:
        opener = session.get(User, recall.opened_by) if recall.opened_by else None
        if opener is None or opener.enterprise_id != actor.enterprise_id:
            raise Forbidden("A recall ordered by the regulator is closed by the regulator.")
    if recall.status != RecallStatus.OPEN.value:
        raise Conflict("The recall is closed already.")
    if not note.strip():
        raise ValidationFailed(
            "A closing note is required.", fields={"note": ["Say how the recall ended."]}
        )
    recall.status = RecallStatus.CLOSED.value
    recall.closed_by = actor.user_id
    recall.closed_at = utcnow()
    recall.close_note = note.strip()
    session.flush()
    audit.record(
        session,
        actor,
        "close",
        "recall",
        recall.id,
        {"batch_id": recall.batch_id, "note": recall.close_note},
        recall.enterprise_id,
    )
    return recall


# -- trace-forward report -----------------------------------------------------------------


def _cst(value: Any) -> str | None:
    return value.astimezone(CST).isoformat(timespec="seconds") if value is not None else None


def _label_runs(session: Session, batch_id: int) -> list[dict[str, Any]]:
    runs = list(
        session.scalars(select(LabelRun).where(LabelRun.batch_id == batch_id).order_by(LabelRun.id))
    )
    scanned = (
        dict(
            session.execute(
                select(CodeState.run_id, func.count())
                .where(CodeState.run_id.in_([r.id for r in runs]), CodeState.scan_count > 0)
                .group_by(CodeState.run_id)
            ).all()
        )
        if runs
        else {}
    )
    return [
        {
            "run_id": r.id,
            "created_at": _cst(r.created_at),
            "status": r.status,
            "level": r.level,
            "labels": r.count,
            "codes": 1 if r.level == LabelLevel.BATCH.value else r.count,
            "first_serial": r.first_serial,
            "last_serial": r.last_serial,
            "codes_scanned": int(scanned.get(r.id, 0)),
        }
        for r in runs
    ]


def _scans_by(session: Session, batch_id: int, column: Any) -> list[tuple[Any, ...]]:
    stmt = (
        select(
            column,
            func.count(),
            func.min(ScanEvent.scanned_at),
            func.max(ScanEvent.scanned_at),
        )
        .where(ScanEvent.batch_id == batch_id)
        .group_by(column)
        .order_by(func.count().desc())
    )
    return [tuple(r) for r in session.execute(stmt)]


def trace_forward(session: Session, actor: Actor, recall_id: int) -> dict[str, Any]:
    """Where the recalled batch went: labels issued, scans by county and by device (first
    and last), scans since the recall opened, and its shipping/receiving/retail records."""
    recall = get_recall(session, actor, recall_id)
    batch = session.get(Batch, recall.batch_id)
    if batch is None:  # pragma: no cover - foreign key
        raise NotFound(f"Batch {recall.batch_id} not found.")
    enterprise = session.get(Enterprise, batch.enterprise_id)
    counties = [
        {
            "region_code": code,
            "region_name": region_full_name(code) if code else "未知地区",
            "scans": int(n),
            "first_scan_at": _cst(first),
            "last_scan_at": _cst(last),
        }
        for code, n, first, last in _scans_by(session, batch.id, ScanEvent.region_code)
    ]
    by_device = _scans_by(session, batch.id, ScanEvent.device_id)
    devices_by_id = {
        d.id: d
        for d in session.scalars(
            select(Device).where(Device.id.in_([r[0] for r in by_device if r[0] is not None]))
        )
    }
    devices = []
    for device_id, n, first, last in by_device:
        if device_id is None:
            continue  # phone scans: no device
        device = devices_by_id.get(device_id)
        devices.append(
            {
                "device_id": device_id,
                "name": device.name if device else "",
                "kind": device.kind if device else "",
                "region_code": device.region_code if device else None,
                "region_name": region_full_name(device.region_code) if device else "",
                "scans": int(n),
                "first_scan_at": _cst(first),
                "last_scan_at": _cst(last),
            }
        )
    total = sum(c["scans"] for c in counties)
    firsts = [c["first_scan_at"] for c in counties if c["first_scan_at"]]
    lasts = [c["last_scan_at"] for c in counties if c["last_scan_at"]]
    after_recall = session.scalar(
        select(func.count())
        .select_from(ScanEvent)
        .where(ScanEvent.batch_id == batch.id, ScanEvent.scanned_at >= recall.opened_at)
    )
    movements = [
        {
            "event_id": e.id,
            "type": e.type,
            "occurred_at": _cst(e.occurred_at),
            "place": e.place,
            "actor": e.actor,
            "details": e.details,
        }
        for e in event_service.effective_events(event_service.events_of(session, batch.id))
        if e.type in MOVEMENT_TYPES
    ]
    labels = _label_runs(session, batch.id)
    return {
        "recall": recall,
        "batch": {
            "id": batch.id,
            "batch_no": batch.batch_no,
            "status": batch.status,
            "product_name": batch.product.name,
            "enterprise_name": enterprise.name if enterprise else "",
            "enterprise_region": region_full_name(enterprise.region_code) if enterprise else "",
            "quantity": str(batch.quantity) if batch.quantity is not None else None,
            "unit": batch.unit,
            "harvest_date": batch.harvest_date.isoformat() if batch.harvest_date else None,
        },
        "labels": {
            "runs": labels,
            "codes_issued": sum(r["codes"] for r in labels if r["status"] == "issued"),
            "codes_scanned": sum(r["codes_scanned"] for r in labels),
        },
        "scans": {
            "total": total,
            "since_recall": int(after_recall or 0),
            "first_scan_at": min(firsts) if firsts else None,
            "last_scan_at": max(lasts) if lasts else None,
            "counties": counties,
            "devices": devices,
        },
        "movements": movements,
    }
