"""`flask media sweep`: remove stored files no attachment refers to (failed uploads)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from trace.extensions import db, storage
from trace.services import media

group = AppGroup("media", help="Photos and videos under the media directory.")


@group.command("sweep")
@click.option(
    "--older-than-hours",
    type=click.FloatRange(min=0.1),
    default=24.0,
    show_default=True,
    help="Leave files written more recently than this alone (uploads in progress).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
def sweep_command(older_than_hours: float, dry_run: bool) -> None:
    """Remove stored files that no attachment refers to, and unfinished uploads."""
    done = media.sweep_unreferenced(db(), storage(), older_than_hours * 3600, dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {done.files} unreferenced files ({done.bytes:,} bytes) "
        f"and {done.temp_files} unfinished uploads"
    )
