"""The schema is built by the Alembic migrations; these tests fail when the models and the
migrations drift apart, and check the migrations can be undone and redone."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

import trace.models  # noqa: F401  (fills Base.metadata)
from trace.cli.db import alembic_config, upgrade
from trace.db import Base, make_engine


def _partitions(engine: Engine) -> set[str]:
    """PostgreSQL monthly partitions of scan_events: made by migration 0002 and by the app
    at run time, deliberately absent from the models (they are storage, not schema)."""
    if engine.dialect.name != "postgresql":
        return set()
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relispartition AND n.nspname = current_schema()"
            )
        )
        return {r[0] for r in rows}


def _drift(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        skip = _partitions(engine)

        def include_name(name: str | None, type_: str, parents: dict[str, Any]) -> bool:
            table = name if type_ == "table" else parents.get("table_name")
            return table not in skip

        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": include_name}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    assert _drift(db_url) == []
    assert {t.name for t in Base.metadata.sorted_tables} <= _tables(db_url)


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    command.downgrade(alembic_config(db_url), "base")
    assert _tables(db_url) <= {"alembic_version"}
    upgrade(db_url)
    assert _drift(db_url) == []


def test_each_step_down_and_up(db_url: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(db_url))
    revisions = [r.revision for r in script.walk_revisions("base", "heads")]
    for _ in revisions[:-1]:
        command.downgrade(alembic_config(db_url), "-1")
    upgrade(db_url)
    assert _drift(db_url) == []


def test_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


def test_drift_is_detected(db_url: str) -> None:
    # The check itself can fail: a column the migrations never made is reported.
    from sqlalchemy import Column, Integer, MetaData, Table

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            extra = MetaData()
            for table in Base.metadata.sorted_tables:
                table.to_metadata(extra)
            Table("products", extra, Column("shelf_life_days", Integer), extend_existing=True)
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, extra)
    finally:
        engine.dispose()
    assert any(d[0] == "add_column" and d[3].name == "shelf_life_days" for d in diffs), diffs
