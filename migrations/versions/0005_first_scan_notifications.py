"""PostgreSQL: notify listeners of new code states and of changed run facts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Each worker keeps, per label run it has seen scanned, which of the run's codes have ever
been scanned (services/firstscans.py), so that a code's first scan -- most scans: a shopper
scans a package once -- is answered without reading the database. That knowledge must not
go stale, so the database tells every worker what changes, in commit order and only once
committed (LISTEN/NOTIFY):

* ``trace_code_states``: a code state was created (a code's first scan was written, by any
  worker, host or tool). The payload lists the new rows as ``run_id:serial`` separated by
  commas, at most 200 per notification (NOTIFY payloads must stay under 8,000 bytes).
* ``trace_run_facts``: something a verdict reads besides the code's state changed -- a
  label run (status), a batch (recall status), a void range, a recall, or a batch's events
  or attachments (what the public page shows). No payload: workers drop all they keep of
  run facts and read them again; these writes are rare next to scans.

Statement-level triggers: one notification per statement (and PostgreSQL folds identical
ones within a transaction), not one per row. SQLite has no listeners and gets nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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
            PERFORM pg_notify('trace_code_states', string_agg(run_id || ':' || serial, ','))
            FROM (SELECT run_id, serial, (row_number() OVER ()) / 200 AS part FROM created) AS c
            GROUP BY part;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER notify_code_states AFTER INSERT ON code_states "
        "REFERENCING NEW TABLE AS created "
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
    op.execute("DROP TRIGGER notify_code_states ON code_states")
    op.execute("DROP FUNCTION trace_notify_code_states()")
