"""The code-state cache (services/codestates.py) against the verdict read as its oracle: a
code it answers for must read exactly as the database would; anything it cannot vouch for
(run not loaded, notifications lost, triggers missing) must go to the database; and what
other workers, producers and regulators change must reach it."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from tests.conftest import migrated_pg_database, require_postgresql
from tests.web.conftest import World
from trace import pq
from trace.app import close_app, create_app
from trace.config import Config
from trace.models import LabelRun
from trace.models.enums import Role
from trace.services import codestates, labels, recalls, resolve
from trace.services.actors import Actor
from trace.services.codestates import CodeStateCache
from trace.services.resolve import read_facts

require_postgresql("the code-state cache (LISTEN/NOTIFY)")


@pytest.fixture
def db_url() -> Iterator[str]:
    yield from migrated_pg_database()


@pytest.fixture
def config(config: Config) -> Config:
    # A long flush interval: the buffer's thread (which also maintains the cache) stays out
    # of the way; the tests flush and maintain when they mean to.
    return config.with_overrides(scan_log_flush_ms=60_000, code_state_cache="on")


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


def _cache(app: Flask) -> CodeStateCache:
    buffer = app.extensions.get("trace.scan_buffer")
    assert buffer is not None and buffer.state_cache is not None
    return buffer.state_cache  # type: ignore[no-any-return]


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


def _recall(world: World, reason: str, level: str, notice: str) -> None:
    """A regulator recalls the citrus batch (committed)."""
    with world.session() as s:
        recalls.open_recall(
            s,
            _admin(world),
            world.demo["batch_id"],
            reason=reason,
            level=level,
            public_notice=notice,
        )
        s.commit()


def _loaded(app: Flask, client: FlaskClient, world: World, *runs: int) -> CodeStateCache:
    """The app's cache with ``runs`` loaded: a scan of each asks for it, maintain loads."""
    for run in runs:
        _api(client, world.code(0, run))
    cache = _cache(app)
    cache.maintain()  # connects the listener; runs asked for before it are loaded too
    return cache


