"""The verdict query on PostgreSQL's fast path (services.resolve.read_facts through libpq
on the verdict engine's autocommit pool) against the same query through SQLAlchemy Core
as the oracle, and its recovery from a connection the server has closed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, text

from tests.conftest import migrated_pg_database, require_postgresql
from tests.web.conftest import World
from trace.models import LabelRun
from trace.models.enums import Role
from trace.services import labels, recalls
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


def _both(app: Flask, run_id: int, serial: int) -> tuple[Any, Any]:
    with app.extensions["trace.sessions"]() as s:
        oracle = read_facts(s, run_id, serial)  # session in a transaction: SQLAlchemy Core
    fast = read_facts(lambda: pytest.fail("the fast path opened a session"), run_id, serial,
                      _verdict_engine(app))  # fmt: skip
    return fast, oracle


def test_fast_path_rows_equal_the_core_path(app: Flask, client: Any, world: World) -> None:
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
    cases = [(world.citrus_run, first + i) for i in (0, 1, 2, 5, 6, 199, 200)]
    cases += [(world.tomato_run, 0), (10**6, 1)]  # serial outside a run; no such run
    for run_id, serial in cases:
        fast, oracle = _both(app, run_id, serial)
        assert fast == oracle, (run_id, serial)
    fast, _ = _both(app, world.citrus_run, first + 1)
    assert fast.scan_count == 2 and fast.first_scan_at.tzinfo is not None
    assert _both(app, world.citrus_run, first + 5)[0].void_reason == "印坏"
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
    fast, oracle = _both(app, world.citrus_run, first + 2)
    assert fast == oracle and fast.batch_status == "recalled" and fast.public_notice == "请停止食用"


def test_a_connection_closed_by_the_server_is_replaced(app: Flask, world: World) -> None:
    engine = _verdict_engine(app)
    code_run, serial = world.citrus_run, 0
    with app.extensions["trace.sessions"]() as s:
        run = s.get(LabelRun, code_run)
        assert run is not None
        serial = run.first_serial
    before = read_facts(lambda: pytest.fail("no session"), code_run, serial, engine)
    assert before is not None
    with engine.connect() as conn:  # the pooled connection the read used
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with app.extensions["trace.engine"].connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    after = read_facts(lambda: pytest.fail("no session"), code_run, serial, engine)
    assert after == before
