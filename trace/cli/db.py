"""`flask db upgrade|downgrade|current`: Alembic driven with the app's database URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from flask.cli import AppGroup

from trace.extensions import config

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# Alembic is imported where a command needs it: create_app registers these commands in
# every process (gunicorn workers, every CLI command), and importing it costs ~70 ms.

group = AppGroup("db", help="Database migrations (Alembic).")

ROOT = Path(__file__).resolve().parent.parent.parent


def alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    from alembic import command

    command.upgrade(alembic_config(url), revision)


@group.command("upgrade")
@click.argument("revision", default="head")
def upgrade_command(revision: str) -> None:
    """Migrate the database to REVISION (default: the newest)."""
    upgrade(config().database_url, revision)
    click.echo(f"database at {revision}")


@group.command("downgrade")
@click.argument("revision")
def downgrade_command(revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(config().database_url), revision)


@group.command("current")
def current_command() -> None:
    from alembic import command

    command.current(alembic_config(config().database_url))
