"""The scan log's write-behind buffer (services/scanbuffer.py) on PostgreSQL: counts and
rules include queued scans, one flush writes everything, failures are counted, a graceful
close loses nothing, threads and two workers' buffers agree with the database and do not
deadlock. Runs only with TRACE_TEST_DATABASE_URL (the buffer needs PostgreSQL)."""

from __future__ import annotations

import logging
import os
import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select, text

from tests.conftest import migrated_pg_database, require_postgresql
from tests.web.conftest import World
from trace import pq
from trace.app import close_app, create_app
from trace.config import Config
from trace.models import CodeState, ScanEvent
from trace.services import scanbuffer, scanlog
from trace.services.scanbuffer import ScanBuffer

HUANING_KIOSK = "kiosk-huaning"
HEBEI = "130102"


require_postgresql("the scan buffer")


@pytest.fixture
def db_url() -> Iterator[str]:
    """PostgreSQL only (conftest's db_url would add SQLite, which writes in the request)."""
    yield from migrated_pg_database()


@pytest.fixture
def config(config: Config) -> Config:
    # A long interval: nothing is written behind the test's back unless it flushes.
    return config.with_overrides(
        resolve_rate_limit="off",
        suspicious_scan_count=5,
        scan_log_buffer="auto",
        scan_log_flush_ms=60_000,
    )


def _buffer(app: Flask) -> ScanBuffer:
    buffer = app.extensions.get("trace.scan_buffer")
    assert isinstance(buffer, ScanBuffer), "PostgreSQL apps buffer the scan log by default"
    return buffer


def _in_db(app: Flask) -> tuple[int, int]:
    """(scan events, sum of code-state counts) as the database has them, no flush."""
    engine: Engine = app.extensions["trace.engine"]
    with engine.connect() as conn:
        events = conn.execute(select(func.count()).select_from(ScanEvent)).scalar_one()
        counted = conn.execute(select(func.coalesce(func.sum(CodeState.scan_count), 0)))
        return int(events), int(counted.scalar_one())


def _api(client: FlaskClient, code: str) -> dict[str, Any]:
    r = client.get("/api/v1/resolve/" + code)
    assert r.status_code == 200
    return r.json  # type: ignore[no-any-return]


def test_counts_first_scan_and_suspicion_include_queued_scans(
    app: Flask, client: FlaskClient, world: World
) -> None:
    code = world.code(3)
    first = _api(client, code)
    assert first["scan"]["count"] == 1 and first["scan"]["first_scan"] is True
    buffer = _buffer(app)
    assert _in_db(app) == (0, 0) and len(buffer) == 1  # queued, not written
    second = _api(client, code)
    assert second["scan"]["count"] == 2 and second["scan"]["first_scan"] is False
    assert second["scan"]["first_scan_at"] == first["scan"]["first_scan_at"]
    assert buffer.flush() == 2 and _in_db(app) == (2, 2)
    # Database and queue add up across a flush.
    verdicts = [_api(client, code) for _ in range(2)]
    assert [v["scan"]["count"] for v in verdicts] == [3, 4]
    buffer.flush()
    fifth, sixth = _api(client, code), _api(client, code)
    assert (fifth["verdict"], fifth["scan"]["count"]) == ("genuine", 5)
    assert (sixth["verdict"], sixth["suspicious_reason"]) == ("suspicious", "count")
    assert sixth["scan"]["first_scan_at"] == first["scan"]["first_scan_at"]
    # Sticky while still queued, then in the database.
    assert _api(client, code)["suspicious_reason"] == "count"
    assert _in_db(app) == (4, 4)
    buffer.flush()
    state = world.state(world.citrus_run, world.scans()[0].serial or 0)
    assert state is not None and state.scan_count == 7 and state.suspicious_reason == "count"
    assert state.first_scan_at is not None
    assert state.first_scan_at.isoformat() == first["scan"]["first_scan_at"]
    assert [s.verdict for s in world.scans()] == ["genuine"] * 5 + ["suspicious"] * 2


