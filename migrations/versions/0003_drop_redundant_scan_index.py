"""scan_events: drop ix_scan_events_batch, which ix_scan_events_batch_time already covers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

ix_scan_events_batch_time (batch_id, scanned_at) answers every lookup by batch_id that
ix_scan_events_batch (batch_id) answered, so the single-column index only cost each scan
one more index insert on the platform's most written table. On PostgreSQL the partitioned
index and its per-month partition indexes go together.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The drop locks every partition: behind a long analytics query it would hold up
        # every scan insert while it waits. Fail fast instead; the migration can be rerun.
        op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index("ix_scan_events_batch", table_name="scan_events")


def downgrade() -> None:
    op.create_index("ix_scan_events_batch", "scan_events", ["batch_id"], unique=False)
