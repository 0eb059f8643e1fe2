"""PostgreSQL: notify listeners of changed code states and run facts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Each worker keeps the code states of the label runs it has seen scanned
(services/codestates.py), so that a scan is answered without reading the database. That
copy must not go stale, so the database tells every worker what changes, in commit order
and only once committed (LISTEN/NOTIFY):

* ``trace_code_states``: code states were created or changed (by any worker, host or
  tool). The payload lists each changed row as
  ``run_id:serial:scan_count:first_scan_at:first_region_code:suspicious_reason`` (the time
  as microseconds since 1970 UTC, empty fields for NULL), rows separated by commas, at most
  80 per notification (payloads must stay under 8,000 bytes).
* ``trace_run_facts``: something a verdict reads besides the code's state changed -- a
  label run (status), a batch (recall status), a void range, a recall, or a batch's events
  or attachments (what the public page shows). No payload: workers drop all they keep of
  run facts and read them again; these writes are rare next to scans.

Statement-level triggers with transition tables: one trigger call per statement, not per
row (the scan log writes a flush's code states in one statement). SQLite has no listeners
and gets nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: One trigger per event: a trigger with a transition table takes one event only.
CODE_STATE_EVENTS = ("INSERT", "UPDATE")
#: Tables whose changes alter a verdict's run facts (services.resolve's verdict query).
RUN_FACT_TABLES = ("label_runs", "batches", "label_voids", "recalls", "trace_events", "attachments")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL lock_timeout = '5s'")  # as in 0003: never queue behind analytics
    op.execute(
        """
        CREATE FUNCTION trace_notify_code_states() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- concat_ws would skip a NULL field, so NULLs go as empty text
            PERFORM pg_notify('trace_code_states', string_agg(concat_ws(':',
                    run_id, serial, scan_count,
                    coalesce(((extract(epoch FROM first_scan_at) * 1000000)::bigint)::text, ''),
                    coalesce(first_region_code, ''), coalesce(suspicious_reason, '')), ','))
            FROM (SELECT *, (row_number() OVER ()) / 80 AS part FROM changed) AS c
            GROUP BY part;
            RETURN NULL;
        END $$
        """
    )
    for event in CODE_STATE_EVENTS:
        op.execute(
            f"CREATE TRIGGER notify_code_states_{event.lower()} AFTER {event} ON code_states "
            "REFERENCING NEW TABLE AS changed "
            "FOR EACH STATEMENT EXECUTE FUNCTION trace_notify_code_states()"
        )
    op.execute(
        """
        CREATE FUNCTION trace_notify_run_facts() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('trace_run_facts', '');
            RETURN NULL;
        END $$
        """
    )
    for table in RUN_FACT_TABLES:
        op.execute(
            f"CREATE TRIGGER notify_run_facts AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION trace_notify_run_facts()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in RUN_FACT_TABLES:
        op.execute(f"DROP TRIGGER notify_run_facts ON {table}")
    op.execute("DROP FUNCTION trace_notify_run_facts()")
    for event in CODE_STATE_EVENTS:
        op.execute(f"DROP TRIGGER notify_code_states_{event.lower()} ON code_states")
    op.execute("DROP FUNCTION trace_notify_code_states()")
