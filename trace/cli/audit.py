"""`flask audit verify`: re-hash the audit trail to show nothing was edited or removed."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from trace.extensions import db
from trace.services import audit

group = AppGroup("audit", help="The hash-chained audit trail (责任可追究).")


@group.command("verify")
def verify_command() -> None:
    """Check every audit entry's hash and link; exit status 1 at the first broken one."""
    check = audit.verify(db())
    if check.broken_id is not None:
        raise click.ClickException(
            f"audit chain broken at entry {check.broken_id} "
            f"(of {check.entries} read): it was edited, or an entry before it was removed"
        )
    click.echo(f"audit chain intact: {check.entries} entries")
