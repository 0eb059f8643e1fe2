"""The verdict query on PostgreSQL's fast path (services.resolve.read_facts through libpq
on the verdict engine's autocommit pool) against the same query through SQLAlchemy Core
as the oracle, and its recovery from a connection the server has closed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import Engine, text

from tests.conftest import migrated_pg_database, require_postgresql
from tests.web.conftest import World
from trace.models import LabelRun
from trace.models.enums import Role
from trace.services import labels, recalls, resolve
from trace.services.actors import Actor
from trace.services.resolve import read_facts

require_postgresql("the verdict fast path")


@pytest.fixture
def db_url() -> Iterator[str]:
    yield from migrated_pg_database()


def _verdict_engine(app: Flask) -> Engine:
    engine = app.extensions.get("trace.verdict_engine")
    assert isinstance(engine, Engine), "PostgreSQL apps read verdicts on their own pool"
    return engine


@pytest.fixture
def libpq_calls(monkeypatch: pytest.MonkeyPatch) -> list[Engine]:
    """The engines the libpq path ran on, call by call."""
    calls: list[Engine] = []
    real = resolve._read_facts_libpq

    def spy(engine: Engine, run_id: int, serial: int) -> Any:
        calls.append(engine)
        return real(engine, run_id, serial)

    monkeypatch.setattr(resolve, "_read_facts_libpq", spy)
    return calls


def _no_session() -> Any:
    pytest.fail("the fast path opened a session")


def _both(app: Flask, run_id: int, serial: int, libpq_calls: list[Engine]) -> tuple[Any, Any]:
    with app.extensions["trace.sessions"]() as s:
        s.connection()  # a transaction is open: read_facts takes SQLAlchemy Core, the oracle
        oracle = read_facts(s, run_id, serial)
    assert libpq_calls == []
    fast = read_facts(_no_session, run_id, serial, _verdict_engine(app))
    assert libpq_calls == [_verdict_engine(app)]
    libpq_calls.clear()
    return fast, oracle


def test_fast_path_rows_equal_the_core_path(
    app: Flask, client: Any, world: World, libpq_calls: list[Engine]
) -> None:
    admin = Actor(
        user_id=None, role=Role.ENTERPRISE_ADMIN, enterprise_id=world.demo["enterprise_ids"][0]
    )
    with world.session() as s:
        run = s.get(LabelRun, world.citrus_run)
        assert run is not None
        first = run.first_serial
        labels.void_range(s, admin, run.id, first + 5, first + 6, "印坏")
        s.commit()
    for i in (1, 1, 2):  # scanned codes: a code state with a count and a first scan
        assert client.get("/api/v1/resolve/" + world.code(i)).status_code == 200
    world.flush()
    assert libpq_calls == [_verdict_engine(app)] * 3  # the resolve API's reads took it too
    libpq_calls.clear()
    cases = [(world.citrus_run, first + i) for i in (0, 1, 2, 5, 6, 199, 200)]
    cases += [(world.tomato_run, 0), (10**6, 1)]  # serial outside a run; no such run
    for run_id, serial in cases:
        fast, oracle = _both(app, run_id, serial, libpq_calls)
        assert fast == oracle, (run_id, serial)
    fast, _ = _both(app, world.citrus_run, first + 1, libpq_calls)
    assert fast.scan_count == 2 and fast.first_scan_at.tzinfo is not None
    assert _both(app, world.citrus_run, first + 5, libpq_calls)[0].void_reason == "印坏"
    with world.session() as s:
        recalls.open_recall(
            s,
            admin,
            world.demo["batch_id"],
            reason="农残超标",
            level="II",
            public_notice="请停止食用",
        )
        s.commit()
    fast, oracle = _both(app, world.citrus_run, first + 2, libpq_calls)
    assert fast == oracle and fast.batch_status == "recalled" and fast.public_notice == "请停止食用"


def _first_code(app: Flask, world: World) -> tuple[int, int]:
    with app.extensions["trace.sessions"]() as s:
        run = s.get(LabelRun, world.citrus_run)
        assert run is not None
        return run.id, run.first_serial


def test_connections_closed_by_the_server_are_replaced(app: Flask, world: World) -> None:
    """A server restart kills every pooled connection: one read still answers."""
    engine = _verdict_engine(app)
    run_id, serial = _first_code(app, world)
    before = read_facts(_no_session, run_id, serial, engine)
    assert before is not None
    held = [engine.connect() for _ in range(3)]  # three connections in the pool, all used
    pids = [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in held]
    for c in held:
        c.close()
    with app.extensions["trace.engine"].connect() as admin:
        for pid in pids:
            assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    assert read_facts(_no_session, run_id, serial, engine) == before


def test_a_migration_under_running_workers_does_not_break_the_read(
    app: Flask, world: World
) -> None:
    """Changing a column the prepared plan returns makes PostgreSQL refuse the plan
    ("cached plan must not change result type"): the read prepares it again."""
    engine = _verdict_engine(app)
    run_id, serial = _first_code(app, world)
    before = read_facts(_no_session, run_id, serial, engine)
    with app.extensions["trace.engine"].begin() as conn:
        conn.execute(text("ALTER TABLE label_voids ALTER COLUMN reason TYPE varchar(400)"))
    assert read_facts(_no_session, run_id, serial, engine) == before


def test_other_errors_keep_their_class_and_the_connection(app: Flask, world: World) -> None:
    """An error of the query itself (here a run id beyond PostgreSQL's integer) is raised
    as psycopg's class for its SQLSTATE, not retried, and the connection stays pooled."""
    engine = _verdict_engine(app)
    run_id, serial = _first_code(app, world)
    before = read_facts(_no_session, run_id, serial, engine)
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        read_facts(_no_session, 2**40, serial, engine)
    assert read_facts(_no_session, run_id, serial, engine) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid


def test_a_changed_column_type_is_decoded_by_its_new_loader(app: Flask, world: World) -> None:
    """Row decoders are kept per statement and connection; after a migration changes what a
    column returns, the re-prepared statement decodes it with the new type's loader."""
    engine = _verdict_engine(app)
    run_id, serial = _first_code(app, world)
    assert isinstance(read_facts(_no_session, run_id, serial, engine).first_serial, int)
    with app.extensions["trace.engine"].begin() as conn:
        conn.execute(text("ALTER TABLE label_runs ALTER COLUMN first_serial TYPE text"))
    fast = read_facts(_no_session, run_id, serial, engine)
    with app.extensions["trace.sessions"]() as s:
        oracle = read_facts(s, run_id, serial)
    assert fast == oracle and fast.first_serial == str(serial)
