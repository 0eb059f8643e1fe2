"""Label runs: one row per run, never one per label (DESIGN.md §3)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from trace.db import Base, UTCDateTime, utcnow
from trace.models.records import Batch


class LabelRun(Base):
    __tablename__ = "label_runs"
    __table_args__ = (Index("ix_label_runs_enterprise_serials", "enterprise_id", "first_serial"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    level: Mapped[str] = mapped_column(String(10), default="item")
    count: Mapped[int] = mapped_column(BigInteger)
    #: Serials first_serial .. first_serial + count - 1, taken from Enterprise.next_serial,
    #: so ranges of one enterprise never overlap; a failed run's range is never reused.
    first_serial: Mapped[int] = mapped_column(BigInteger)
    key_version: Mapped[int]
    profile: Mapped[str] = mapped_column(String(80))
    format: Mapped[str] = mapped_column(String(20))
    #: Which fields the label and the public scan page show.
    template: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="issuing")
    failure: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    batch: Mapped[Batch] = relationship()

    @property
    def last_serial(self) -> int:
        return self.first_serial + self.count - 1


class LabelVoid(Base):
    """A voided serial range of a run (damaged or misprinted labels)."""

    __tablename__ = "label_voids"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("label_runs.id"), index=True)
    first_serial: Mapped[int] = mapped_column(BigInteger)
    last_serial: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(300), default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
