"""`flask keys init|rotate|list`: trace-code keys live in a file outside the database."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from trace.crypto.keyring import Keyring, rotate
from trace.extensions import config
from trace.services.keys import load_keyring

group = AppGroup("keys", help="Trace-code keys (versions, rotation).")


@group.command("init")
def init_command() -> None:
    """Create the key file if it does not exist yet."""
    path = config().key_file
    if path.exists():
        click.echo(f"key file exists: {path}")
        return
    ring = Keyring.generate_file(path)
    click.echo(f"created {path} (version {ring.current_version})")


@group.command("rotate")
def rotate_command() -> None:
    """Add a new key version for new labels; old versions keep resolving printed labels."""
    version = rotate(config().key_file)
    click.echo(f"current key version is now {version}; older versions kept for verification")


@group.command("list")
def list_command() -> None:
    """List the key versions (never the keys); the current one signs new labels."""
    ring = load_keyring(config())
    for v in ring.versions:
        click.echo(f"{v}{' (current)' if v == ring.current_version else ''}")
