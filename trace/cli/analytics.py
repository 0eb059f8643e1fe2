"""`flask analytics rollup|alerts`: the periodic analytics job (run it from cron every
minute or so; it is incremental and cheap when there is little new)."""

from __future__ import annotations

import time

import click
from flask.cli import AppGroup

from trace.db import utcnow
from trace.extensions import db
from trace.services import alerts, rollups

group = AppGroup("analytics", help="Analytics rollups, partitions and alerts.")


@group.command("rollup")
@click.option("--full", is_flag=True, help="Rebuild every rollup from the whole scan log.")
@click.option(
    "--months-ahead",
    type=click.IntRange(min=0, max=24),
    default=3,
    show_default=True,
    help="PostgreSQL: create scan_events partitions this many months ahead.",
)
@click.option("--alerts/--no-alerts", "with_alerts", default=True, help="Also look for alerts.")
def rollup_command(full: bool, months_ahead: int, with_alerts: bool) -> None:
    """Fold new scans into the rollups (and keep monthly partitions coming)."""
    session = db()
    today = utcnow().date()
    last = today
    for _ in range(months_ahead):
        last = rollups.next_month(last)
    created = rollups.ensure_partitions(session, today, last)
    session.commit()
    if created:
        click.echo(f"partitions created: {', '.join(created)}")
    t0 = time.perf_counter()
    result = rollups.refresh(session, full=full)
    session.commit()
    click.echo(
        f"rollup {result.status}: {result.days} days, {result.runs} label runs, "
        f"up to scan {result.last_scan_id} ({time.perf_counter() - t0:.2f} s)"
    )
    if with_alerts:
        new = alerts.refresh(session)
        session.commit()
        click.echo(f"{new} new alerts")


@group.command("alerts")
@click.option("--days", type=click.IntRange(min=1, max=366), default=alerts.SCAN_WINDOW_DAYS)
def alerts_command(days: int) -> None:
    """Look for problems (interval violations, failed inspections, scan anomalies)."""
    session = db()
    new = alerts.refresh(session, window_days=days)
    session.commit()
    click.echo(f"{new} new alerts")
