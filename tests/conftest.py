"""Fixtures: an app on a real database built by running the migrations.

Every test runs on SQLite; with TRACE_TEST_DATABASE_URL set (CI sets it) the `db_url`
fixture is parametrised so database tests run on PostgreSQL too.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from trace.app import close_app, create_app
from trace.cli.db import upgrade
from trace.config import Config
from trace.db import make_engine
from trace.services import auth as auth_service

PG_URL = os.environ.get("TRACE_TEST_DATABASE_URL")
IN_CI = os.environ.get("CI") == "true"
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])

TEST_KEYS = "0:000102030405060708090a0b0c0d0e0f,master:" + "11" * 32


def _database_url(name: str) -> str:
    """TRACE_TEST_DATABASE_URL with its database replaced by ``name``."""
    assert PG_URL
    base, _, rest = PG_URL.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (f"?{rest}" if rest else "")


@functools.cache
def _pg_template() -> str:
    """A PostgreSQL database migrated once per test session: each test gets a copy of it
    (CREATE DATABASE ... TEMPLATE copies files) instead of running every migration again,
    which was most of the suite's time on PostgreSQL. Dropped when the session ends."""
    name = f"trace_tpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG_URL or "", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    upgrade(_database_url(name))  # its engine is disposed: nobody stays connected
    atexit.register(_dropper(admin, name))
    return name


def _dropper(admin: Engine, name: str) -> Callable[[], None]:
    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return drop


def _pg_database(name: str) -> tuple[str, Any]:
    """A fresh database on the test PostgreSQL, migrated to head (a copy of the session's
    template), and the function that drops it."""
    assert PG_URL
    template = _pg_template()
    admin = make_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    return _database_url(name), _dropper(admin, name)


@functools.cache
def _sqlite_template() -> Path:
    """A SQLite database migrated once per test session, copied for each test."""
    folder = Path(tempfile.mkdtemp(prefix="trace-test-template-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


def _sqlite_database(path: Path) -> str:
    """A migrated SQLite database at ``path`` (a consistent copy of the template)."""
    with (
        closing(sqlite3.connect(_sqlite_template())) as source,
        closing(sqlite3.connect(path)) as target,
    ):
        source.backup(target)
    return f"sqlite:///{path}"


@pytest.fixture(autouse=True)
def _fast_password_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests create many accounts (the demo alone six), and the production hash (werkzeug's
    scrypt) costs ~140 ms each on the project machine: most of a demo-loading test's time.
    Tests hash with one round of salted PBKDF2 instead -- the same code path, stored and
    checked the same way; tests marked real_password_hashing keep the production hash."""
    if request.node.get_closest_marker("real_password_hashing"):
        return
    fast = functools.partial(generate_password_hash, method="pbkdf2:sha256:1")
    monkeypatch.setattr(auth_service, "generate_password_hash", fast)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield _sqlite_database(tmp_path / "test.sqlite3")
        return
    yield from migrated_pg_database()


def migrated_pg_database() -> Iterator[str]:
    """A fresh, migrated database on the test PostgreSQL for one test (dropped after it)."""
    url, drop = _pg_database("t_" + uuid.uuid4().hex[:12])
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def config(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("TRACE_CODE_KEYS", TEST_KEYS)
    return Config(
        database_url=db_url,
        secret_key="test-secret-key",
        instance_dir=tmp_path / "instance",
        media_dir=tmp_path / "media",
        key_file=tmp_path / "instance" / "keys.json",
        public_base_url="https://t.example.cn/q/",
        max_upload_bytes=2 * 1024 * 1024,
        # The code-state cache changes what a scan reads as notifications arrive and its
        # thread loads runs: timing no other test should depend on. Its own tests turn it
        # on (tests/web/test_code_state_cache.py).
        code_state_cache="off",
        testing=True,
    )


@pytest.fixture
def app(config: Config) -> Iterator[Flask]:
    application = create_app(config)
    yield application
    close_app(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    factory = app.extensions["trace.sessions"]
    with factory() as s:
        yield s


@pytest.fixture
def demo(app: Flask) -> dict[str, Any]:
    """The demo world, committed: tokens by username, batch ids."""
    from trace.services import demo as demo_service

    factory = app.extensions["trace.sessions"]
    with factory() as s:
        ids = demo_service.load(s, app.config["SECRET_KEY"])
        s.commit()
    return ids


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def require_postgresql(what: str) -> None:
    """At a test module's top: skip the module without TRACE_TEST_DATABASE_URL, except in
    CI, where running without PostgreSQL would leave ``what`` untested."""
    if PG_URL:
        return
    if IN_CI:
        raise RuntimeError(f"CI runs without TRACE_TEST_DATABASE_URL: {what} goes untested")
    pytest.skip(f"{what} is PostgreSQL only: set TRACE_TEST_DATABASE_URL", allow_module_level=True)


def require_tool(path_or_name: str, reason: str) -> None:
    """Skip outside CI when a system tool is missing; in CI a missing tool is a failure."""
    import shutil

    if shutil.which(path_or_name) or Path(path_or_name).exists():
        return
    if IN_CI:
        pytest.fail(f"{path_or_name} missing in CI: {reason}")
    pytest.skip(f"{path_or_name} not installed: {reason}")


__all__ = ["bearer", "create_engine", "require_postgresql", "require_tool"]
