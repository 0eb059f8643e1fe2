"""Rollups that keep regulator analytics fast however large the scan log grows.

The scan log (scan_events) only grows; dashboards must not read it. A periodic, incremental
job (services.rollups.refresh) folds new scans into these small tables, keyed by China-time
day. Each region-keyed rollup holds every level of the region hierarchy at once: a row for
the county ("530424"), its city prefix ("5304"), its province prefix ("53") and the
country (""). A regulator whose jurisdiction is "53" then reads rows WHERE region = '53'
instead of summing a hundred counties, and a drill-down reads rows WHERE parent = '53'.
Scans without a known county are filed under the pseudo-region "000000" ("00", "0000").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from trace.db import Base, UTCDateTime, utcnow
from trace.models.scans import CodeState, ScanEvent

#: Region of scans whose county is unknown (no kiosk, no opt-in location).
UNKNOWN_REGION = "000000"


class ScanRegionDaily(Base):
    """Scans per day, region (any level) and verdict."""

    __tablename__ = "scan_region_daily"
    __table_args__ = (
        Index("ix_scan_region_daily_parent_day", "parent", "day"),
        # The refresh job deletes and rebuilds whole days.
        Index("ix_scan_region_daily_day", "day"),
    )

    region: Mapped[str] = mapped_column(String(6), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    verdict: Mapped[str] = mapped_column(String(20), primary_key=True)
    #: The region one level up ("" above a province); NULL on the national row.
    parent: Mapped[str | None] = mapped_column(String(6))
    scans: Mapped[int] = mapped_column(BigInteger)


class ScanProductDaily(Base):
    """Scans of genuine-looking codes per day, region (any level), enterprise, product and
    verdict. Counterfeit scans point at no product and are only in ScanRegionDaily."""

    __tablename__ = "scan_product_daily"
    __table_args__ = (
        Index("ix_scan_product_daily_enterprise_region", "enterprise_id", "region", "day"),
        Index("ix_scan_product_daily_enterprise_parent", "enterprise_id", "parent", "day"),
        Index("ix_scan_product_daily_day", "day"),
    )

    region: Mapped[str] = mapped_column(String(6), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    verdict: Mapped[str] = mapped_column(String(20), primary_key=True)
    parent: Mapped[str | None] = mapped_column(String(6))
    scans: Mapped[int] = mapped_column(BigInteger)


class ScanRegionMonthly(Base):
    """ScanRegionDaily summed by China-time month (`month` is the month's first day):
    long date ranges read whole months here and only the partial months' days above."""

    __tablename__ = "scan_region_monthly"
    __table_args__ = (
        Index("ix_scan_region_monthly_parent_month", "parent", "month"),
        Index("ix_scan_region_monthly_month", "month"),
    )

    region: Mapped[str] = mapped_column(String(6), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    verdict: Mapped[str] = mapped_column(String(20), primary_key=True)
    parent: Mapped[str | None] = mapped_column(String(6))
    scans: Mapped[int] = mapped_column(BigInteger)


class ScanProductMonthly(Base):
    """ScanProductDaily summed by China-time month."""

    __tablename__ = "scan_product_monthly"
    __table_args__ = (
        Index("ix_scan_product_monthly_enterprise_region", "enterprise_id", "region", "month"),
        Index("ix_scan_product_monthly_enterprise_parent", "enterprise_id", "parent", "month"),
        Index("ix_scan_product_monthly_month", "month"),
    )

    region: Mapped[str] = mapped_column(String(6), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    verdict: Mapped[str] = mapped_column(String(20), primary_key=True)
    parent: Mapped[str | None] = mapped_column(String(6))
    scans: Mapped[int] = mapped_column(BigInteger)


class CodeFirstScanDaily(Base):
    """Codes of a label run scanned for the first time on a day (from code_states)."""

    __tablename__ = "code_first_scan_daily"
    __table_args__ = (Index("ix_code_first_scan_daily_day", "day"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("label_runs.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    codes: Mapped[int] = mapped_column(BigInteger)


class RunScanTotal(Base):
    """Distinct codes of a label run scanned so far: the numerator of the scan rate."""

    __tablename__ = "run_scan_totals"

    run_id: Mapped[int] = mapped_column(ForeignKey("label_runs.id"), primary_key=True)
    codes_scanned: Mapped[int] = mapped_column(BigInteger)


class RollupWatermark(Base):
    """How far the incremental rollup job has read the scan log (by scan id)."""

    __tablename__ = "rollup_watermarks"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_scan_id: Mapped[int] = mapped_column(BigInteger, default=0)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# Indexes on other aggregates' tables that the analytics need. Declared here (and created by
# migration 0002) so that the models and the migrations describe the same schema.

#: The recall report reads one batch's scans: counties, devices, first and last. On
#: PostgreSQL the index covers those columns, so the report is an index-only scan.
ix_scan_events_batch_time = Index(
    "ix_scan_events_batch_time",
    ScanEvent.batch_id,
    ScanEvent.scanned_at,
    postgresql_include=["region_code", "device_id", "channel", "verdict"],
)

#: The rollup job counts codes first scanned on the days it recomputes.
ix_code_states_first_scan_at = Index("ix_code_states_first_scan_at", CodeState.first_scan_at)


# -- PostgreSQL monthly partitions of scan_events (migration 0002) ------------------------

#: Partitions are named scan_events_yYYYYmMM, plus scan_events_default.
SCAN_PARTITION = re.compile(r"^scan_events_(?:y\d{4}m\d{2}|default)$")


def is_scan_partition(name: str | None) -> bool:
    return bool(name) and SCAN_PARTITION.match(name or "") is not None


def include_name(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
    """Alembic `include_name` hook: partitions are managed by migration 0002 and
    services.rollups.ensure_partitions, not by the models, so autogenerate and
    compare_metadata must not report them as tables to drop."""
    return not (type_ == "table" and is_scan_partition(name))
