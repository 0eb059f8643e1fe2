"""PostgreSQL: notify listeners of changed code states and run facts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Each worker keeps the code states of the label runs it serves (services/codestates.py), so
that a scan is answered without reading the database. That copy must not go stale, so the
database tells every worker what changes, in commit order and only once committed
(LISTEN/NOTIFY):

* ``trace_code_states``: code states were created or changed (by any worker, host or
  tool). The payload is a JSON array of ``[run_id, serial, scan_count, first_scan_at,
  first_region_code, suspicious_reason]`` (the time as microseconds since 1970 UTC), split
  into several notifications of at most ~7,000 bytes (payloads must stay under 8,000).
  Statement-level triggers with transition tables: one call per statement (the scan log
  writes a flush's states in one statement), not per row.
* ``trace_run_facts``: something else a verdict reads changed. ``run:<id>`` for a label run
  or its void ranges, ``batch:<id>`` for a batch, its recalls, events or attachments (what
  the public page shows), ``all`` for a TRUNCATE of any of them and for deleted code
  states. Row-level triggers: these writes are rare next to scans, and PostgreSQL folds
  identical notifications within a transaction.
* ``trace_state_ping`` carries no trigger: workers notify themselves on it to check that
  notifications still arrive.

SQLite has no listeners and gets nothing.
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
#: Tables whose changes alter a verdict's run facts, with what the notification names.
RUN_FACT_TABLES = (
    ("label_runs", "run", "id"),
    ("label_voids", "run", "run_id"),
    ("batches", "batch", "id"),
    ("recalls", "batch", "batch_id"),
    ("trace_events", "batch", "batch_id"),
    ("attachments", "batch", "batch_id"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL lock_timeout = '5s'")  # as in 0003: never queue behind analytics
    op.execute(
        """
        CREATE FUNCTION trace_notify_code_states() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('trace_code_states', '[' || string_agg(item, ',') || ']')
            FROM (
                SELECT item, sum(octet_length(item) + 1) OVER (ORDER BY n) / 7000 AS part
                FROM (
                    SELECT row_number() OVER () AS n, json_build_array(
                        run_id, serial, scan_count,
                        (extract(epoch FROM first_scan_at) * 1000000)::bigint,
                        first_region_code, suspicious_reason)::text AS item
                    FROM changed
                ) AS items
            ) AS parts
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
            -- TG_ARGV: what to name (run, batch or all) and the row's column holding its id
            IF TG_LEVEL = 'STATEMENT' THEN
                PERFORM pg_notify('trace_run_facts', 'all');
                RETURN NULL;
            END IF;
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                PERFORM pg_notify('trace_run_facts',
                                  TG_ARGV[0] || ':' || (to_jsonb(OLD) ->> TG_ARGV[1]));
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                PERFORM pg_notify('trace_run_facts',
                                  TG_ARGV[0] || ':' || (to_jsonb(NEW) ->> TG_ARGV[1]));
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER notify_code_states_reset AFTER DELETE OR TRUNCATE ON code_states "
        "FOR EACH STATEMENT EXECUTE FUNCTION trace_notify_run_facts('all', '')"
    )
    for table, kind, column in RUN_FACT_TABLES:
        op.execute(
            f"CREATE TRIGGER notify_run_facts AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION trace_notify_run_facts('{kind}', '{column}')"
        )
        op.execute(
            f"CREATE TRIGGER notify_run_facts_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION trace_notify_run_facts('all', '')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, _kind, _column in RUN_FACT_TABLES:
        op.execute(f"DROP TRIGGER notify_run_facts_truncate ON {table}")
        op.execute(f"DROP TRIGGER notify_run_facts ON {table}")
    op.execute("DROP TRIGGER notify_code_states_reset ON code_states")
    for event in CODE_STATE_EVENTS:
        op.execute(f"DROP TRIGGER notify_code_states_{event.lower()} ON code_states")
    op.execute("DROP FUNCTION trace_notify_run_facts()")
    op.execute("DROP FUNCTION trace_notify_code_states()")
