"""The first-scan index (services/firstscans.py) against the verdict read as its oracle: a
code it answers for must read exactly as the database would; anything it cannot vouch for
(scanned before, run not loaded, notifications lost, triggers missing) must go to the
database; and what other workers, producers and regulators change must reach it."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from tests.conftest import migrated_pg_database, require_postgresql
from tests.web.conftest import World
from trace.app import close_app, create_app
from trace.config import Config
from trace.models import LabelRun
from trace.models.enums import Role
from trace.services import labels, recalls, resolve
from trace.services.actors import Actor
from trace.services.firstscans import FirstScanIndex
from trace.services.resolve import read_facts

require_postgresql("the first-scan index (LISTEN/NOTIFY)")


@pytest.fixture
def db_url() -> Iterator[str]:
    yield from migrated_pg_database()


@pytest.fixture
def config(config: Config) -> Config:
    # A long flush interval: the buffer's thread (which also maintains the index) stays out
    # of the way; the tests flush and maintain when they mean to.
    return config.with_overrides(scan_log_flush_ms=60_000, first_scan_index="on")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(run, serial) of every verdict read sent to the database."""
    seen: list[tuple[int, int]] = []
    real = resolve._read_facts_libpq

    def spy(engine: Engine, run_id: int, serial: int) -> Any:
        seen.append((run_id, serial))
        return real(engine, run_id, serial)

    monkeypatch.setattr(resolve, "_read_facts_libpq", spy)
    return seen


def _index(app: Flask) -> FirstScanIndex:
    buffer = app.extensions.get("trace.scan_buffer")
    assert buffer is not None and buffer.first_scans is not None
    return buffer.first_scans  # type: ignore[no-any-return]


def _engine(app: Flask) -> Engine:
    return app.extensions["trace.verdict_engine"]  # type: ignore[no-any-return]


def _no_session() -> Any:
    pytest.fail("opened a session")


def _api(client: FlaskClient, code: str) -> dict[str, Any]:
    r = client.get("/api/v1/resolve/" + code)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json  # type: ignore[no-any-return]


def _first_serial(world: World, run_id: int) -> int:
    with world.session() as s:
        run = s.get(LabelRun, run_id)
        assert run is not None
        return run.first_serial


def _admin(world: World) -> Actor:
    return Actor(
        user_id=None, role=Role.ENTERPRISE_ADMIN, enterprise_id=world.demo["enterprise_ids"][0]
    )


def _loaded(app: Flask, client: FlaskClient, world: World, *runs: int) -> FirstScanIndex:
    """The app's index with ``runs`` loaded: a scan of each asks for it, maintain loads."""
    for run in runs:
        _api(client, world.code(0, run))
    index = _index(app)
    index.maintain()  # connects the listener; runs asked for before it are loaded too
    return index


