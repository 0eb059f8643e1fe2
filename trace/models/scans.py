"""Scan log and the per-code summary created lazily on first scan."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
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
    #: Null for codes that failed verification (counterfeit): nothing to point at.
    run_id: Mapped[int | None] = mapped_column(ForeignKey("label_runs.id"))
    serial: Mapped[int | None] = mapped_column(BigInteger)
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprises.id"))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    channel: Mapped[str] = mapped_column(String(20))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
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

    run_id: Mapped[int] = mapped_column(ForeignKey("label_runs.id"), primary_key=True)
    serial: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    scan_count: Mapped[int] = mapped_column(default=0)
    first_scan_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_region_code: Mapped[str | None] = mapped_column(String(6))
    last_scan_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_region_code: Mapped[str | None] = mapped_column(String(6))
    suspicious_reason: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
