"""Scan log and the per-code summary created lazily on first scan."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from trace.db import Base, UTCDateTime, utcnow


class ScanEvent(Base):
    __tablename__ = "scan_events"
    __table_args__ = (
        Index("ix_scan_events_scanned_at", "scanned_at"),
        Index("ix_scan_events_region_time", "region_code", "scanned_at"),
        Index("ix_scan_events_enterprise_time", "enterprise_id", "scanned_at"),
        Index("ix_scan_events_run_serial", "run_id", "serial"),
    )

    # SQLite only autoincrements INTEGER primary keys; PostgreSQL gets a bigint.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The ids below name label_runs, enterprises, batches, products and devices rows, which
    # are never deleted; they are not foreign keys: checking five of them per scan cost as
    # much as the insert itself (migrations/versions/0004).
    #: Null for codes that failed verification (counterfeit): nothing to point at.
    run_id: Mapped[int | None] = mapped_column(Integer)
    serial: Mapped[int | None] = mapped_column(BigInteger)
    enterprise_id: Mapped[int | None] = mapped_column(Integer)
    batch_id: Mapped[int | None] = mapped_column(Integer)
    product_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(20))
    device_id: Mapped[int | None] = mapped_column(Integer)
    #: County of the scan (6-digit code) when known: device region or opt-in location.
    region_code: Mapped[str | None] = mapped_column(String(6))
    verdict: Mapped[str] = mapped_column(String(20))
    ua_class: Mapped[str] = mapped_column(String(20), default="other")
    #: Keyed hash of the client IP; the raw address is never stored.
    ip_hash: Mapped[str | None] = mapped_column(String(32))
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]


class CodeState(Base):
    """Summary of one code's history, created when something first happens to it."""

    __tablename__ = "code_states"

    # A label run's id, not a foreign key (see ScanEvent, migrations/versions/0004).
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    scan_count: Mapped[int] = mapped_column(default=0)
    first_scan_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_region_code: Mapped[str | None] = mapped_column(String(6))
    last_scan_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_region_code: Mapped[str | None] = mapped_column(String(6))
    suspicious_reason: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
