"""Alembic environment: the URL comes from trace.config or the caller, never the ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import trace.models  # noqa: F401  (fills Base.metadata)
from trace.config import Config
from trace.db import Base, make_engine
from trace.models.analytics import include_name

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return str(config.attributes.get("url") or Config.from_env().database_url)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # scan_events' monthly partitions belong to migration 0002 and the rollup job.
        include_name=include_name,
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