def _micros(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _eventually(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Notifications arrive asynchronously (within milliseconds): poll for them."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(0.01)


def test_scans_are_answered_without_a_read_and_as_the_read_would(
    app: Flask, client: FlaskClient, world: World, reads: list[tuple[int, int]]
) -> None:
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    with world.session() as s:
        labels.void_range(s, _admin(world), run, first + 5, first + 6, "印坏")
        labels.void_range(s, _admin(world), run, first + 6, first + 9, "重复")
        s.commit()
    for i in (1, 1, 2, 6):
        _api(client, world.code(i))
    for _ in range(6):  # over the suspicious-count limit (5): a sticky suspicion
        _api(client, world.code(3))
    world.flush()
    with app.extensions["trace.engine"].begin() as conn:  # a county, as a kiosk scan leaves
        conn.execute(
            text("UPDATE code_states SET first_region_code = '530423' WHERE serial = :s"),
            {"s": first + 2},
        )
    cache = _cache(app)
    cache.maintain()
    engine = _engine(app)
    # Every serial of the run and around it: the cache answers every code of the run, with
    # the very row the database gives -- counts, first scans, suspicion, voids.
    for serial in range(first - 2, first + 203):
        row = cache.facts(run, serial)
        oracle = read_facts(_no_session, run, serial, engine)
        if row is None:
            assert not first <= serial < first + 200, serial
            continue
        assert row == oracle, serial
    assert cache.facts(run, first + 1).scan_count == 2
    assert cache.facts(run, first + 2).first_region_code == "530423"
    assert cache.facts(run, first + 3).suspicious_reason == "count"
    assert cache.facts(run, first + 6).void_reason == "印坏"  # the lower id, as the query
    assert cache.facts(run, first + 8).void_reason == "重复"
    # End to end: no read, a first scan, then counts from the queue and the cache.
    reads.clear()
    body = _api(client, world.code(50))
    assert body["verdict"] == "genuine" and body["scan"]["count"] == 1
    assert body["scan"]["first_scan"] is True
    first_at = datetime.fromisoformat(body["scan"]["first_scan_at"])
    assert _api(client, world.code(50))["scan"]["count"] == 2  # queued, not written yet
    # The flush counts the code's scans in as it commits, not when the database's
    # notification arrives: in between, they would be neither queued nor counted.
    world.flush()
    kept = cache._runs[run]  # no notification taken since the flush
    assert kept.counts[50] == 2
    assert kept.first_us[50] == _micros(first_at)
    body = _api(client, world.code(50))
    assert body["scan"]["count"] == 3 and body["scan"]["first_scan"] is False
    assert _api(client, world.code(1))["scan"]["count"] == 3
    assert reads == []
    world.flush()
    assert kept.counts[50] == 3 and kept.first_us[50] == _micros(first_at)  # first stays first
    _eventually(
        lambda: cache.facts(run, first + 50) == read_facts(_no_session, run, first + 50, engine),
        "the flush's notification",
    )


def test_a_scan_by_another_worker_reaches_this_one(
    app: Flask, client: FlaskClient, world: World, config: Config
) -> None:
    cache = _loaded(app, client, world, world.citrus_run)
    first = _first_serial(world, world.citrus_run)
    assert cache.facts(world.citrus_run, first + 40).scan_count is None
    other = create_app(config)  # a second gunicorn worker on the same database
    try:
        for count in (1, 2):
            assert _api(other.test_client(), world.code(40))["scan"]["count"] == count
            other.extensions["trace.scan_buffer"].flush()
    finally:
        close_app(other)
    _eventually(
        lambda: cache.facts(world.citrus_run, first + 40).scan_count == 2,
        "the other worker's scans",
    )
    body = _api(client, world.code(40))
    assert body["scan"]["count"] == 3 and body["scan"]["first_scan"] is False


def test_recalls_voids_and_records_reach_the_cache(
    app: Flask, client: FlaskClient, world: World
) -> None:
    cache = _loaded(app, client, world, world.citrus_run)
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    engine = _engine(app)

    def refreshed(serial: int) -> Any:
        _eventually(lambda: cache.facts(run, serial) is None, "the run's facts dropped")
        cache.maintain()  # the next tick loads them again
        row = cache.facts(run, serial)
        assert row is not None and row == read_facts(_no_session, run, serial, engine)
        return row

    assert cache.facts(run, first + 30) is not None
    with world.session() as s:
        labels.void_range(s, _admin(world), run, first + 30, first + 31, "被盗")
        s.commit()
    assert refreshed(first + 30).void_reason == "被盗"
    assert _api(client, world.code(30))["verdict"] == "voided"

    from tests.web.test_scan_rules import add_events

    before = cache.facts(run, first + 60).events_stamp
    add_events(world, world.demo["batch_id"], 1)  # the page must show the new record
    assert refreshed(first + 60).events_stamp != before

    _recall(world, "农残超标", "II", "请停止食用")
    assert refreshed(first + 70).batch_status == "recalled"
    body = _api(client, world.code(70))
    assert body["verdict"] == "recalled" and body["recall"]["notice"] == "请停止食用"


def test_a_change_while_a_run_loads_is_not_lost(
    app: Flask, client: FlaskClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recall committed between the load's read of the run's facts and their install:
    the load must not install what it read (the notification came before them)."""
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    _api(client, world.code(0))  # asks for the run
    real = codestates.resolve.read_facts

    def read_then_recall(*args: Any) -> Any:
        monkeypatch.setattr(codestates.resolve, "read_facts", real)  # this load only
        row = real(*args)
        _recall(world, "抽检不合格", "I", "立即停止销售")
        time.sleep(0.2)  # its notification is on the socket before the load takes it
        return row

    monkeypatch.setattr(codestates.resolve, "read_facts", read_then_recall)
    cache = _cache(app)
    cache.maintain()
    row = cache.facts(run, first + 33)
    assert row is None or row.batch_status == "recalled"
    cache.maintain()  # loads the facts again
    assert cache.facts(run, first + 33) == read_facts(_no_session, run, first + 33, _engine(app))
    assert cache.facts(run, first + 33).batch_status == "recalled"


def test_threads_of_one_worker_count_every_scan_once(app: Flask, world: World) -> None:
    """Requests racing the flushes (a short interval): each scan of a code reads a count
    no other scan of it read, and together they read 1..n -- no scan lost between the
    queue and the cache, none counted twice."""
    cache = _loaded(app, app.test_client(), world, world.citrus_run)
    buffer = app.extensions["trace.scan_buffer"]
    buffer.interval = 0.003  # the thread flushes (and maintains the cache) all the time
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
    assert cache.answered >= 200  # the scans did go through the cache
    buffer.flush()
    first, engine = _first_serial(world, world.citrus_run), _engine(app)
    for serial in range(first + 100, first + 112):  # and it agrees with the database
        _eventually(
            lambda s=serial: (
                cache.facts(world.citrus_run, s)
                == read_facts(_no_session, world.citrus_run, s, engine)
            ),
            f"serial {serial} as the database has it",
        )


def test_a_flush_counts_its_scans_once_whichever_comes_first(
    app: Flask, client: FlaskClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush's own notification may be taken (by any scan) before the flush hands its
    states to the cache: both carry the database's values, so the scans count once."""
    cache = _loaded(app, client, world, world.citrus_run)
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    for _ in range(2):
        _api(client, world.code(60))
    real = cache.apply_written

    def after_the_notification(states: str | None) -> None:
        monkeypatch.setattr(cache, "apply_written", real)  # this flush only
        _eventually(
            lambda: (
                cache.facts(run, first + 60) is not None and int(cache._runs[run].counts[60]) == 2
            ),
            "the flush's notification taken first",
        )
        real(states)

    monkeypatch.setattr(cache, "apply_written", after_the_notification)
    world.flush()
    assert int(cache._runs[run].counts[60]) == 2
    assert _api(client, world.code(60))["scan"]["count"] == 3


def test_large_flushes_and_long_values_arrive_in_several_notifications(
    app: Flask, world: World, config: Config
) -> None:
    """Payloads must stay under 8,000 bytes: the triggers split them; every state of a
    statement arrives, whatever its length."""
    cache = _loaded(app, app.test_client(), world, world.citrus_run)
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    other = create_app(config)  # another worker scans and flushes in one statement
    try:
        client = other.test_client()
        for i in range(150):
            _api(client, world.code(i))
        other.extensions["trace.scan_buffer"].flush()
    finally:
        close_app(other)
    with app.extensions["trace.engine"].begin() as conn:  # ~170 bytes more per state
        conn.execute(
            text("UPDATE code_states SET suspicious_reason = repeat('疑', 40) WHERE run_id = :r"),
            {"r": run},
        )
    engine = _engine(app)
    for serial in range(first, first + 200):
        _eventually(
            lambda s=serial: cache.facts(run, s) == read_facts(_no_session, run, s, engine),
            f"serial {serial}",
        )
    assert cache.facts(run, first + 149).suspicious_reason == "疑" * 40


def test_a_change_to_one_batch_leaves_other_runs_kept(
    app: Flask, client: FlaskClient, world: World
) -> None:
    from tests.web.test_scan_rules import add_events

    cache = _loaded(app, client, world, world.citrus_run, world.tomato_run)
    citrus, tomato = (_first_serial(world, r) for r in (world.citrus_run, world.tomato_run))
    add_events(world, world.demo["tomato_batch_id"], 1)
    _eventually(lambda: cache.facts(world.tomato_run, tomato) is None, "tomato's facts dropped")
    assert cache.facts(world.citrus_run, citrus) is not None  # citrus untouched
    with app.extensions["trace.engine"].begin() as conn:  # a correction deletes states
        conn.execute(text("DELETE FROM code_states WHERE run_id = :r"), {"r": world.citrus_run})
    _eventually(
        lambda: cache.facts(world.citrus_run, citrus) is None and cache._runs == {},
        "everything dropped",
    )


def test_notifications_that_stop_silently_stop_the_cache(
    app: Flask, client: FlaskClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection that stops delivering without an error (a proxy, a half-open socket):
    the cache's own ping does not come back, and it stops answering."""
    cache = _loaded(app, client, world, world.citrus_run)
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    assert cache.facts(run, first + 90) is not None
    cache.PING_EVERY, cache.PING_TIMEOUT = 0.05, 0.5
    assert cache._listener is not None
    pq.command(cache._listener, b"UNLISTEN *")  # still connected, nothing arrives
    time.sleep(0.1)
    cache.maintain()  # pings (no answer comes)
    _eventually(lambda: cache.facts(run, first + 90) is None, "untrusted once overdue")
    with caplog.at_level(logging.WARNING, logger="trace.services.codestates"):
        cache.maintain()
    assert cache._listener is None and cache._runs == {}
    assert "notifications stopped arriving" in caplog.text
    cache.maintain()  # a fresh listener
    cache.maintain()
    assert cache.facts(run, first + 91) is not None


def test_a_busy_thread_is_no_sign_of_lost_notifications(
    app: Flask, client: FlaskClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long load keeps the thread from pinging: the cache stops answering until a ping
    comes back, but drops nothing -- no ping went unanswered."""
    monkeypatch.setattr(CodeStateCache, "PING_EVERY", 0.05)
    monkeypatch.setattr(CodeStateCache, "PING_TIMEOUT", 0.3)
    cache = _loaded(app, client, world, world.citrus_run)
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    cache.maintain()
    time.sleep(0.5)  # busy: nothing sent
    assert cache.facts(run, first + 97) is None  # not trusted meanwhile: the database answers
    cache.maintain()
    assert cache._listener is not None and run in cache._runs
    _eventually(lambda: cache.facts(run, first + 97) is not None, "trusted again")


def test_a_trigger_switched_off_later_stops_the_cache(
    app: Flask, client: FlaskClient, world: World
) -> None:
    cache = _loaded(app, client, world, world.citrus_run)
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    assert cache.facts(run, first + 95) is not None
    with app.extensions["trace.engine"].begin() as conn:
        conn.execute(text("ALTER TABLE code_states DISABLE TRIGGER notify_code_states_update"))
    cache.PING_EVERY = 0.0
    cache.maintain()  # the ping counts the triggers
    assert cache._listener is None and cache.facts(run, first + 95) is None


def test_a_lost_listener_drops_everything_until_it_is_back(
    app: Flask, client: FlaskClient, world: World, reads: list[tuple[int, int]]
) -> None:
    cache = _loaded(app, client, world, world.citrus_run)
    run, first = world.citrus_run, _first_serial(world, world.citrus_run)
    assert cache.facts(run, first + 80) is not None
    listener = cache._listener
    assert listener is not None
    pid = listener.driver_connection.info.backend_pid  # type: ignore[union-attr]
    with app.extensions["trace.engine"].connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    # Whatever was missed while it was gone, nothing kept is trusted any more.
    _eventually(lambda: cache.facts(run, first + 80) is None, "the broken listener noticed")
    assert cache._listener is None and cache._runs == {}
    reads.clear()
    assert _api(client, world.code(80))["scan"]["count"] == 1
    assert reads == [(run, first + 80)]  # the database answered
    cache.maintain()  # reconnects; the scan just made asked for the run again
    assert cache.facts(run, first + 81) is not None
    assert _api(client, world.code(80))["scan"]["count"] == 2  # queued + this one


def test_without_its_triggers_the_cache_stays_off(
    app: Flask, client: FlaskClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with app.extensions["trace.engine"].begin() as conn:
        conn.execute(text("ALTER TABLE recalls DISABLE TRIGGER notify_run_facts"))
    with caplog.at_level(logging.WARNING, logger="trace.services.codestates"):
        cache = _loaded(app, client, world, world.citrus_run)
    assert cache._listener is None
    assert cache.facts(world.citrus_run, _first_serial(world, world.citrus_run) + 90) is None
    assert "14 of its 15 triggers" in caplog.text
    assert _api(client, world.code(90))["scan"]["count"] == 1
