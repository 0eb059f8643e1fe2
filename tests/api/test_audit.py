"""The audit trail: every change appends a link; editing or removing one is detected."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from trace.models import AuditEntry
from trace.services import audit


def test_demo_trail_verifies_and_tampering_is_found(
    app: Flask, demo: dict[str, Any], session: Session
) -> None:
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    entries = audit.verify(session).entries
    assert entries > 10 and f"{entries} entries" in ok.output

    ids = session.scalars(select(AuditEntry.id).order_by(AuditEntry.id)).all()
    victim = session.get(AuditEntry, ids[5])
    assert victim is not None
    victim.payload = {**(victim.payload or {}), "quantity": "1"}  # a quiet edit
    session.commit()
    bad = runner.invoke(args=["audit", "verify"])
    assert bad.exit_code == 1 and f"broken at entry {ids[5]}" in bad.output


def test_removed_entry_breaks_the_next_link(
    app: Flask, demo: dict[str, Any], session: Session
) -> None:
    ids = session.scalars(select(AuditEntry.id).order_by(AuditEntry.id)).all()
    session.execute(delete(AuditEntry).where(AuditEntry.id == ids[3]))
    session.commit()
    assert audit.verify(session).broken_id == ids[4]
