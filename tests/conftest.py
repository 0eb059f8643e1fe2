"""Fixtures: an app on a real database built by running the migrations.

Every test runs on SQLite; with TRACE_TEST_DATABASE_URL set (CI sets it) the `db_url`
fixture is parametrised so database tests run on PostgreSQL too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from trace.app import close_app, create_app
from trace.cli.db import upgrade
from trace.config import Config
from trace.db import make_engine

PG_URL = os.environ.get("TRACE_TEST_DATABASE_URL")
IN_CI = os.environ.get("CI") == "true"
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])

TEST_KEYS = "0:000102030405060708090a0b0c0d0e0f,master:" + "11" * 32


def _pg_database(schema_name: str) -> tuple[str, Any]:
    """A fresh schema on the test PostgreSQL, dropped afterwards."""
    assert PG_URL
    admin = make_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema_name}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema_name}"

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
        upgrade(url)
        yield url
        return
    yield from migrated_pg_database()


def migrated_pg_database() -> Iterator[str]:
    """A fresh, migrated schema on the test PostgreSQL for one test (dropped after it)."""
    url, drop = _pg_database("t_" + uuid.uuid4().hex[:12])
    try:
        upgrade(url)
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
