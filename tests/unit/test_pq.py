"""trace.pq against a real PostgreSQL: a statement in its own transaction, or inside
BEGIN ... COMMIT with the caller's hook between statement and commit (what the scan
buffer's readers rely on), errors that leave a clean pooled connection, and statements
prepared again after a migration inside a transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, event, text

from tests.conftest import migrated_pg_database, require_postgresql
from trace import pq
from trace.db import make_engine

require_postgresql("trace.pq (libpq)")

INSERT = pq.Statement(b"test_probe_insert", "INSERT INTO pq_probe VALUES ($1) RETURNING n")


@pytest.fixture
def engine() -> Iterator[Engine]:
    for url in migrated_pg_database():
        eng = make_engine(url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None)
        with eng.connect() as conn:
            conn.execute(text("CREATE TABLE pq_probe (n integer CHECK (n > 0))"))
        try:
            yield eng
        finally:
            eng.dispose()


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM pq_probe")).scalar_one())


def _backend(engine: Engine) -> tuple[int, TransactionStatus]:
    """The server process and libpq's transaction status of the connection the next
    pq.run would use (a kept one first, see pq._take)."""
    raw = pq._take(engine)
    try:
        pgconn = raw.driver_connection.pgconn  # type: ignore[union-attr]
        return int(pgconn.backend_pid), TransactionStatus(pgconn.transaction_status)
    finally:
        pq._keep(engine, raw)


def _insert_locks(engine: Engine) -> int:
    """Transactions holding an insert's lock on pq_probe: one between INSERT and COMMIT."""
    with engine.connect() as conn:
        sql = (
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'pq_probe' AND l.mode = 'RowExclusiveLock'"
        )
        return int(conn.execute(text(sql)).scalar_one())


def test_hook_runs_after_the_statement_and_before_the_commit(engine: Engine) -> None:
    seen: list[tuple[int, int]] = []
    rows = pq.run(
        engine,
        INSERT,
        [b"7"],
        before_commit=lambda: seen.append((_insert_locks(engine), _count(engine))),
    )
    assert rows == [(7,)]
    assert seen == [(1, 0)]  # inserted and not committed when the hook ran
    assert _insert_locks(engine) == 0
    assert _count(engine) == 1
    assert pq.run(engine, INSERT, [b"8"]) == [(8,)] and _count(engine) == 2  # no hook


def test_a_failed_statement_leaves_no_transaction_and_keeps_the_connection(
    engine: Engine,
) -> None:
    pid, _ = _backend(engine)
    hooked: list[bool] = []
    for hook in (lambda: hooked.append(True), None):
        with pytest.raises(psycopg.errors.CheckViolation):
            pq.run(engine, INSERT, [b"-1"], before_commit=hook)
    assert hooked == []  # no commit was attempted
    assert _backend(engine) == (pid, TransactionStatus.IDLE)  # same connection, no transaction
    assert pq.run(engine, INSERT, [b"3"], before_commit=lambda: None) == [(3,)]
    assert _count(engine) == 1


def test_statement_prepared_again_after_a_migration_inside_a_transaction(
    engine: Engine,
) -> None:
    assert pq.run(engine, INSERT, [b"1"], before_commit=lambda: None) == [(1,)]
    with engine.connect() as conn:  # the prepared plan's result type changes
        conn.execute(
            text("ALTER TABLE pq_probe DROP CONSTRAINT pq_probe_n_check, ALTER n TYPE text")
        )
    assert pq.run(engine, INSERT, [b"2"], before_commit=lambda: None) == [("2",)]
    assert _count(engine) == 2


_FAIL_AT_COMMIT = """
CREATE FUNCTION pq_probe_refuse() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'refused at commit'; END $$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER pq_probe_at_commit AFTER INSERT ON pq_probe
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pq_probe_refuse();
"""


def test_a_failed_commit_raises_and_returns_an_idle_connection(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text(_FAIL_AT_COMMIT))
    pid, _ = _backend(engine)
    hooked: list[bool] = []
    with pytest.raises(psycopg.errors.RaiseException, match="refused at commit"):
        pq.run(engine, INSERT, [b"5"], before_commit=lambda: hooked.append(True))
    assert hooked == [True]  # the statement succeeded; the commit failed
    assert _backend(engine) == (pid, TransactionStatus.IDLE)
    assert _count(engine) == 0


def test_a_connection_lost_at_commit_is_raised_as_such_and_replaced(engine: Engine) -> None:
    pid, _ = _backend(engine)

    def kill_the_connection() -> None:
        with engine.connect() as other:  # a second pooled connection, not the busy one
            other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})

    with pytest.raises(pq.ConnectionLost):
        pq.run(engine, INSERT, [b"6"], before_commit=kill_the_connection)
    assert _count(engine) == 0
    new_pid, status = _backend(engine)
    assert new_pid != pid and status == TransactionStatus.IDLE
    assert pq.run(engine, INSERT, [b"6"], before_commit=lambda: None) == [(6,)]


_PID = pq.Statement(b"pq_probe_pid", "SELECT pg_backend_pid()")


def test_statements_reuse_a_kept_connection_and_dispose_gives_it_back(engine: Engine) -> None:
    pool = engine.pool
    first = pq.run(engine, _PID, [])
    checkouts: list[object] = []

    def checkout(*args: object) -> None:
        checkouts.append(args)

    event.listen(engine, "checkout", checkout)
    try:
        assert [pq.run(engine, _PID, []) for _ in range(3)] == [first] * 3
    finally:
        event.remove(engine, "checkout", checkout)
    assert checkouts == []  # no pool checkout per statement
    assert pool.checkedout() == 1  # the kept one
    (kept,) = pq._kept[engine]
    driver: psycopg.Connection[Any] = kept.driver_connection  # type: ignore[assignment]
    engine.dispose()  # gives it back to the disposed pool, which closes it
    assert driver.closed and engine not in pq._kept
    assert pq.run(engine, _PID, []) != first  # a fresh connection from the new pool
