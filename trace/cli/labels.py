"""Placeholder: `flask labels` commands (issue 3)."""

from flask.cli import AppGroup

group = AppGroup("labels", help="Issue, void and reprint label runs.")
