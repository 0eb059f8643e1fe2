"""Append-only, hash-chained audit trail of every change (责任可追究)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from trace.crypto.chain import GENESIS, chain_hash
from trace.db import utcnow
from trace.models import AuditEntry
from trace.services.actors import Actor

# Any constant works: it only serialises writers of the chain on PostgreSQL.
_AUDIT_LOCK_KEY = 7_300_424


def record(
    session: Session,
    actor: Actor | None,
    action: str,
    entity: str,
    entity_id: object,
    payload: dict[str, Any] | None = None,
    enterprise_id: int | None = None,
) -> AuditEntry:
    if session.get_bind().dialect.name == "postgresql":
        # Two concurrent writers reading the same head would fork the chain.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})
    head = session.scalars(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)).first()
    prev = head or GENESIS
    at = utcnow()
    body = {
        "at": at.isoformat(),
        "actor_user_id": actor.user_id if actor else None,
        "enterprise_id": enterprise_id,
        "action": action,
        "entity": entity,
        "entity_id": str(entity_id),
        "payload": payload or {},
    }
    entry = AuditEntry(
        at=at,
        actor_user_id=body["actor_user_id"],
        enterprise_id=enterprise_id,
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        payload=payload or {},
        prev_hash=prev,
        hash=chain_hash(prev, body),
    )
    session.add(entry)
    session.flush()
    return entry
