"""`flask demo load|banner`: the demo world for `make run` (and `demo scans`, issue 5)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from trace.extensions import config, db
from trace.services import demo
from trace.services.keys import load_keyring

group = AppGroup("demo", help="Demo data.")


@group.command("load")
@click.option("--if-empty", is_flag=True, help="Do nothing when data exists already.")
def load_command(if_empty: bool) -> None:
    """Load the Huaning citrus and Songming tomato demo (one transaction)."""
    session = db()
    if demo.is_loaded(session):
        if if_empty:
            click.echo("demo data present; not loading again")
            return
        raise click.ClickException("the database has data already; use a fresh database")
    ids = demo.load(session, current_app.config["SECRET_KEY"])
    demo.load_label_runs(session, load_keyring(config()), (ids["batch_id"], ids["tomato_batch_id"]))
    session.commit()
    click.echo(f"demo data loaded (batch {ids['batch_id']}, {ids['tomato_batch_id']})")


@group.command("banner")
@click.option("--host", default="http://127.0.0.1:5000")
def banner_command(host: str) -> None:
    """Print the URLs and demo credentials worth trying."""
    tokens = demo.demo_tokens(current_app.config["SECRET_KEY"])
    token = tokens["huaning-coop"]
    code = demo.first_demo_code(db(), load_keyring(config()))
    lines = [
        "",
        "trace is starting on " + host,
        f"  API docs          {host}/api/v1/docs   (OpenAPI: {host}/api/v1/openapi.json)",
        f"  consumer page     {host}/q/{code}" if code else "  (no label runs yet)",
        f"  kiosk             {host}/kiosk",
        f"  regulator board   {host}/dashboard",
        f"    sign in: huaning-regulator / {demo.DEMO_PASSWORD}",
        "  demo API token (华宁县盘溪柑桔专业合作社):",
        f"    {token}",
        f"  try: curl -H 'Authorization: Bearer {token}' {host}/api/v1/batches",
        f"  regulator token (华宁县): {tokens['huaning-regulator']}",
        f"  kiosk device token: {tokens['kiosk-huaning']}",
        "",
    ]
    click.echo("\n".join(lines))
