"""Scan-resolution fixtures: the demo world with issued label runs and their codes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.orm import Session

from trace import pq
from trace.config import Config
from trace.crypto.keyring import Keyring
from trace.models import CodeState, Device, LabelRun, ScanEvent
from trace.models.enums import Role
from trace.services import auth, labels
from trace.services.actors import Actor
from trace.services.keys import load_keyring

PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/4G"
)


@pytest.fixture
def config(config: Config) -> Config:
    # Most tests here send many requests from one address; the limit has its own tests.
    return config.with_overrides(resolve_rate_limit="off", suspicious_scan_count=5)


@dataclass
class World:
    app: Flask
    keyring: Keyring
    demo: dict[str, Any]
    citrus_run: int
    tomato_run: int
    first: dict[int, int]

    def code(self, index: int = 0, run: int | None = None) -> str:
        run_id = self.citrus_run if run is None else run
        with self.app.extensions["trace.sessions"]() as s:
            r = s.get(LabelRun, run_id)
            assert r is not None
            return labels.code_of(self.keyring, r, r.first_serial + index)

    def issue(self, batch_id: int, count: int, **kw: Any) -> int:
        with self.app.extensions["trace.sessions"]() as s:
            from trace.models import Batch

            batch = s.get(Batch, batch_id)
            assert batch is not None
            actor = Actor(
                user_id=None, role=Role.ENTERPRISE_ADMIN, enterprise_id=batch.enterprise_id
            )
            req = labels.RunRequest(
                batch_id=batch_id,
                count=count,
                profile="tspl-203dpi-40x30",
                format="tspl",
                level=kw.pop("level", "item"),
                template=kw.pop("template", None),
            )
            run = labels.issue_run(s, actor, self.keyring, req, max_count=100_000, **kw)
            s.commit()
            return run.id

    def flush(self) -> None:
        """Write the app's queued scans (PostgreSQL's write-behind buffer), if any."""
        buffer = self.app.extensions.get("trace.scan_buffer")
        if buffer is not None:
            buffer.flush()

    def session(self) -> Session:
        self.flush()  # what the tests read back is what the log holds
        return self.app.extensions["trace.sessions"]()  # type: ignore[no-any-return]

    def scans(self) -> list[ScanEvent]:
        with self.session() as s:
            return list(s.scalars(select(ScanEvent).order_by(ScanEvent.id)))

    def scan_count(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(ScanEvent)) or 0)

    def state(self, run_id: int, serial: int) -> CodeState | None:
        with self.session() as s:
            return s.get(CodeState, (run_id, serial))

    def device(self, kind: str, region: str, name: str = "test device") -> tuple[int, str]:
        with self.session() as s:
            device = Device(kind=kind, name=name, region_code=region, token_hash="pending")
            s.add(device)
            s.flush()
            token = auth.issue_device_token(s, device)
            s.commit()
            return device.id, token


@pytest.fixture
def world(app: Flask, demo: dict[str, Any]) -> Iterator[World]:
    keyring = load_keyring(app.extensions["trace.config"])
    w = World(app, keyring, demo, 0, 0, {})
    w.citrus_run = w.issue(demo["batch_id"], 200)
    w.tomato_run = w.issue(demo["tomato_batch_id"], 20)
    yield w  # the app fixture's close_app stops the scan buffer before the schema goes


@pytest.fixture
def statements(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every SQL statement the app's engines send while the test runs: through SQLAlchemy,
    and through libpq (trace.pq: the scan log's flush on PostgreSQL; its statement, not
    the BEGIN/COMMIT around it)."""
    seen: list[str] = []
    engines: list[Engine] = [app.extensions["trace.engine"]]
    if "trace.verdict_engine" in app.extensions:  # PostgreSQL: the scan verdict's own pool
        engines.append(app.extensions["trace.verdict_engine"])

    def _record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()))

    real_run = pq.run

    def _run(engine: Engine, statement: pq.Statement, args: Any, **kw: Any) -> Any:
        seen.append(" ".join(statement.sql.split()))
        return real_run(engine, statement, args, **kw)

    monkeypatch.setattr(pq, "run", _run)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", _record)
    yield seen
    for engine in engines:
        event.remove(engine, "before_cursor_execute", _record)


@contextmanager
def scan_inserts_refused(app: Flask) -> Iterator[None]:
    """Every insert into scan_events fails inside the database (a trigger), as a full
    disk would make it: the scan log's real error path, on SQLite and PostgreSQL."""
    engine: Engine = app.extensions["trace.engine"]
    if engine.dialect.name == "postgresql":
        create = [
            "CREATE FUNCTION refuse_scan() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_scan BEFORE INSERT ON scan_events "
            "FOR EACH ROW EXECUTE FUNCTION refuse_scan()",
        ]
        drop = ["DROP TRIGGER refuse_scan ON scan_events", "DROP FUNCTION refuse_scan()"]
    else:
        create = [
            "CREATE TRIGGER refuse_scan BEFORE INSERT ON scan_events "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        ]
        drop = ["DROP TRIGGER refuse_scan"]
    with engine.begin() as conn:
        for sql in create:
            conn.execute(text(sql))
    try:
        yield
    finally:
        with engine.begin() as conn:
            for sql in drop:
                conn.execute(text(sql))
