"""Trace events on a batch: recording, corrections, and the pre-harvest-interval rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from trace.errors import Conflict, NotFound, ValidationFailed
from trace.models import Attachment, Batch, TraceEvent
from trace.models.enums import BatchStatus, EventType
from trace.services import audit
from trace.services.actors import Actor
from trace.services.event_details import validate_details
from trace.services.scope import get_visible, get_writable


def list_events(session: Session, actor: Actor, batch_id: int) -> list[TraceEvent]:
    batch = get_visible(session, Batch, batch_id, actor)
    return events_of(session, batch.id)


def events_of(session: Session, batch_id: int) -> list[TraceEvent]:
    stmt = (
        select(TraceEvent)
        .where(TraceEvent.batch_id == batch_id)
        .order_by(TraceEvent.occurred_at, TraceEvent.id)
    )
    return list(session.scalars(stmt))


def corrected_ids(events: list[TraceEvent]) -> dict[int, int]:
    """id of each corrected event -> id of the newest event correcting it."""
    return {e.corrects_id: e.id for e in events if e.corrects_id is not None}


def effective_events(events: list[TraceEvent]) -> list[TraceEvent]:
    """The history as it stands after corrections: superseded records drop out."""
    superseded = corrected_ids(events)
    return [e for e in events if e.id not in superseded]


def get_event(session: Session, actor: Actor, event_id: int) -> TraceEvent:
    return get_visible(session, TraceEvent, event_id, actor)


def _writable_batch(session: Session, actor: Actor, batch_id: int) -> Batch:
    batch = get_writable(session, Batch, batch_id, actor)
    if batch.status == BatchStatus.RECALLED.value:
        raise Conflict("The batch is recalled; its history is closed.")
    return batch


def record_event(session: Session, actor: Actor, batch_id: int, data: dict[str, Any]) -> TraceEvent:
    batch = _writable_batch(session, actor, batch_id)
    event_type = EventType(data["type"])
    details = validate_details(event_type, data.get("details") or {})
    corrects_id = data.get("corrects_id")
    reason = (data.get("correction_reason") or "").strip() or None
    if corrects_id is not None:
        target = session.get(TraceEvent, corrects_id)
        if target is None or target.batch_id != batch.id:
            raise ValidationFailed(
                "Unknown event to correct.",
                fields={"corrects_id": ["No such event in this batch."]},
            )
        later = session.scalar(select(TraceEvent.id).where(TraceEvent.corrects_id == target.id))
        if later is not None:
            # Two corrections of one record would both count as current history.
            raise ValidationFailed(
                "This event was already corrected.",
                fields={"corrects_id": [f"Corrected by event {later}; correct that one instead."]},
            )
        if target.type != event_type.value:
            raise ValidationFailed(
                "A correction keeps the event type.", fields={"type": [f"Must be {target.type}."]}
            )
        if reason is None:
            raise ValidationFailed(
                "A correction needs a reason.",
                fields={"correction_reason": ["Required with corrects_id."]},
            )
    elif reason is not None:
        raise ValidationFailed(
            "A reason without a corrected event.",
            fields={"corrects_id": ["Required with correction_reason."]},
        )
    event = TraceEvent(
        enterprise_id=batch.enterprise_id,
        batch_id=batch.id,
        type=event_type.value,
        occurred_at=data["occurred_at"].astimezone(UTC),  # as it reads back from the DB
        place=data.get("place", ""),
        actor=data.get("actor", ""),
        note=data.get("note", ""),
        details=details,
        corrects_id=corrects_id,
        correction_reason=reason,
        created_by=actor.user_id,
    )
    session.add(event)
    session.flush()
    refresh_phi_flag(session, batch)
    audit.record(
        session,
        actor,
        "correct" if corrects_id else "create",
        "trace_event",
        event.id,
        {
            "type": event_type.value,
            "batch_id": batch.id,
            "corrects_id": corrects_id,
            "reason": reason,
        },
        batch.enterprise_id,
    )
    return event


def _editable_event(session: Session, actor: Actor, event_id: int) -> tuple[TraceEvent, Batch]:
    event = get_writable(session, TraceEvent, event_id, actor)
    batch = _writable_batch(session, actor, event.batch_id)
    if batch.labelled_at is not None:
        raise Conflict(
            "Labels exist for this batch: record a correction event that references this one "
            "(corrects_id) with a reason, instead of editing it.",
            fields={"event": ["History is corrected, not edited, once labels exist."]},
        )
    return event, batch


def update_event(
    session: Session, actor: Actor, event_id: int, changes: dict[str, Any]
) -> TraceEvent:
    event, batch = _editable_event(session, actor, event_id)
    if "details" in changes:
        changes["details"] = validate_details(EventType(event.type), changes["details"] or {})
    if "occurred_at" in changes:
        changes["occurred_at"] = changes["occurred_at"].astimezone(UTC)
    for key, value in changes.items():
        setattr(event, key, value)
    session.flush()
    refresh_phi_flag(session, batch)
    audit.record(
        session,
        actor,
        "update",
        "trace_event",
        event.id,
        {"fields": sorted(changes)},
        batch.enterprise_id,
    )
    return event


def delete_event(session: Session, actor: Actor, event_id: int) -> None:
    event, batch = _editable_event(session, actor, event_id)
    if any(e.corrects_id == event.id for e in events_of(session, batch.id)):
        raise Conflict("Another event corrects this one; it cannot be deleted.")
    # Photos and videos are evidence: they are not dropped along with the event.
    if session.scalar(select(Attachment.id).where(Attachment.event_id == event.id).limit(1)):
        raise Conflict(
            "Photos or videos are attached to this event; it cannot be deleted.",
            fields={"event": ["Has attachments."]},
        )
    session.delete(event)
    session.flush()
    refresh_phi_flag(session, batch)
    audit.record(
        session,
        actor,
        "delete",
        "trace_event",
        event_id,
        {"batch_id": batch.id},
        batch.enterprise_id,
    )


# -- the pre-harvest interval (安全间隔期) -------------------------------------------------


def phi_findings(events: list[TraceEvent], harvest_date: Any = None) -> list[dict[str, Any]]:
    """Harvests that came before a pesticide application's pre-harvest interval had passed."""
    current = effective_events(events)
    pesticides = [e for e in current if e.type == EventType.PESTICIDE.value]
    harvests = [e.occurred_at for e in current if e.type == EventType.HARVEST.value]
    if not harvests and harvest_date is not None:
        harvests = [datetime(harvest_date.year, harvest_date.month, harvest_date.day, tzinfo=UTC)]
    findings = []
    for harvested in harvests:
        for p in pesticides:
            if p.occurred_at > harvested:
                continue
            safe_from = p.occurred_at + timedelta(days=int(p.details.get("phi_days", 0)))
            if harvested < safe_from:
                findings.append(
                    {
                        "pesticide_event_id": p.id,
                        "product_name": p.details.get("product_name"),
                        "applied_at": p.occurred_at.isoformat(),
                        "phi_days": p.details.get("phi_days"),
                        "harvested_at": harvested.isoformat(),
                        "days_short": (safe_from - harvested).days
                        + (1 if (safe_from - harvested).seconds else 0),
                    }
                )
    return findings


def refresh_phi_flag(session: Session, batch: Batch) -> None:
    batch.phi_violation = bool(phi_findings(events_of(session, batch.id), batch.harvest_date))
    session.flush()


def require_batch(session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(f"Batch {batch_id} not found.")
    return batch