def test_one_flush_is_one_prepared_statement(
    app: Flask, client: FlaskClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        _api(client, world.code(i))
    _api(client, "A" + "B" * 26)  # counterfeit: logged without a code state
    seen: list[pq.Statement] = []
    real = pq.run

    def _record(engine: Engine, statement: pq.Statement, args: Any, **kw: Any) -> Any:
        seen.append(statement)
        return real(engine, statement, args, **kw)

    monkeypatch.setattr(pq, "run", _record)
    assert _buffer(app).flush() == 6
    assert seen == [scanbuffer._FLUSH]
    assert "INSERT INTO scan_events" in seen[0].sql and "INSERT INTO code_states" in seen[0].sql
    assert _in_db(app) == (6, 5)


def test_distance_rule_sees_a_queued_kiosk_scan(client: FlaskClient, world: World) -> None:
    _, hebei = world.device("kiosk", HEBEI, "石家庄 kiosk")
    huaning = world.demo["tokens"][HUANING_KIOSK]
    code = world.code(40)

    def kiosk(token: str) -> dict[str, Any]:
        r = client.post(
            "/api/v1/scans", json={"code": code}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200, r.json
        return r.json  # type: ignore[no-any-return]

    first = kiosk(huaning)
    assert first["verdict"] == "genuine" and isinstance(first["scan_id"], int)
    flagged = kiosk(hebei)  # the Huaning scan is still queued
    assert flagged["verdict"] == "suspicious" and flagged["suspicious_reason"] == "distance"
    scans = world.scans()  # flushes
    assert [s.id for s in scans] == [first["scan_id"], flagged["scan_id"]]
    state = world.state(world.citrus_run, scans[0].serial or 0)
    assert state is not None and state.suspicious_reason == "distance"
    assert (state.first_region_code, state.last_region_code) == ("530424", HEBEI)


def test_location_post_back_finds_a_queued_scan(
    app: Flask, client: FlaskClient, world: World
) -> None:
    code = world.code(50)
    page = client.get("/q/" + code).get_data(as_text=True)
    assert len(_buffer(app)) == 1
    token = page.split('data-t="', 1)[1].split('"', 1)[0]
    r = client.post(f"/q/{code}/location", json={"t": token, "lat": 24.19, "lon": 102.93})
    assert r.status_code == 200 and r.json["region_code"] == "530424"
    scan = world.scans()[-1]
    assert scan.region_code == "530424" and scan.latitude == 24.19
    state = world.state(world.citrus_run, scan.serial or 0)
    assert state is not None and state.first_region_code == "530424"


_REFUSE_THIRD_SCAN = """
CREATE OR REPLACE FUNCTION refuse_third_scan() RETURNS trigger AS $$
BEGIN
    IF (SELECT count(*) FROM scan_events) >= 2 THEN
        RAISE EXCEPTION 'disk full';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_scan BEFORE INSERT ON scan_events
    FOR EACH ROW EXECUTE FUNCTION refuse_third_scan();
"""


def test_failed_flush_is_counted_and_logged_and_answers_are_unaffected(
    app: Flask, client: FlaskClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    code = world.code(5)
    engine: Engine = app.extensions["trace.engine"]
    before = scanlog.failure_count()
    pages = [_api(client, code), client.get("/q/" + code), _api(client, code)]
    assert pages[0]["scan"]["count"] == 1 and pages[2]["scan"]["count"] == 3
    # A real failure inside the flush's statement, after some rows went in: a trigger
    # refuses the third scan, so the whole flush (one transaction) must undo.
    with engine.begin() as conn:
        conn.execute(text(_REFUSE_THIRD_SCAN))
    try:
        with caplog.at_level(logging.ERROR, logger="trace.services.scanlog"):
            assert _buffer(app).flush() == 0
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_scan ON scan_events"))
    assert scanlog.failure_count() == before + 3  # every lost scan counts
    assert client.get("/api/v1/scans/log-health").json == {
        "scan_log_failures": before + 3,
        "scan_log_queued": 0,
    }
    assert sum("scan log write failed" in r.getMessage() for r in caplog.records) == 1
    assert _in_db(app) == (0, 0)
    # The lost scans no longer count; the log works again.
    assert _api(client, code)["scan"]["count"] == 1
    assert _buffer(app).flush() == 1 and _in_db(app) == (1, 1)


def test_a_flush_after_a_server_restart_loses_nothing(
    app: Flask, client: FlaskClient, world: World
) -> None:
    """Every pooled connection dead (a server restart): nothing was written, so the flush
    tries once more on a fresh connection instead of dropping the scans."""
    for i in range(3):
        _api(client, world.code(60 + i))
    engine: Engine = app.extensions["trace.verdict_engine"]
    held = [engine.connect() for _ in range(2)]
    pids = [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in held]
    for c in held:
        c.close()
    with app.extensions["trace.engine"].connect() as admin:
        for pid in pids:
            admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    before = scanlog.failure_count()
    assert _buffer(app).flush() == 3
    assert scanlog.failure_count() == before and _in_db(app) == (3, 3)


def test_full_queue_drops_and_counts(app: Flask, world: World) -> None:
    buffer = ScanBuffer(app.extensions["trace.engine"], interval=60, cap=3)
    before = scanlog.failure_count()
    ctx = scanlog.ScanContext(channel="api")
    facts = scanlog.ScanFacts(verdict="counterfeit")
    now = datetime.now(UTC)
    records = [buffer.add(facts, ctx, now) for _ in range(5)]
    assert [r is not None for r in records] == [True, True, True, False, False]
    assert buffer.dropped == 2 and scanlog.failure_count() == before + 2
    buffer.close()
    assert _in_db(app) == (3, 0)


def test_close_writes_what_is_queued(app: Flask, client: FlaskClient, world: World) -> None:
    for i in range(4):
        _api(client, world.code(i))
    client.get("/q/" + world.code(0))
    assert _in_db(app) == (0, 0)
    scanbuffer.close_all()  # what atexit and gunicorn's worker_exit hook run
    assert _in_db(app) == (5, 5)
    state = world.state(world.citrus_run, world.scans()[0].serial or 0)
    assert state is not None and state.scan_count == 2


def test_close_app_stops_the_thread_before_the_pool_goes(
    config: Config, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What test fixtures and the analytics bench run before dropping a schema: a buffer
    thread still flushing then held a lock the DROP waited on (a deadlock seen in CI)."""
    other = create_app(config.with_overrides(scan_log_flush_ms=5))
    try:
        client = other.test_client()
        for i in range(3):
            _api(client, world.code(i))
        buffer = _buffer(other)
        thread = buffer._thread
        assert thread is not None and thread.is_alive()
        order: list[str] = []
        engines = {"engine": other.extensions["trace.engine"]}
        engines["verdict engine"] = other.extensions["trace.verdict_engine"]
        for name, eng in engines.items():
            dispose = eng.dispose
            monkeypatch.setattr(eng, "dispose", lambda d=dispose, n=name: (order.append(n), d())[1])
        close = buffer.close
        monkeypatch.setattr(
            buffer,
            "close",
            lambda: (close(), order.append(f"buffer, thread alive: {thread.is_alive()}"))[0],
        )
        close_app(other)
        assert order == ["buffer, thread alive: False", "verdict engine", "engine"]
        assert "trace.scan_buffer" not in other.extensions
        assert _in_db(other) == (3, 3)  # written, and the engine still opens new connections
    finally:
        close_app(other)


def test_threads_agree_with_the_database(app: Flask, world: World) -> None:
    codes = [world.code(i) for i in range(12)]
    asked: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []
    buffer = ScanBuffer(app.extensions["trace.engine"], interval=0.003)
    app.extensions["trace.scan_buffer"] = buffer  # a real interval: flushes race requests
    rng = random.Random(7)
    plans = [[rng.choice(codes) for _ in range(40)] for _ in range(6)]

    def run(plan: list[str]) -> None:
        client = app.test_client()
        try:
            for code in plan:
                r = client.get("/api/v1/resolve/" + code)
                assert r.status_code == 200
                with lock:
                    asked[code] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    buffer.close()
    total = sum(asked.values())
    assert _in_db(app) == (total, total) == (240, 240)
    with world.session() as s:
        by_serial = select(ScanEvent.serial, func.count()).group_by(ScanEvent.serial)
        counts = {serial: n for serial, n in s.execute(by_serial)}
        states = {st.serial: st.scan_count for st in s.scalars(select(CodeState))}
    assert counts == states
    assert sorted(states.values()) == sorted(asked.values())


def test_two_workers_buffers_do_not_deadlock(app: Flask, world: World) -> None:
    """Two buffers (two gunicorn workers) flushing the same codes in opposite orders."""
    engine: Engine = app.extensions["trace.engine"]
    with engine.connect() as conn:
        run = conn.execute(
            text("SELECT first_serial, enterprise_id, batch_id FROM label_runs WHERE id = :r"),
            {"r": world.citrus_run},
        ).one()
    serials = [run.first_serial + i for i in range(40)]
    buffers = [ScanBuffer(engine, interval=0.002, batch=60) for _ in range(2)]
    before = scanlog.failure_count()
    ctx = scanlog.ScanContext(channel="api")

    def feed(buffer: ScanBuffer, order: list[int]) -> None:
        for _ in range(5):
            for serial in order:
                facts = scanlog.ScanFacts(
                    verdict="genuine",
                    run_id=world.citrus_run,
                    serial=serial,
                    enterprise_id=run.enterprise_id,
                    batch_id=run.batch_id,
                )
                assert buffer.add(facts, ctx, datetime.now(UTC)) is not None

    threads = [
        threading.Thread(target=feed, args=(buffers[0], serials)),
        threading.Thread(target=feed, args=(buffers[1], serials[::-1])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for b in buffers:
        b.close()
    assert scanlog.failure_count() == before  # a deadlock would have failed a flush
    assert _in_db(app) == (400, 400)
    with world.session() as s:
        assert {st.scan_count for st in s.scalars(select(CodeState))} == {10}


def test_a_forked_child_starts_with_an_empty_buffer_of_its_own(app: Flask, world: World) -> None:
    """gunicorn --preload forks workers from a master that may have queued scans: a child
    must neither write nor count its parent's queue (the parent still owns it)."""
    buffer = ScanBuffer(app.extensions["trace.engine"], interval=60)
    facts = scanlog.ScanFacts(verdict="counterfeit")
    assert buffer.add(facts, scanlog.ScanContext(channel="api"), datetime.now(UTC)) is not None
    assert len(buffer) == 1
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 1
        try:
            buffer._check_process()
            code = 0 if len(buffer) == 0 and buffer._thread is not None else 2
            buffer.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(buffer) == 1  # the parent's scan is still queued here
    buffer.close()
    assert _in_db(app) == (1, 0)
