"""Append-only, hash-chained audit trail of every change (责任可追究)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from trace.crypto.chain import GENESIS, chain_hash, verify_chain
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
    entry = AuditEntry(
        at=utcnow(),
        actor_user_id=actor.user_id if actor else None,
        enterprise_id=enterprise_id,
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        payload=payload or {},
        prev_hash=prev,
    )
    entry.hash = chain_hash(prev, _body(entry))
    session.add(entry)
    session.flush()
    return entry


def _body(entry: AuditEntry) -> dict[str, Any]:
    """What an entry's hash covers: every column but the id and the hashes themselves."""
    return {
        "at": entry.at.isoformat(),
        "actor_user_id": entry.actor_user_id,
        "enterprise_id": entry.enterprise_id,
        "action": entry.action,
        "entity": entry.entity,
        "entity_id": entry.entity_id,
        "payload": entry.payload or {},
    }


@dataclass(frozen=True)
class ChainCheck:
    entries: int
    #: The id of the first entry that does not hold (edited, deleted before it, reordered).
    broken_id: int | None


def verify(session: Session, batch: int = 5000) -> ChainCheck:
    """Re-hash the whole trail in order; an edited or removed entry breaks the chain there."""
    read = 0
    last_id: int | None = None  # verify_chain stops at the broken entry: the last one read
    stmt = select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=batch)
    result = session.scalars(stmt)

    def links() -> Iterator[tuple[str, dict[str, Any], str]]:
        nonlocal read, last_id
        for entry in result:
            read += 1
            last_id = entry.id
            yield entry.prev_hash, _body(entry), entry.hash

    try:
        broken = verify_chain(links())
    finally:
        # Stopping at a broken entry leaves a server-side cursor open on PostgreSQL.
        result.close()
    return ChainCheck(entries=read, broken_id=None if broken is None else last_id)