def _eventually(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Notifications arrive asynchronously (within milliseconds): poll for them."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(0.01)


def test_a_first_scan_is_answered_without_a_read_and_as_the_read_would(
    app: Flask, client: FlaskClient, world: World, reads: list[tuple[int, int]]
) -> None:
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    with world.session() as s:
        labels.void_range(s, _admin(world), run, first + 5, first + 6, "印坏")
        labels.void_range(s, _admin(world), run, first + 6, first + 9, "重复")
        s.commit()
    for i in (1, 1, 2):
        _api(client, world.code(i))
    world.flush()
    index = _index(app)
    index.maintain()
    engine = _engine(app)
    # Every serial of the run and around it: the index answers only codes never scanned,
    # and then with the very row the database gives.
    answered = 0
    for serial in range(first - 2, first + 203):
        row = index.facts(run, serial)
        oracle = read_facts(_no_session, run, serial, engine)
        if row is None:
            assert serial in (first + 1, first + 2) or not first <= serial < first + 200
            continue
        answered += 1
        assert row == oracle, serial
    assert answered == 198
    assert index.facts(run, first + 6).void_reason == "印坏"  # the lower id, as the query
    assert index.facts(run, first + 8).void_reason == "重复"
    # End to end: a fresh code reads nothing and is a first scan.
    reads.clear()
    body = _api(client, world.code(50))
    assert reads == []
    assert body["verdict"] == "genuine" and body["scan"]["count"] == 1
    assert body["scan"]["first_scan"] is True
    # Scanned again before any flush: the queued scan counts, as on the read path.
    assert _api(client, world.code(50))["scan"]["count"] == 2
    assert reads == []
    # The flush marks the code scanned as it commits, not when the database's notification
    # arrives: in between, the code would be neither queued nor marked.
    world.flush()
    assert index._runs[run].scanned[50] == 1  # no notification taken since the flush
    # From now on the database answers: count 3.
    assert _api(client, world.code(50))["scan"]["count"] == 3
    assert reads == [(run, first + 50)]


def test_a_scan_by_another_worker_reaches_this_one(
    app: Flask, client: FlaskClient, world: World, config: Config
) -> None:
    index = _loaded(app, client, world, world.citrus_run)
    first = _first_serial(world, world.citrus_run)
    assert index.facts(world.citrus_run, first + 40) is not None
    other = create_app(config)  # a second gunicorn worker on the same database
    try:
        assert _api(other.test_client(), world.code(40))["scan"]["count"] == 1
        other.extensions["trace.scan_buffer"].flush()
    finally:
        close_app(other)
    _eventually(
        lambda: index.facts(world.citrus_run, first + 40) is None, "the other worker's scan"
    )
    body = _api(client, world.code(40))
    assert body["scan"]["count"] == 2 and body["scan"]["first_scan"] is False


def test_recalls_voids_and_records_reach_the_index(
    app: Flask, client: FlaskClient, world: World
) -> None:
    index = _loaded(app, client, world, world.citrus_run)
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    engine = _engine(app)

    def refreshed(serial: int) -> Any:
        _eventually(lambda: index.facts(run, serial) is None, "the run's facts dropped")
        index.maintain()  # the next tick loads them again
        row = index.facts(run, serial)
        assert row is not None and row == read_facts(_no_session, run, serial, engine)
        return row

    assert index.facts(run, first + 30) is not None
    with world.session() as s:
        labels.void_range(s, _admin(world), run, first + 30, first + 31, "被盗")
        s.commit()
    assert refreshed(first + 30).void_reason == "被盗"
    assert _api(client, world.code(30))["verdict"] == "voided"

    from tests.web.test_scan_rules import add_events

    before = index.facts(run, first + 60).events_stamp
    add_events(world, world.demo["batch_id"], 1)  # the page must show the new record
    assert refreshed(first + 60).events_stamp != before

    with world.session() as s:
        recalls.open_recall(
            s,
            _admin(world),
            world.demo["batch_id"],
            reason="农残超标",
            level="II",
            public_notice="请停止食用",
        )
        s.commit()
    assert refreshed(first + 70).batch_status == "recalled"
    body = _api(client, world.code(70))
    assert body["verdict"] == "recalled" and body["recall"]["notice"] == "请停止食用"


def test_threads_of_one_worker_count_every_scan_once(app: Flask, world: World) -> None:
    """Requests racing the flushes (a short interval): each scan of a code reads a count
    no other scan of it read, and together they read 1..n -- no scan lost between the
    queue and the index, none counted twice."""
    index = _loaded(app, app.test_client(), world, world.citrus_run)
    buffer = app.extensions["trace.scan_buffer"]
    buffer.interval = 0.003  # the thread flushes (and maintains the index) all the time
    buffer._wake.set()
    codes = [world.code(i) for i in range(100, 112)]
    rng = random.Random(11)
    plans = [[rng.choice(codes) for _ in range(40)] for _ in range(6)]
    seen: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(plan: list[str]) -> None:
        client = app.test_client()
        try:
            for code in plan:
                count = _api(client, code)["scan"]["count"]
                with lock:
                    seen[code].append(count)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for code, counts in seen.items():
        assert sorted(counts) == list(range(1, len(counts) + 1)), (code, counts)
    assert index.answered >= len(codes) // 2  # first scans did go through the index


def test_a_lost_listener_drops_everything_until_it_is_back(
    app: Flask, client: FlaskClient, world: World, reads: list[tuple[int, int]]
) -> None:
    index = _loaded(app, client, world, world.citrus_run)
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    assert index.facts(run, first + 80) is not None
    listener = index._listener
    assert listener is not None
    pid = listener.driver_connection.info.backend_pid  # type: ignore[union-attr]
    with app.extensions["trace.engine"].connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    # Whatever was missed while it was gone, nothing kept is trusted any more.
    _eventually(lambda: index.facts(run, first + 80) is None, "the broken listener noticed")
    assert index._listener is None and index._runs == {}
    reads.clear()
    assert _api(client, world.code(80))["scan"]["count"] == 1
    assert reads == [(run, first + 80)]  # the database answered
    index.maintain()  # reconnects; the scan just made asked for the run again
    assert index.facts(run, first + 81) is not None
    assert _api(client, world.code(80))["scan"]["count"] == 2  # queued + this one


def test_without_its_triggers_the_index_stays_off(
    app: Flask, client: FlaskClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with app.extensions["trace.engine"].begin() as conn:
        conn.execute(text("ALTER TABLE recalls DISABLE TRIGGER notify_run_facts"))
    with caplog.at_level(logging.WARNING, logger="trace.services.firstscans"):
        index = _loaded(app, client, world, world.citrus_run)
    assert index._listener is None
    assert index.facts(world.citrus_run, _first_serial(world, world.citrus_run) + 90) is None
    assert "6 of its 7 triggers" in caplog.text
    assert _api(client, world.code(90))["scan"]["count"] == 1
