"""analytics: rollup tables, two indexes, and (PostgreSQL) scan_events partitioned by month

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

What this does, in order:
1. Creates the rollup tables of trace/models/analytics.py (both backends): scans per day
   and per month by region and verdict, by product, first scans per label run, and the
   job's watermark.
2. Adds ix_scan_events_batch_time (covering on PostgreSQL) and ix_code_states_first_scan_at.
3. PostgreSQL only: rebuilds scan_events as a table partitioned by month of scanned_at
   (UTC), keeping its rows, columns, id sequence, constraints and index names. Partitions
   exist for every month that has rows and for the next few months; a DEFAULT partition
   catches anything else. services/rollups.ensure_partitions() keeps months ahead coming
   (run by `flask analytics rollup`). The primary key becomes (id, scanned_at) because a
   partitioned table's unique keys must contain the partition key; id alone stays unique
   in practice (one sequence). SQLite keeps the plain table.

The partitioning SQL is written out here rather than imported from the application so
that this migration keeps meaning the same thing when the application changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

import trace.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Months created ahead of the current one at upgrade time.
MONTHS_AHEAD = 2

#: scan_events' secondary indexes as 0001 created them (name, columns).
SCAN_EVENT_INDEXES = (
    ("ix_scan_events_batch", "batch_id"),
    ("ix_scan_events_enterprise_time", "enterprise_id, scanned_at"),
    ("ix_scan_events_region_time", "region_code, scanned_at"),
    ("ix_scan_events_run_serial", "run_id, serial"),
    ("ix_scan_events_scanned_at", "scanned_at"),
)

#: scan_events' foreign keys (column, referenced table).
SCAN_EVENT_FKS = (
    ("batch_id", "batches"),
    ("device_id", "devices"),
    ("enterprise_id", "enterprises"),
    ("product_id", "products"),
    ("run_id", "label_runs"),
)

BATCH_TIME_INCLUDE = "region_code, device_id, channel, verdict"


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "scan_region_daily",
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("parent", sa.String(length=6), nullable=True),
        sa.Column("scans", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("region", "day", "verdict", name=op.f("pk_scan_region_daily")),
    )
    op.create_index(
        "ix_scan_region_daily_parent_day", "scan_region_daily", ["parent", "day"], unique=False
    )
    op.create_index("ix_scan_region_daily_day", "scan_region_daily", ["day"], unique=False)

    op.create_table(
        "scan_product_daily",
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("parent", sa.String(length=6), nullable=True),
        sa.Column("scans", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "region",
            "day",
            "enterprise_id",
            "product_id",
            "verdict",
            name=op.f("pk_scan_product_daily"),
        ),
    )
    op.create_index(
        "ix_scan_product_daily_enterprise_region",
        "scan_product_daily",
        ["enterprise_id", "region", "day"],
        unique=False,
    )
    op.create_index(
        "ix_scan_product_daily_enterprise_parent",
        "scan_product_daily",
        ["enterprise_id", "parent", "day"],
        unique=False,
    )
    op.create_index("ix_scan_product_daily_day", "scan_product_daily", ["day"], unique=False)

    op.create_table(
        "scan_region_monthly",
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("parent", sa.String(length=6), nullable=True),
        sa.Column("scans", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("region", "month", "verdict", name=op.f("pk_scan_region_monthly")),
    )
    op.create_index(
        "ix_scan_region_monthly_parent_month",
        "scan_region_monthly",
        ["parent", "month"],
        unique=False,
    )
    op.create_index("ix_scan_region_monthly_month", "scan_region_monthly", ["month"], unique=False)

    op.create_table(
        "scan_product_monthly",
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("parent", sa.String(length=6), nullable=True),
        sa.Column("scans", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "region",
            "month",
            "enterprise_id",
            "product_id",
            "verdict",
            name=op.f("pk_scan_product_monthly"),
        ),
    )
    op.create_index(
        "ix_scan_product_monthly_enterprise_region",
        "scan_product_monthly",
        ["enterprise_id", "region", "month"],
        unique=False,
    )
    op.create_index(
        "ix_scan_product_monthly_enterprise_parent",
        "scan_product_monthly",
        ["enterprise_id", "parent", "month"],
        unique=False,
    )
    op.create_index(
        "ix_scan_product_monthly_month", "scan_product_monthly", ["month"], unique=False
    )

    op.create_table(
        "code_first_scan_daily",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("codes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["label_runs.id"], name=op.f("fk_code_first_scan_daily_run_id_label_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "day", name=op.f("pk_code_first_scan_daily")),
    )
    op.create_index("ix_code_first_scan_daily_day", "code_first_scan_daily", ["day"], unique=False)

    op.create_table(
        "run_scan_totals",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("codes_scanned", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["label_runs.id"], name=op.f("fk_run_scan_totals_run_id_label_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_scan_totals")),
    )

    op.create_table(
        "rollup_watermarks",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("last_scan_id", sa.BigInteger(), nullable=False),
        sa.Column("refreshed_at", trace.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rollup_watermarks")),
    )

    op.create_index("ix_code_states_first_scan_at", "code_states", ["first_scan_at"], unique=False)

    if _is_postgresql():
        _partition_scan_events()
        # Created on the partitioned parent: PostgreSQL builds it on every partition.
        op.execute(
            "CREATE INDEX ix_scan_events_batch_time ON scan_events (batch_id, scanned_at) "
            f"INCLUDE ({BATCH_TIME_INCLUDE})"
        )
    else:
        op.create_index(
            "ix_scan_events_batch_time", "scan_events", ["batch_id", "scanned_at"], unique=False
        )


def downgrade() -> None:
    if _is_postgresql():
        op.execute("DROP INDEX ix_scan_events_batch_time")
        _unpartition_scan_events()
    else:
        op.drop_index("ix_scan_events_batch_time", table_name="scan_events")
    op.drop_index("ix_code_states_first_scan_at", table_name="code_states")
    op.drop_table("rollup_watermarks")
    op.drop_table("run_scan_totals")
    op.drop_index("ix_code_first_scan_daily_day", table_name="code_first_scan_daily")
    op.drop_table("code_first_scan_daily")
    op.drop_index("ix_scan_product_monthly_enterprise_parent", table_name="scan_product_monthly")
    op.drop_index("ix_scan_product_monthly_enterprise_region", table_name="scan_product_monthly")
    op.drop_index("ix_scan_product_monthly_month", table_name="scan_product_monthly")
    op.drop_table("scan_product_monthly")
    op.drop_index("ix_scan_region_monthly_parent_month", table_name="scan_region_monthly")
    op.drop_index("ix_scan_region_monthly_month", table_name="scan_region_monthly")
    op.drop_table("scan_region_monthly")
    op.drop_index("ix_scan_product_daily_enterprise_parent", table_name="scan_product_daily")
    op.drop_index("ix_scan_product_daily_enterprise_region", table_name="scan_product_daily")
    op.drop_index("ix_scan_product_daily_day", table_name="scan_product_daily")
    op.drop_table("scan_product_daily")
    op.drop_index("ix_scan_region_daily_parent_day", table_name="scan_region_daily")
    op.drop_index("ix_scan_region_daily_day", table_name="scan_region_daily")
    op.drop_table("scan_region_daily")


# -- PostgreSQL: monthly partitions of scan_events ---------------------------------------


def _month_start(value: datetime | date) -> date:
    return date(value.year, value.month, 1)


def _next_month(value: date) -> date:
    return date(value.year + value.month // 12, value.month % 12 + 1, 1)


def _months(first: date, last: date) -> list[date]:
    out, month = [], _month_start(first)
    while month <= last:
        out.append(month)
        month = _next_month(month)
    return out


def _create_month_partition(month: date) -> None:
    name = f"scan_events_y{month.year:04d}m{month.month:02d}"
    op.execute(
        f"CREATE TABLE {name} PARTITION OF scan_events "
        f"FOR VALUES FROM ('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"
    )


def _copy_constraints_and_indexes(table: str) -> None:
    """Foreign keys and the 0001 secondary indexes, under their 0001 names."""
    for column, target in SCAN_EVENT_FKS:
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT fk_scan_events_{column}_{target} "
            f"FOREIGN KEY ({column}) REFERENCES {target} (id)"
        )
    for name, columns in SCAN_EVENT_INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")


def _partition_scan_events() -> None:
    bind = op.get_bind()
    lo, hi = bind.execute(sa.text("SELECT min(scanned_at), max(scanned_at) FROM scan_events")).one()
    now = datetime.now(UTC)
    current = _month_start(now)
    last = current
    for _ in range(MONTHS_AHEAD):
        last = _next_month(last)
    first = min(_month_start(lo), current) if lo is not None else current
    if hi is not None:
        last = max(last, _month_start(hi))

    # Same columns, NOT NULLs and defaults (including nextval of the existing id sequence).
    op.execute(
        "CREATE TABLE scan_events_partitioned (LIKE scan_events INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (scanned_at)"
    )
    op.execute("ALTER SEQUENCE scan_events_id_seq OWNED BY NONE")
    op.execute("ALTER TABLE scan_events RENAME TO scan_events_unpartitioned")
    op.execute("ALTER TABLE scan_events_partitioned RENAME TO scan_events")
    for month in _months(first, last):
        _create_month_partition(month)
    op.execute("CREATE TABLE scan_events_default PARTITION OF scan_events DEFAULT")
    op.execute("INSERT INTO scan_events SELECT * FROM scan_events_unpartitioned")
    op.execute("DROP TABLE scan_events_unpartitioned")
    op.execute("ALTER SEQUENCE scan_events_id_seq OWNED BY scan_events.id")
    op.execute("ALTER TABLE scan_events ADD CONSTRAINT pk_scan_events PRIMARY KEY (id, scanned_at)")
    _copy_constraints_and_indexes("scan_events")


def _unpartition_scan_events() -> None:
    op.execute("CREATE TABLE scan_events_unpartitioned (LIKE scan_events INCLUDING DEFAULTS)")
    op.execute("ALTER SEQUENCE scan_events_id_seq OWNED BY NONE")
    op.execute("INSERT INTO scan_events_unpartitioned SELECT * FROM scan_events")
    op.execute("DROP TABLE scan_events")  # drops the partitions with it
    op.execute("ALTER TABLE scan_events_unpartitioned RENAME TO scan_events")
    op.execute("ALTER SEQUENCE scan_events_id_seq OWNED BY scan_events.id")
    op.execute("ALTER TABLE scan_events ADD CONSTRAINT pk_scan_events PRIMARY KEY (id)")
    _copy_constraints_and_indexes("scan_events")
